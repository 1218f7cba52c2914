"""Row-level transforms of the ingest job: pure DataFrame -> DataFrame functions, no I/O.

Order, per batch of files (the union of each file's ``schema.migration.to_latest`` output, with
``keep=["source_file", "source_line", "record_raw"]``, joined with each file's ``arrived_at``):

1. ``validate.validate_events`` adds ``error_codes`` (every failed rule; empty means valid);
2. ``enrich.enrich_events`` derives category, quantity default, total, time parts, late flag;
3. ``route.routed`` shapes each row once for all three tables; ``arrow_routing`` splits each
   Arrow batch of it into events and dead letters and counts it per file, inside the one pass
   that stages a batch (no cache: nothing is read or validated twice).
Validation runs before enrichment on purpose: rules see what the producer wrote (after
normalisation), not derived defaults such as a filled-in category or quantity.
"""
