"""`python -m generator` as a real process: flags, determinism, signals, logs and exit codes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecom_assets_tests.test_generator_support import (
    LOG_LINE_RE,
    NAME_RE,
    cli_command,
    cli_env,
    csv_files,
    read_csv,
    read_truth,
)
from generator.model import COLUMNS, WIDTH

TIMEOUT_S = 60


def run_cli(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*flags),
        env=cli_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def log_lines(tmp_path: Path) -> list[str]:
    logs = sorted((tmp_path / "data" / "logs").glob("data_generator_*.log"))
    return [line for path in logs for line in path.read_text(encoding="utf-8").splitlines()]


def final_statistics(lines: list[str]) -> str:
    finals = [line for line in lines if "| final statistics: " in line]
    assert len(finals) == 1
    return finals[0]


def test_files_flag_writes_that_many_files_with_settings_defaults(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--files", "2", "--interval", "0")
    assert done.returncode == 0, done.stderr
    input_dir = tmp_path / "data" / "input"  # ECOM_DATA_DIR/input, from the settings
    files = csv_files(input_dir)
    assert len(files) == 2
    assert sorted(p.name for p in input_dir.iterdir()) == [p.name for p in files]  # no temp left
    for path in files:
        assert NAME_RE.match(path.name)
        header, records = read_csv(path)
        assert header == list(COLUMNS)  # v3 by default
        assert len(records) == 100
    assert "files=2 events=200 " in final_statistics(log_lines(tmp_path))


def test_log_file_name_and_line_format(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--files", "1", "--interval", "0")
    assert done.returncode == 0, done.stderr
    today = datetime.now(UTC).strftime("%Y%m%d")
    log_dir = tmp_path / "data" / "logs"
    assert [p.name for p in log_dir.iterdir()] == [f"data_generator_{today}.log"]
    lines = log_lines(tmp_path)
    assert len(lines) == 3  # starting, wrote, final statistics
    for line in lines:
        assert LOG_LINE_RE.match(line), line
        assert line[19:32] == " | INFO     |"
    assert done.stderr.splitlines() == lines  # the same lines on stderr


def test_same_seed_gives_byte_identical_files_and_names(tmp_path: Path) -> None:
    flags = ["--files", "3", "--interval", "0", "--seed", "42", "--schema", "mixed"]
    outputs = []
    for run in ("a", "b", "c"):
        seed_flags = flags if run != "c" else [*flags[:-3], "43", "--schema", "mixed"]
        out, truth = tmp_path / run / "in", tmp_path / run / "truth"
        done = run_cli(tmp_path, *seed_flags, "--output-dir", str(out), "--truth-dir", str(truth))
        assert done.returncode == 0, done.stderr
        outputs.append(
            {p.relative_to(tmp_path / run): p.read_bytes() for p in sorted(out.parent.rglob("*.*"))}
        )
    assert len(outputs[0]) == 6  # 3 CSV + 3 truth files
    assert outputs[0] == outputs[1]
    assert outputs[0].keys() != outputs[2].keys()
    first = sorted(k.name for k in outputs[0] if k.suffix == ".csv")[0]
    assert first.startswith("events_20260101T000000000000Z_")  # seeded runs start 2026-01-01


def test_start_time_stamps_files_from_that_instant(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path,
        "--files",
        "2",
        "--interval",
        "5",
        "--seed",
        "1",
        "--start-time",
        "2026-01-29T10:30:20.123456Z",
    )
    assert done.returncode == 0, done.stderr
    stamps = [NAME_RE.match(p.name).group(1) for p in csv_files(tmp_path / "data" / "input")]  # type: ignore[union-attr]
    assert stamps == ["20260129T103020123456Z", "20260129T103025123456Z"]


@pytest.mark.parametrize("schema", ["v1", "v2", "v3"])
def test_schema_flag_sets_the_header(tmp_path: Path, schema: str) -> None:
    done = run_cli(tmp_path, "--files", "1", "--interval", "0", "--schema", schema)
    assert done.returncode == 0, done.stderr
    header, records = read_csv(csv_files(tmp_path / "data" / "input")[0])
    assert header == list(COLUMNS[: WIDTH[schema]])
    assert {len(record) for record in records} == {WIDTH[schema]}


def test_burst_splits_into_files_of_events_per_file(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--burst", "250", "--events-per-file", "100", "--seed", "3")
    assert done.returncode == 0, done.stderr
    sizes = [len(read_csv(p)[1]) for p in csv_files(tmp_path / "data" / "input")]
    assert sizes == [100, 100, 50]
    assert "files=3 events=250 " in final_statistics(log_lines(tmp_path))


def test_rate_and_counts_flags(tmp_path: Path) -> None:
    truth_dir = tmp_path / "truth"
    done = run_cli(
        tmp_path,
        "--files",
        "3",
        "--events-per-file",
        "40",
        "--rate",
        "400",
        "--anomaly-rate",
        "1",
        "--late-rate",
        "0",
        "--truth-dir",
        str(truth_dir),
    )
    assert done.returncode == 0, done.stderr
    lines = log_lines(tmp_path)
    assert "events_per_file=40 interval_s=0.1 anomaly_rate=1 late_rate=0 " in lines[0]
    files = csv_files(tmp_path / "data" / "input")
    truths = [read_truth(truth_dir, path) for path in files]
    assert [len(t["lines"]) for t in truths] == [40, 40, 40]
    assert "files=3 events=120 anomalies=120 " in final_statistics(lines)
    started, ended = (datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S") for line in lines[::3])
    assert (ended - started).total_seconds() <= 2  # 2 waits of 0.1 s


def test_settings_provide_the_defaults(tmp_path: Path) -> None:
    env = cli_env(tmp_path) | {"ECOM_GENERATOR_EVENTS_PER_FILE": "7", "ECOM_GENERATOR_SEED": "9"}
    done = subprocess.run(
        cli_command("--files", "1", "--interval", "0"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (path,) = csv_files(tmp_path / "data" / "input")
    assert len(read_csv(path)[1]) == 7
    assert "seed=9 clock=simulated" in log_lines(tmp_path)[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_final_statistics(tmp_path: Path, sig: signal.Signals) -> None:
    process = subprocess.Popen(
        cli_command("--interval", "0.2"),
        env=cli_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    input_dir = tmp_path / "data" / "input"
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and len(csv_files(input_dir)) < 2:
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, stderr
    written = len(csv_files(input_dir))
    lines = log_lines(tmp_path)
    assert f"| INFO     | stopped by {sig.name}" in lines[-2]
    final = final_statistics(lines)
    assert f"files={written} events={written * 100} " in final
    assert re.search(r"events_per_s=\d+ anomalies_by_kind=\[.*\]$", final)
    assert [p.name for p in input_dir.iterdir() if p.name.startswith(".")] == []


def test_unwritable_output_dir_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    done = run_cli(tmp_path, "--files", "1", "--output-dir", str(blocker / "input"))
    assert done.returncode == 2
    errors = [line for line in log_lines(tmp_path) if "| ERROR    |" in line]
    assert errors == [
        errors[0][:19]
        + f" | ERROR    | cannot create directory {blocker / 'input'}: Not a directory"
    ]
    assert "files=0 events=0 " in final_statistics(log_lines(tmp_path))


def test_unwritable_log_dir_and_bad_flags_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    done = run_cli(tmp_path, "--files", "1", "--log-dir", str(blocker / "logs"))
    assert done.returncode == 2
    assert done.stderr.startswith(f"generator: cannot write logs to {blocker / 'logs'}")
    assert csv_files(tmp_path / "data" / "input") == []
    assert run_cli(tmp_path, "--anomaly-rate", "1.5").returncode == 2
    assert run_cli(tmp_path, "--files", "1", "--burst", "10").returncode == 2


def test_truth_files_follow_the_contract_in_force(tmp_path: Path) -> None:
    """Under the default contract the catalogue and taste anomalies are warnings on stored rows;
    an operator's contract that makes one an error (or turns one off) moves it."""
    flags = ("--files", "4", "--events-per-file", "300", "--anomaly-rate", "0.5", "--seed", "3",
             "--interval", "0", "--truth-dir", str(tmp_path / "truth"))  # fmt: skip
    assert run_cli(tmp_path, *flags).returncode == 0
    lines = [line for path in sorted((tmp_path / "truth").glob("*.json"))
             for line in json.loads(path.read_text())["lines"]]  # fmt: skip
    warned = {code for line in lines for code in line["warnings"]}
    errors = {code for line in lines for code in line["codes"]}
    assert warned == {
        "UNKNOWN_PRODUCT", "UNKNOWN_CATEGORY", "CATEGORY_PRODUCT_MISMATCH", "UNEXPECTED_PRICE",
        "UNEXPECTED_QUANTITY", "INVALID_USER_SEGMENT",
    }  # fmt: skip
    assert not warned & errors and "MISSING_EVENT_ID" in errors

    contract = tmp_path / "contract.yaml"
    contract.write_text("rules:\n  UNKNOWN_PRODUCT: error\n  UNEXPECTED_PRICE: 'off'\n")
    env = cli_env(tmp_path) | {"ECOM_CONTRACT_FILE": str(contract)}
    strict = tmp_path / "strict"
    subprocess.run(cli_command(*flags[:-1], str(strict), "--output-dir", str(tmp_path / "in2")),
                   env=env, check=True, capture_output=True, timeout=TIMEOUT_S)  # fmt: skip
    lines = [line for path in sorted(strict.glob("*.json"))
             for line in json.loads(path.read_text())["lines"]]  # fmt: skip
    by_kind = {line["kind"]: (line["codes"], line["warnings"]) for line in lines}
    assert by_kind["unknown_product"] == (["UNKNOWN_PRODUCT"], [])
    assert by_kind["unexpected_price"] == ([], [])  # off: the row is simply valid


def test_a_bad_contract_stops_the_generator(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: [oops]\n")
    env = cli_env(tmp_path) | {"ECOM_CONTRACT_FILE": str(tmp_path / "bad.yaml")}
    done = subprocess.run(cli_command("--files", "1"), env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "bad.yaml:1: rules must be a mapping" in done.stderr


def test_write_catalogue_writes_the_demo_shop_products(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--write-catalogue", str(tmp_path / "products.csv"))
    assert done.returncode == 0
    rows = (tmp_path / "products.csv").read_text().splitlines()
    assert rows[0] == "product_id,category,name,price" and len(rows) == 12_001
    assert rows[1].startswith("1000,electronics,electronics item 1000,")
    assert not list((tmp_path / "data").glob("input/*.csv"))  # it writes no events
