-- Core tables: events, dead letters, per-file quality metrics, and the ledger of input files.
-- Idempotent: every statement can run again without change.

CREATE TABLE IF NOT EXISTS ecommerce_events (
    event_id        UUID          PRIMARY KEY,
    user_id         BIGINT        NOT NULL DEFAULT 0,       -- 0 = anonymous visitor
    event_type      TEXT          NOT NULL,
    product_id      BIGINT        NOT NULL,
    category        TEXT,
    price           NUMERIC(12,2),
    quantity        INTEGER,
    total_amount    NUMERIC(14,2),                           -- price * quantity, carts and purchases
    event_time      TIMESTAMPTZ   NOT NULL,
    event_date      DATE          NOT NULL,
    event_hour      SMALLINT      NOT NULL,
    session_id      TEXT,
    user_segment    TEXT,
    device_type     TEXT,
    browser         TEXT,
    geo_country     TEXT,
    geo_city        TEXT,
    referrer        TEXT,
    campaign_id     TEXT,
    is_late         BOOLEAN       NOT NULL DEFAULT FALSE,
    schema_version  TEXT          NOT NULL,
    source_file     TEXT          NOT NULL,
    source_line     INTEGER       NOT NULL,
    processed_at    TIMESTAMPTZ   NOT NULL DEFAULT now(),
    CONSTRAINT ecommerce_events_event_type_valid CHECK (
        event_type IN ('view', 'search', 'add_to_cart', 'remove_from_cart', 'wishlist', 'purchase')),
    CONSTRAINT ecommerce_events_user_id_valid CHECK (user_id >= 0),
    CONSTRAINT ecommerce_events_product_id_valid CHECK (product_id > 0),
    CONSTRAINT ecommerce_events_price_non_negative CHECK (price >= 0),
    CONSTRAINT ecommerce_events_quantity_non_negative CHECK (quantity >= 0),
    CONSTRAINT ecommerce_events_total_non_negative CHECK (total_amount >= 0),
    CONSTRAINT ecommerce_events_purchase_priced CHECK (event_type <> 'purchase' OR price > 0),
    CONSTRAINT ecommerce_events_user_required CHECK (
        event_type IN ('view', 'search') OR user_id > 0),
    CONSTRAINT ecommerce_events_hour_valid CHECK (event_hour BETWEEN 0 AND 23),
    CONSTRAINT ecommerce_events_segment_valid CHECK (
        user_segment IS NULL
        OR user_segment IN ('new', 'returning', 'premium', 'inactive', 'at_risk'))
);

CREATE INDEX IF NOT EXISTS ecommerce_events_event_time_idx ON ecommerce_events (event_time);
CREATE INDEX IF NOT EXISTS ecommerce_events_type_time_idx ON ecommerce_events (event_type, event_time);
CREATE INDEX IF NOT EXISTS ecommerce_events_user_time_idx ON ecommerce_events (user_id, event_time)
    WHERE user_id > 0;
CREATE INDEX IF NOT EXISTS ecommerce_events_category_idx ON ecommerce_events (category, event_type);
CREATE INDEX IF NOT EXISTS ecommerce_events_source_file_idx ON ecommerce_events (source_file);

CREATE TABLE IF NOT EXISTS dead_letter_events (
    dead_letter_id  BIGSERIAL     PRIMARY KEY,
    source_file     TEXT          NOT NULL,
    source_line     INTEGER       NOT NULL,
    event_id        TEXT,                                    -- as written, possibly invalid
    error_codes     TEXT[]        NOT NULL,                  -- every rule the row failed
    error_detail    TEXT,
    raw_record      JSONB         NOT NULL,                  -- the row as read, to fix and replay
    schema_version  TEXT,
    partition_key   TEXT,
    run_id          TEXT,
    failed_at       TIMESTAMPTZ   NOT NULL DEFAULT now(),
    status          TEXT          NOT NULL DEFAULT 'open',
    reprocessed_at  TIMESTAMPTZ,
    CONSTRAINT dead_letter_events_file_line_unique UNIQUE (source_file, source_line),
    CONSTRAINT dead_letter_events_has_codes CHECK (cardinality(error_codes) > 0),
    CONSTRAINT dead_letter_events_status_valid CHECK (status IN ('open', 'reprocessed', 'discarded'))
);

CREATE INDEX IF NOT EXISTS dead_letter_events_codes_idx ON dead_letter_events USING GIN (error_codes);
CREATE INDEX IF NOT EXISTS dead_letter_events_open_idx ON dead_letter_events (failed_at)
    WHERE status = 'open';

CREATE TABLE IF NOT EXISTS data_quality_metrics (
    metric_id       BIGSERIAL     PRIMARY KEY,
    run_id          TEXT          NOT NULL,
    partition_key   TEXT          NOT NULL,
    source_file     TEXT          NOT NULL,
    schema_version  TEXT,
    rows_read       INTEGER       NOT NULL,
    rows_valid      INTEGER       NOT NULL,
    rows_invalid    INTEGER       NOT NULL,
    rows_inserted   INTEGER       NOT NULL,
    rows_duplicate  INTEGER       NOT NULL,                  -- valid, but the event_id was known
    rows_late       INTEGER       NOT NULL,
    validity_rate   NUMERIC(6,5)  NOT NULL,
    error_counts    JSONB         NOT NULL DEFAULT '{}'::jsonb,
    latency_s       NUMERIC(12,3),                           -- file arrival to commit
    processing_s    NUMERIC(12,3),
    measured_at     TIMESTAMPTZ   NOT NULL DEFAULT now(),
    CONSTRAINT data_quality_metrics_run_file_unique UNIQUE (run_id, source_file),
    CONSTRAINT data_quality_metrics_counts_valid CHECK (
        rows_read >= 0 AND rows_valid >= 0 AND rows_invalid >= 0 AND rows_inserted >= 0
        AND rows_duplicate >= 0 AND rows_late >= 0 AND rows_valid + rows_invalid = rows_read),
    CONSTRAINT data_quality_metrics_rate_valid CHECK (validity_rate BETWEEN 0 AND 1)
);

CREATE INDEX IF NOT EXISTS data_quality_metrics_measured_idx ON data_quality_metrics (measured_at);
CREATE INDEX IF NOT EXISTS data_quality_metrics_partition_idx ON data_quality_metrics (partition_key);

-- One row per input file: claimed by a run, committed once, moved after commit.
CREATE TABLE IF NOT EXISTS ingest_files (
    file_name       TEXT          PRIMARY KEY,
    partition_key   TEXT          NOT NULL,
    size_bytes      BIGINT        NOT NULL,
    content_sha256  TEXT,
    status          TEXT          NOT NULL DEFAULT 'pending',
    run_id          TEXT,
    attempts        INTEGER       NOT NULL DEFAULT 0,
    schema_version  TEXT,
    rows_read       INTEGER,
    error           TEXT,
    discovered_at   TIMESTAMPTZ   NOT NULL DEFAULT now(),
    claimed_at      TIMESTAMPTZ,
    committed_at    TIMESTAMPTZ,
    CONSTRAINT ingest_files_status_valid CHECK (
        status IN ('pending', 'claimed', 'committed', 'quarantined', 'failed')),
    CONSTRAINT ingest_files_size_valid CHECK (size_bytes >= 0)
);

CREATE INDEX IF NOT EXISTS ingest_files_partition_status_idx ON ingest_files (partition_key, status);
