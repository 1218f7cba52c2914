"""`ecom up` / `status` / `down` as a user runs them: real processes, real ports, no leftovers."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ecom_assets.stack.file_modes import PASSAGE
from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.postgres_server import server_user
from ecom_assets.stack.processes import wait_until

ECOM = [sys.executable, "-m", "ecom_assets.cli"]


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    home = Path(tempfile.mkdtemp(prefix="ecom-test-stack-"))
    home.chmod(0o755)  # PostgreSQL may run as an unprivileged user and must reach its data
    env = isolated_environment(home)
    env.update(ECOM_GENERATOR_INTERVAL_S="0.5", ECOM_GENERATOR_EVENTS_PER_FILE="10")
    yield env
    subprocess.run([*ECOM, "down"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(home, ignore_errors=True)


def processes_under(home: str) -> list[str]:
    """Command lines of live processes that mention the stack's home directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if home in cmdline and state != "Z":
            found.append(cmdline)
    return found


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on port, from /proc/net/tcp and tcp6."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                addresses.add(str(ipaddress.IPv4Address(raw[::-1])))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                ipv6 = ipaddress.IPv6Address(words)
                addresses.add(str(ipv6.ipv4_mapped or ipv6))
    return addresses


def open_to_others(*tops: Path) -> list[str]:
    """Entries under tops that any group or other user may read, write or enter; but the
    passage (group x) through the state directory that the embedded PostgreSQL's group has
    under root. Symbolic links have no mode of their own; entries gone meanwhile are skipped."""
    server = server_user()
    found = []
    for top in tops:
        for directory, subdirectories, files in os.walk(top):
            names = [directory] if directory == str(top) else []
            for path in names + [os.path.join(directory, n) for n in subdirectories + files]:
                try:
                    info = os.lstat(path)
                except FileNotFoundError:
                    continue
                wider = stat.S_IMODE(info.st_mode) & 0o077
                if server and info.st_gid == server.gid and stat.S_ISDIR(info.st_mode):
                    wider &= ~PASSAGE
                if wider and not stat.S_ISLNK(info.st_mode):
                    found.append(f"{stat.S_IMODE(info.st_mode):04o} {path}")
    return found


def start_up(env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [*ECOM, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "all parts healthy" in line:
            return process, lines
    process.kill()
    pytest.fail("ecom up did not become healthy:\n" + "\n".join(lines))


def status(env: dict[str, str]) -> tuple[int, list[dict]]:
    result = subprocess.run(
        [*ECOM, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    return result.returncode, json.loads(result.stdout)


def test_up_status_down_and_resume(stack_env: dict[str, str]) -> None:
    home = stack_env["ECOM_HOME"]
    process, lines = start_up(stack_env)
    started = ("postgresql", "migrations", "spark", "run pool", "dagster", "spark warm-up",
               "generator")  # fmt: skip
    for part in started:
        assert any(line.startswith(f"[up] {part}") and "ready in" in line for line in lines)
    # the warm-up went through the whole plan: 3 generated files of every version
    assert any("ingest plan run on 600 sample rows" in line for line in lines), lines

    code, parts = status(stack_env)
    assert code == 0, parts
    assert {part["part"]: part["healthy"] for part in parts} == {
        "supervisor": True, "postgresql": True, "spark": True, "dagster": True, "run pool": True,
        "generator": True,
    }  # fmt: skip
    assert all(part["restarts"] == 0 for part in parts), parts
    url = f"http://127.0.0.1:{stack_env['ECOM_DAGSTER_PORT']}/"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
    input_dir = Path(home) / "data" / "input"
    assert wait_until(lambda: any(input_dir.glob("events_*.csv")), 30)
    for port in ("ECOM_PG_PORT", "ECOM_SPARK_CONNECT_PORT", "ECOM_DAGSTER_PORT"):
        assert listening_addresses(int(stack_env[port])) == {"127.0.0.1"}, port

    db_url = subprocess.run(
        [*ECOM, "db-url"], env=stack_env, capture_output=True, text=True, check=True
    ).stdout.strip()

    def committed_files() -> int:
        with psycopg.connect(db_url) as conn:
            return conn.execute("SELECT count(*) FROM data_quality_metrics").fetchone()[0]

    # the generator's files reach the tables through the sensor, the queue and an ingest run
    assert wait_until(lambda: committed_files() > 0, 180, interval_s=1)
    with psycopg.connect(db_url) as conn:
        events, latency = conn.execute(
            "SELECT (SELECT count(*) FROM ecommerce_events), max(latency_s) "
            "FROM data_quality_metrics"
        ).fetchone()
    assert events > 0
    print(f"live: first files committed, max file-to-commit latency {latency} s")
    # generated, ingested and moved files, logs, Dagster's and Spark's: the stack's user's only
    assert open_to_others(Path(home) / ".ecom", Path(home) / "data") == []
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO dead_letter_events (source_file, source_line, error_codes, raw_record) "
            "VALUES ('kept.csv', 1, ARRAY['INVALID_EVENT_TYPE'], '{}')"
        )

    down = subprocess.run([*ECOM, "down"], env=stack_env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert down.returncode == 0, down.stdout + down.stderr
    assert process.wait(timeout=60) == 0
    assert processes_under(home) == []
    code, parts = status(stack_env)
    assert code == 1
    assert not any(part["healthy"] for part in parts)

    # a second `up` resumes with the data kept; Ctrl-C stops it as cleanly as `down`
    process, _ = start_up(stack_env)
    with psycopg.connect(db_url) as conn:
        kept = conn.execute(
            "SELECT source_file FROM dead_letter_events WHERE source_file = %s", ("kept.csv",)
        ).fetchall()
    assert kept == [("kept.csv",)]
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=90) == 0
    assert wait_until(lambda: processes_under(home) == [], 10)


def test_a_part_that_cannot_start_is_named_and_nothing_is_left(stack_env: dict[str, str]):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(stack_env["ECOM_SPARK_CONNECT_PORT"])))
        blocker.listen()
        result = subprocess.run([*ECOM, "up"], env=stack_env, capture_output=True, text=True,
                                timeout=180)  # fmt: skip
    assert result.returncode == 1
    assert "spark failed to start: port 127.0.0.1:" in result.stdout
    assert "already in use" in result.stdout
    assert "[down] postgresql  stopped" in result.stdout
    assert processes_under(stack_env["ECOM_HOME"]) == []


def test_bad_settings_exit_2_naming_the_variable(stack_env: dict[str, str]) -> None:
    env = {**stack_env, "ECOM_DAGSTER_PORT": "70000"}
    result = subprocess.run([*ECOM, "status"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "ECOM_DAGSTER_PORT='70000'" in result.stderr
    assert "<= 65535" in result.stderr
