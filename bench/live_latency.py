"""Live file-to-commit latency: the whole stack (`ecom up`) with the generator at its default rate.

Starts the platform in a throwaway home on free ports, lets the generator, the sensor, the run
queue and the ingest runs work for --seconds, then reads every file's latency (arrival in
data/input/ to commit, `data_quality_metrics.latency_s`) and stops the stack.

    .venv/bin/python bench/live_latency.py --seconds 300

Ends with one line: RESULT files=... p50_s=... p95_s=... max_s=... runs=... rows_per_s=...
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from ecom_assets.stack.local import isolated_environment


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="how long to let it run")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ecom-bench-live-"))
    home.chmod(0o755)
    env = isolated_environment(home)
    ecom = [sys.executable, "-m", "ecom_assets.cli"]
    stack = subprocess.Popen([*ecom, "up"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert stack.stdout is not None
        for line in stack.stdout:
            print(line.rstrip())
            if "all parts healthy" in line:
                break
        else:
            print("the stack did not start", file=sys.stderr)
            return 1
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        url = subprocess.run(
            [*ecom, "db-url"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        with psycopg.connect(url) as conn:
            latencies = [
                float(row[0])
                for row in conn.execute("SELECT latency_s FROM data_quality_metrics").fetchall()
            ]
            runs, rows = conn.execute(
                "SELECT count(DISTINCT run_id), coalesce(sum(rows_read), 0) "
                "FROM data_quality_metrics"
            ).fetchone()
    finally:
        subprocess.run([*ecom, "down"], env=env, capture_output=True, timeout=120)
        stack.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)
    if not latencies:
        print("RESULT files=0")
        return 1
    p50, p95, worst = (percentile(latencies, 0.5), percentile(latencies, 0.95), max(latencies))
    print(f"files committed: {len(latencies)} in {elapsed:.0f} s by {runs} runs")
    print(f"file-to-commit latency: p50 {p50:.1f} s, p95 {p95:.1f} s, max {worst:.1f} s")
    print(
        f"RESULT files={len(latencies)} p50_s={p50:.2f} p95_s={p95:.2f} max_s={worst:.2f} "
        f"runs={runs} rows_per_s={rows / elapsed:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
