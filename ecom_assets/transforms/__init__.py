"""Row-level transforms of the ingest job: pure Arrow table -> table functions, no I/O.

Order, per batch of files (``resources.event_reader.latest_events``: each file's records
migrated to LATEST by ``schema.migration.to_latest``, with source_file, source_line,
record_raw and arrived_at), all inside a staging task (``file_rows.FileRows``):

1. ``validate.validate_events`` adds ``error_codes`` (every failed rule; empty means valid);
2. ``enrich.enrich_events`` derives category, quantity default, total, time parts, late flag;
3. ``route.routed`` shapes each row once for all three tables; ``arrow_routing`` splits it into
   events and dead letters and counts it per file, inside the one pass that stages a batch
   (nothing is read or validated twice).
Validation runs before enrichment on purpose: rules see what the producer wrote (after
normalisation), not derived defaults such as a filled-in category or quantity.
"""
