"""Live file-to-commit latency: the whole stack (`ecom up`) with the generator at its default rate.

Starts the platform in a throwaway home on free ports, lets the generator, the sensor, the run
queue and the ingest runs work for --seconds (at least 5 minutes by default), then reads every
file's latency (its arrival in data/input/ to its commit, `data_quality_metrics.latency_s`).

    .venv/bin/python bench/latency.py --seconds 300

Ends with one line: RESULT files=... p50_s=... p95_s=... max_s=... runs=... target_p95_s=10
ratio=p95/target
"""

from __future__ import annotations

import argparse
import sys
import time

import psycopg
from harness import percentile, running_stack  # bench/ is the script's directory

TARGET_P95_S = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="how long to let it run")
    args = parser.parse_args()

    with running_stack(generator=True) as stack:
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        with psycopg.connect(stack.url) as conn:
            timeline = [
                (float(offset), float(latency))
                for offset, latency in conn.execute(
                    "SELECT extract(epoch FROM measured_at - min(measured_at) OVER ()), latency_s "
                    "FROM data_quality_metrics ORDER BY measured_at"
                ).fetchall()
            ]
            latencies = [latency for _, latency in timeline]
            runs, rows = conn.execute(
                "SELECT count(DISTINCT run_id), coalesce(sum(rows_read), 0) "
                "FROM data_quality_metrics"
            ).fetchone()
    if not latencies:
        print("RESULT files=0")
        return 1
    p50, p95, worst = (percentile(latencies, 0.5), percentile(latencies, 0.95), max(latencies))
    print(f"files committed: {len(latencies)} in {elapsed:.0f} s by {runs} runs")
    print(f"file-to-commit latency: p50 {p50:.1f} s, p95 {p95:.1f} s, max {worst:.1f} s")
    for minute, values in per_minute(timeline).items():
        print(
            f"  minute {minute + 1} after the first commit: {len(values)} files, "
            f"p50 {percentile(values, 0.5):.1f} s, max {max(values):.1f} s"
        )
    print(
        f"RESULT files={len(latencies)} p50_s={p50:.2f} p95_s={p95:.2f} max_s={worst:.2f} "
        f"runs={runs} rows_per_s={rows / elapsed:.1f} target_p95_s={TARGET_P95_S:g} "
        f"ratio={p95 / TARGET_P95_S:.2f}"
    )
    return 0


def per_minute(timeline: list[tuple[float, float]]) -> dict[int, list[float]]:
    """Latencies by the minute of their commit: a warm-up shows apart from the steady state."""
    minutes: dict[int, list[float]] = {}
    for offset, latency in timeline:
        minutes.setdefault(int(offset // 60), []).append(latency)
    return minutes


if __name__ == "__main__":
    sys.exit(main())
