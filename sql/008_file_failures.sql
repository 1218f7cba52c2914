-- Poison isolation (docs/decisions.md 57): the ledger counts each file's failures, so a file
-- that keeps failing its batch, or keeps killing the run that reads it, is quarantined after
-- ECOM_INGEST_MAX_FILE_FAILURES instead of holding up its hour forever. `attempts` counts
-- claims, which a stopped or transiently failed run also makes: it cannot tell a poison file.

ALTER TABLE ingest_files
    ADD COLUMN IF NOT EXISTS failures INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS quarantined_at TIMESTAMPTZ;        -- `ecom health` lists the latest

ALTER TABLE ingest_files
    DROP CONSTRAINT IF EXISTS ingest_files_failures_valid,
    ADD CONSTRAINT ingest_files_failures_valid CHECK (failures >= 0);
