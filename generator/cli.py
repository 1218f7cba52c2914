"""Command line of `python -m generator`: flags over ECOM_* settings, signals, exit codes.

Exit codes: 0 done or stopped by SIGINT/SIGTERM, 2 bad settings/flags or an output/log
directory or file that cannot be written (one ERROR line says which).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ecom_assets.schema.contract import Contract
from ecom_assets.schema.contract_file import ContractError, load_contract
from ecom_assets.settings import Settings, SettingsError, load_settings
from generator.anomalies import Limits
from generator.catalog import write_catalogue
from generator.clock import parse_start_time
from generator.logs import setup_logging
from generator.model import SCHEMA_VERSIONS
from generator.run import SEEDED_START, Generator, RunConfig
from generator.writer import WriteError

EXIT_OK = 0
EXIT_FAILURE = 2


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _start_time(text: str) -> int:
    try:
        return parse_start_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {exc}") from None


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    defaults = settings.generator
    parser = argparse.ArgumentParser(
        prog="python -m generator",
        description="Write realistic e-commerce event CSV files, with anomalies and late events.",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=settings.input_dir,
        help="where the CSV files go (default %(default)s)",
    )
    parser.add_argument(
        "--log-dir", type=Path, default=settings.log_dir, help="default %(default)s"
    )
    parser.add_argument(
        "--write-catalogue",
        type=Path,
        metavar="FILE",
        help="write the demo shop's catalogue as a CSV for `ecom catalog load`, then exit",
    )
    parser.add_argument(
        "--truth-dir",
        type=Path,
        help="write a JSON ground-truth file per CSV here (keep it outside the input dir)",
    )
    parser.add_argument(
        "--events-per-file",
        type=_positive_int,
        default=defaults.events_per_file,
        help="%(default)s",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--interval",
        type=_non_negative,
        default=defaults.interval_s,
        help="seconds between files (default %(default)s)",
    )
    pace.add_argument("--rate", type=_positive, help="events per second (sets the interval)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--files", type=_positive_int, help="write this many files, then exit")
    amount.add_argument(
        "--burst",
        type=_positive_int,
        metavar="N",
        help="write N events as fast as possible (files of --events-per-file), then exit",
    )
    parser.add_argument(
        "--schema",
        choices=[*SCHEMA_VERSIONS, "mixed"],
        default=defaults.schema_version,
        help="schema version of the files; mixed picks one per file (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="same seed, same files (names included)"
    )
    parser.add_argument(
        "--start-time",
        type=_start_time,
        help="simulate time from this ISO-8601 instant instead of the wall clock "
        f"(a seeded run without it starts at {SEEDED_START})",
    )
    parser.add_argument(
        "--anomaly-rate",
        type=_rate,
        default=defaults.anomaly_rate,
        help="share of rows with one injected defect, 0-1 (default %(default)s)",
    )
    parser.add_argument(
        "--late-rate",
        type=_rate,
        default=defaults.late_rate,
        help="share of rows that are valid but late, 0-1 (default %(default)s)",
    )
    return parser


def config_from_args(
    args: argparse.Namespace, settings: Settings, contract: Contract | None = None
) -> RunConfig:
    """The run's configuration; anomalies are judged by ``contract`` (default: the one in
    force, ECOM_CONTRACT_FILE), so the truth files say which are errors and which warnings."""
    contract = contract or load_contract(settings.paths.contract)
    interval_s = args.events_per_file / args.rate if args.rate else args.interval
    start_us = args.start_time
    if start_us is None and args.seed is not None:
        start_us = parse_start_time(SEEDED_START)
    return RunConfig(
        output_dir=args.output_dir,
        truth_dir=args.truth_dir,
        events_per_file=args.events_per_file,
        interval_s=interval_s,
        files=args.files,
        burst=args.burst,
        schema=args.schema,
        seed=args.seed,
        start_us=start_us,
        anomaly_rate=args.anomaly_rate,
        late_rate=args.late_rate,
        limits=Limits.from_contract(contract, settings.quality),
    )


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"generator: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    args = build_parser(settings).parse_args(argv)
    if args.write_catalogue is not None:
        written = write_catalogue(args.write_catalogue)
        print(f"generator: {written} products of the demo catalogue in {args.write_catalogue}")
        return EXIT_OK
    try:
        config = config_from_args(args, settings)
    except ContractError as exc:
        print(f"generator: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        log = setup_logging(args.log_dir)
    except OSError as exc:
        print(f"generator: cannot write logs to {args.log_dir}: {exc}", file=sys.stderr)
        return EXIT_FAILURE

    stop = threading.Event()
    received: list[str] = []

    def request_stop(signum: int, _frame: object) -> None:
        # no logging here: the handler may interrupt a log call; the loop ends after this file
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    log.info(
        "starting: output=%s schema=%s events_per_file=%d interval_s=%g anomaly_rate=%g "
        "late_rate=%g seed=%s clock=%s",
        config.output_dir,
        config.schema,
        config.events_per_file,
        config.interval_s,
        config.anomaly_rate,
        config.late_rate,
        config.seed,
        "wall" if config.start_us is None else "simulated",
    )
    generator = Generator(config, log, stop)
    code = EXIT_OK
    try:
        generator.run()
    except WriteError as exc:
        log.error("%s", exc)
        code = EXIT_FAILURE
    if received:
        log.info("stopped by %s", received[0])
    log.info("final statistics: %s", generator.stats.summary())
    return code
