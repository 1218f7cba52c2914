-- Operating records: one row per ingest batch, and the alerts raised about them.
-- Health (`ecom health`, the pipeline_health asset) is computed from these two tables.

CREATE TABLE IF NOT EXISTS ingest_batches (
    run_id          TEXT             NOT NULL,
    batch_no        INTEGER          NOT NULL,
    partition_key   TEXT             NOT NULL,
    status          TEXT             NOT NULL,
    files           INTEGER          NOT NULL DEFAULT 0,
    rows_read       BIGINT           NOT NULL DEFAULT 0,
    rows_valid      BIGINT           NOT NULL DEFAULT 0,
    rows_invalid    BIGINT           NOT NULL DEFAULT 0,
    validity_rate   DOUBLE PRECISION,
    quality_status  TEXT,
    max_latency_s   DOUBLE PRECISION,
    error_counts    JSONB            NOT NULL DEFAULT '{}'::jsonb,
    error           TEXT,
    started_at      TIMESTAMPTZ      NOT NULL,
    finished_at     TIMESTAMPTZ      NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, batch_no),
    CONSTRAINT ingest_batches_status_valid CHECK (status IN ('completed', 'failed')),
    CONSTRAINT ingest_batches_quality_valid CHECK (
        quality_status IS NULL OR quality_status IN ('EXCELLENT', 'ACCEPTABLE', 'POOR')),
    CONSTRAINT ingest_batches_counts_valid CHECK (
        rows_read >= 0 AND rows_valid >= 0 AND rows_invalid >= 0
        AND rows_valid + rows_invalid = rows_read),
    CONSTRAINT ingest_batches_failed_has_error CHECK (status = 'completed' OR error IS NOT NULL)
);

CREATE INDEX IF NOT EXISTS ingest_batches_finished_idx ON ingest_batches (finished_at);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id        BIGSERIAL        PRIMARY KEY,
    kind            TEXT             NOT NULL,
    level           TEXT             NOT NULL,
    message         TEXT             NOT NULL,
    partition_key   TEXT,
    run_id          TEXT,
    details         JSONB            NOT NULL DEFAULT '{}'::jsonb,
    raised_at       TIMESTAMPTZ      NOT NULL DEFAULT now(),
    resolved_at     TIMESTAMPTZ,
    CONSTRAINT alerts_kind_valid CHECK (
        kind IN ('low_validity', 'high_latency', 'error_concentration', 'run_failure')),
    CONSTRAINT alerts_level_valid CHECK (level IN ('WARNING', 'ERROR'))
);

CREATE INDEX IF NOT EXISTS alerts_open_idx ON alerts (kind, raised_at) WHERE resolved_at IS NULL;
