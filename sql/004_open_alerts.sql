-- At most one open alert per kind, level and partition: the storm guard, enforced by the database
-- so concurrent writers (ingest runs, the run failure sensor) cannot both insert the same alert.
-- Alerts without a partition share one slot per kind and level.

CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open_idx
    ON alerts (kind, level, (coalesce(partition_key, '')))
    WHERE resolved_at IS NULL;
