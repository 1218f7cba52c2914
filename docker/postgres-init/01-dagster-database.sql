-- Run once by the postgres image's entrypoint when the data volume is initialised.
-- POSTGRES_DB (default `ecom`) holds the platform's tables (applied by the `migrate` service);
-- Dagster's run, event and schedule storage gets a database of its own (docs/decisions.md, 4).
CREATE DATABASE dagster;
