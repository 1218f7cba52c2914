"""Burst throughput of the event generator: N events into a temp dir, as `--burst` writes them.

Runs the same code path as `python -m generator --burst N` (flags parsed by the generator's own
parser, atomic fsynced files), in-process so interpreter start-up is not counted. The target is
100,000 events/s. Usage: python bench/generator_throughput.py [--events N] [--events-per-file M]
[--schema v3] [--anomaly-rate 0.02]. Last line: RESULT events_per_s=... files=... seconds=...
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from pathlib import Path

from ecom_assets.settings import load_settings
from generator.cli import build_parser, config_from_args
from generator.run import Generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--events-per-file", type=int, default=10_000)
    parser.add_argument("--schema", default="v3")
    parser.add_argument("--anomaly-rate", default="0.02")
    parser.add_argument("--seed", default="1")
    args = parser.parse_args()

    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="ecom-bench-generator-") as root:
        output = Path(root) / "input"
        flags = build_parser(settings).parse_args(
            [
                f"--burst={args.events}",
                f"--events-per-file={args.events_per_file}",
                f"--schema={args.schema}",
                f"--anomaly-rate={args.anomaly_rate}",
                f"--seed={args.seed}",
                f"--output-dir={output}",
            ]
        )
        config = config_from_args(flags, settings)
        logger = logging.getLogger("bench.generator")
        started = time.perf_counter()
        stats = Generator(config, logger, threading.Event()).run()
        seconds = time.perf_counter() - started
        files = sorted(output.glob("events_*.csv"))
        size = sum(path.stat().st_size for path in files)

    rate = stats.events / seconds
    print(f"events            {stats.events:>12,}")
    print(f"files             {stats.files:>12,}  ({args.events_per_file:,} events each)")
    print(f"schema            {args.schema:>12}")
    print(f"anomalies         {stats.kinds.total():>12,}  late {stats.late:,}")
    print(f"bytes written     {size:>12,}  ({size / seconds / 1e6:.1f} MB/s)")
    print(f"seconds           {seconds:>12.2f}")
    print(f"events per second {rate:>12,.0f}  (target 100,000: {rate / 100_000:.2f}x)")
    print(f"RESULT events_per_s={rate:.0f} files={stats.files} seconds={seconds:.2f}")


if __name__ == "__main__":
    main()
