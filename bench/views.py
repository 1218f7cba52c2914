"""Analytics views' answer times with millions of rows in ecommerce_events.

Starts a throwaway embedded PostgreSQL (the server `ecom up` runs), applies the migrations, fills
ecommerce_events with --rows synthetic events (30 days, 200,000 users, the contract's types,
categories and segments) and data_quality_metrics with one row per 10,000 events, refreshes the
materialized views as their assets do (timed: the cost paid on the analytics schedule), then
times the queries a dashboard asks (best of --repeat runs, rows fetched to the client): each
aggregate view whole; of the 7.5 million sessions, one user's and the latest 100.

    .venv/bin/python bench/views.py --rows 10000000

Ends with one line: RESULT rows=... <query>_s=... max_s=... target_s=1.0 ratio=max/target
refresh_s=...
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from ecom_assets.assets.analytics import MATERIALIZED_VIEWS, refresh_view
from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.stack.postgres_server import EmbeddedPostgres
from ecom_assets.stack.processes import free_port
from generator.catalog import CATEGORIES, EVENT_TYPES, USER_SEGMENTS

QUERIES = {
    "hourly_event_summary": "SELECT * FROM v_hourly_event_summary",
    "category_performance": "SELECT * FROM v_category_performance",
    "user_segment_analysis": "SELECT * FROM v_user_segment_analysis",
    "data_quality_dashboard": "SELECT * FROM v_data_quality_dashboard",
    "sessions_of_one_user": "SELECT * FROM v_user_sessions WHERE user_id = 4242",
    "latest_100_sessions": "SELECT * FROM v_user_sessions ORDER BY session_start DESC LIMIT 100",
}
TARGET_S = 1.0
CHUNK = 1_000_000  # rows per INSERT, so progress shows and one statement stays bounded

FILL = """
INSERT INTO ecommerce_events (event_id, user_id, event_type, product_id, category, price,
    quantity, total_amount, event_time, event_date, event_hour, session_id, user_segment,
    schema_version, source_file, source_line)
SELECT gen_random_uuid(), u, t, p, c, pr, q, pr * q, ts, (ts AT TIME ZONE 'UTC')::date,
       extract(hour FROM ts AT TIME ZONE 'UTC')::smallint, 's-' || u || '-' || (i / 20),
       CASE WHEN u > 0 THEN (%(segments)s::text[])[1 + u %% 5] END, 'v3',
       'bench_' || (i / 10000) || '.csv', 1 + i %% 10000
FROM (
    SELECT i, u, t, 1000 + (i * 7919) %% 12000 AS p,
           (%(categories)s::text[])[1 + ((i * 7919) %% 12000) / 1000] AS c,
           CASE WHEN t IN ('add_to_cart', 'purchase') THEN round((5 + i %% 500)::numeric, 2) END
               AS pr,
           CASE WHEN t IN ('add_to_cart', 'purchase') THEN 1 + i %% 3 END AS q,
           now() - make_interval(secs => (i * 2654435761 %% 2592000)) AS ts
    FROM (
        SELECT i,
               CASE WHEN i %% 4 = 0 THEN 0 ELSE 1 + (i * 48271) %% 200000 END AS u,
               (%(types)s::text[])[1 + CASE WHEN i %% 4 = 0 THEN i %% 2
                                          ELSE (i * 16807) %% 6 END] AS t
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
    ) AS base
) AS rows
"""

METRICS = """
INSERT INTO data_quality_metrics (run_id, partition_key, source_file, schema_version, rows_read,
    rows_valid, rows_invalid, rows_inserted, rows_duplicate, rows_late, validity_rate,
    error_counts, latency_s, processing_s, measured_at)
SELECT 'bench', 'p', source_file, 'v3', count(*), count(*), 0, count(*), 0, 0, 1.0, '{}',
       1.0, 1.0, max(processed_at)
FROM ecommerce_events GROUP BY source_file
"""


def fill(conn: psycopg.Connection, rows: int) -> float:
    started = time.monotonic()
    params = {
        "segments": list(USER_SEGMENTS),
        "categories": [category.name for category in CATEGORIES],
        "types": list(EVENT_TYPES),
    }
    for first in range(0, rows, CHUNK):
        last = min(rows, first + CHUNK) - 1
        conn.execute(FILL, {**params, "first": first, "last": last})
        conn.commit()
        print(f"  {last + 1:,} rows ({time.monotonic() - started:.0f} s)", flush=True)
    conn.execute(METRICS)
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE ecommerce_events")
    conn.execute("VACUUM ANALYZE data_quality_metrics")
    return time.monotonic() - started


def time_query(conn: psycopg.Connection, query: str, repeat: int) -> tuple[float, int]:
    """Best wall time of running the query and fetching every row, and its row count."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        started = time.monotonic()
        count = len(conn.execute(query).fetchall())
        best = min(best, time.monotonic() - started)
    return best, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ecom-bench-views-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root=root, port=free_port())
    server.start()
    try:
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            apply_migrations(conn, discover_migrations())
        with psycopg.connect(server.url("postgres")) as conn:
            print(f"filling ecommerce_events with {args.rows:,} rows")
            print(f"filled in {fill(conn, args.rows):.0f} s")
            refresh = {view: refresh_view(conn, view) for view in MATERIALIZED_VIEWS}
            for view, seconds in refresh.items():
                print(f"refresh {view:28s} {seconds:8.1f} s")
            times = {}
            for name, query in QUERIES.items():
                seconds, count = time_query(conn, query, args.repeat)
                times[name] = seconds
                verdict = "ok" if seconds <= TARGET_S else "over target"
                print(f"{name:28s} {seconds:8.3f} s  {count:>10,} rows  {verdict}")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    worst = max(times.values())
    figures = " ".join(f"{name}_s={seconds:.3f}" for name, seconds in times.items())
    print(
        f"RESULT rows={args.rows} {figures} max_s={worst:.3f} target_s={TARGET_S} "
        f"ratio={worst / TARGET_S:.2f} refresh_s={sum(refresh.values()):.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
