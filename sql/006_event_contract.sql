-- The event contract becomes the operator's configuration (docs/contract.md, decision 49).
-- Constraints that encoded the demo's contract go: the contract file decides what a valid
-- event is, and a rule set to `warn` stores rows that those constraints would refuse. What
-- storage itself needs stays: the key, a time, a user id >= 0, a product id > 0 when given.
-- Stored rows gain their warnings, their unknown columns and the producer's own id (when the
-- contract's id format is not a UUID); the catalogue becomes reference data in `products`.

ALTER TABLE ecommerce_events
    DROP CONSTRAINT IF EXISTS ecommerce_events_event_type_valid,
    DROP CONSTRAINT IF EXISTS ecommerce_events_price_non_negative,
    DROP CONSTRAINT IF EXISTS ecommerce_events_quantity_non_negative,
    DROP CONSTRAINT IF EXISTS ecommerce_events_total_non_negative,
    DROP CONSTRAINT IF EXISTS ecommerce_events_purchase_priced,
    DROP CONSTRAINT IF EXISTS ecommerce_events_user_required,
    DROP CONSTRAINT IF EXISTS ecommerce_events_segment_valid,
    ALTER COLUMN product_id DROP NOT NULL,                       -- a contract may make it optional
    ADD COLUMN IF NOT EXISTS event_key TEXT,                     -- the producer's id, if not a UUID
    ADD COLUMN IF NOT EXISTS quality_warnings TEXT[],            -- warn-severity codes, NULL: none
    ADD COLUMN IF NOT EXISTS extras JSONB;                       -- columns no schema version knows

CREATE INDEX IF NOT EXISTS ecommerce_events_event_key_idx ON ecommerce_events (event_key)
    WHERE event_key IS NOT NULL;

ALTER TABLE data_quality_metrics
    ADD COLUMN IF NOT EXISTS rows_warned INTEGER NOT NULL DEFAULT 0,     -- valid rows with warnings
    ADD COLUMN IF NOT EXISTS warning_counts JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS unknown_columns TEXT[] NOT NULL DEFAULT '{}';  -- schema drift

ALTER TABLE ingest_batches
    ADD COLUMN IF NOT EXISTS rows_warned BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS warning_counts JSONB NOT NULL DEFAULT '{}'::jsonb;

ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_kind_valid;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_valid CHECK (
    kind IN ('low_validity', 'high_latency', 'error_concentration', 'run_failure',
             'high_warning_rate'));

-- The reference catalogue (`ecom catalog load FILE`): the catalogue rules judge events against
-- it, and enrichment fills a missing category from it. Empty means no catalogue is loaded.
CREATE TABLE IF NOT EXISTS products (
    product_id  BIGINT       PRIMARY KEY,
    category    TEXT         NOT NULL,
    name        TEXT,
    price       NUMERIC(12,2),
    loaded_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT products_product_id_valid CHECK (product_id > 0),
    CONSTRAINT products_category_code CHECK (category <> '' AND category = lower(btrim(category)))
);

CREATE OR REPLACE VIEW v_data_quality_dashboard AS
WITH hourly AS (
    SELECT date_trunc('hour', measured_at) AS measured_hour, * FROM data_quality_metrics
), codes AS (
    SELECT measured_hour, 'error' AS tier, code, sum(n::bigint) AS n
    FROM hourly, jsonb_each_text(error_counts) AS e(code, n) GROUP BY 1, 2, 3
    UNION ALL
    SELECT measured_hour, 'warn', code, sum(n::bigint)
    FROM hourly, jsonb_each_text(warning_counts) AS w(code, n) GROUP BY 1, 2, 3
)
SELECT
    h.measured_hour,
    count(*)                                                         AS files,
    sum(rows_read)                                                   AS rows_read,
    sum(rows_valid)                                                  AS rows_valid,
    sum(rows_invalid)                                                AS rows_invalid,
    sum(rows_inserted)                                               AS rows_inserted,
    sum(rows_duplicate)                                              AS rows_duplicate,
    sum(rows_late)                                                   AS rows_late,
    round(sum(rows_valid)::numeric / nullif(sum(rows_read), 0), 5)   AS validity_rate,
    round(avg(latency_s), 3)                                         AS avg_latency_s,
    max(latency_s)                                                   AS max_latency_s,
    sum(rows_warned)                                                 AS rows_warned,
    round(sum(rows_warned)::numeric / nullif(sum(rows_read), 0), 5)  AS warning_rate,
    (SELECT coalesce(jsonb_object_agg(code, n), '{}'::jsonb) FROM codes c
      WHERE c.measured_hour = h.measured_hour AND tier = 'error')    AS errors_by_code,
    (SELECT coalesce(jsonb_object_agg(code, n), '{}'::jsonb) FROM codes c
      WHERE c.measured_hour = h.measured_hour AND tier = 'warn')     AS warnings_by_code,
    count(*) FILTER (WHERE cardinality(unknown_columns) > 0)         AS files_with_unknown_columns
FROM hourly h
GROUP BY h.measured_hour;
