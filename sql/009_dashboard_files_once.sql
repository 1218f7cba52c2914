-- The quality dashboard counts each file once. A replayed file gets another metrics row per
-- run (UNIQUE (run_id, source_file)), and the view of 006 summed every row, so a replay doubled
-- the file's rows read, valid and invalid. The view now reads each file's first committed
-- ingestion, as the asset checks do (docs/decisions.md 15): its hour, its rows, what it
-- inserted. Same columns as before, so CREATE OR REPLACE keeps everything that reads it.

CREATE OR REPLACE VIEW v_data_quality_dashboard AS
WITH first AS (
    SELECT DISTINCT ON (source_file) *
    FROM data_quality_metrics
    ORDER BY source_file, measured_at, metric_id
), hourly AS (
    SELECT date_trunc('hour', measured_at) AS measured_hour, * FROM first
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
