"""The self-healing stack, for real: one `ecom up` (generator on) whose parts are SIGKILLed.

In order, on one stack (module fixture; the tests depend on each other's order):
1. the PostgreSQL postmaster is SIGKILLed: the supervisor restarts it, the generator's files
   written after the kill land in `ecommerce_events`, `ecom status`, the stack log and a
   `stack_restart` alert say what happened;
2. the supervisor itself is SIGKILLed: its parts run on as orphans; a second `ecom up` while a
   new one is starting is refused (the lock); the new one stops the orphans and comes up
   healthy with one process of each kind;
3. the generator is SIGKILLed each time it comes back: a crash loop, the supervisor gives up,
   names the part and its log's tail, stops everything and leaves an ERROR alert.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from ecom_assets.settings import PathSettings, StackSettings, load_settings
from ecom_assets.stack.healing import RestartPolicy, StackLock, lock_held, restart_delay
from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.postgres_server import EmbeddedPostgres
from ecom_assets.stack.processes import group_members, pid_alive, wait_until
from ecom_assets.stack.supervisor import read_state

pytestmark = pytest.mark.integration

ECOM = [sys.executable, "-m", "ecom_assets.cli"]
HEALING = {
    "ECOM_GENERATOR_INTERVAL_S": "0.5",
    "ECOM_GENERATOR_EVENTS_PER_FILE": "10",
    "ECOM_STACK_RESTART_INITIAL_DELAY_S": "0.5",
    "ECOM_STACK_RESTART_MAX_DELAY_S": "2",
    "ECOM_STACK_MAX_RESTARTS": "3",
    "ECOM_STACK_RESTART_WINDOW_S": "120",
}


@dataclass
class Up:
    """One `ecom up` process and the lines it printed so far (read by a thread)."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines)


def launch(env: dict[str, str]) -> Up:
    """`ecom up` in the background, its output read by a thread (a full pipe would block it)."""
    process = subprocess.Popen(
        [*ECOM, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    up = Up(process)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            up.lines.append(line.rstrip())

    threading.Thread(target=pump, daemon=True).start()
    return up


def healthy(up: Up) -> Up:
    """Wait for `up` to report every part healthy; fails with its output otherwise."""
    done = wait_until(
        lambda: "all parts healthy" in up.text() or up.process.poll() is not None, 300, 0.5
    )
    if not done or "all parts healthy" not in up.text():
        up.process.kill()
        pytest.fail("ecom up did not become healthy:\n" + up.text())
    return up


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    up: Up
    url: str = ""

    @property
    def settings(self):
        return load_settings(paths=PathSettings(home=self.home))

    def status(self) -> dict[str, dict]:
        result = subprocess.run([*ECOM, "status", "--json"], env=self.env, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        return {part["part"]: part for part in json.loads(result.stdout)}

    def postmaster(self) -> int:
        return int((self.home / ".ecom/postgres/data/postmaster.pid").read_text().split()[0])


def ours(home: Path) -> dict[int, str]:
    """Live processes started by this home's stacks (their environment names ECOM_HOME=home),
    by pid: their command lines."""
    marker = f"ECOM_HOME={home}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def leaders(home: Path) -> dict[str, int]:
    """How many processes of each kind run: the postmaster, Spark's JVM, the run pool (group
    leaders only: its run workers are forks with the same command line), `dagster dev`, the
    generator and the supervisor."""
    kinds = {
        "postmaster": lambda c: "postgres -D " in c or "/postgres -D " in c,
        "spark": lambda c: c.split()[0].endswith("/java") and "SparkConnectServer" in c,
        "run pool": lambda c: "ecom_assets.stack.run_pool" in c,
        "dagster dev": lambda c: " dagster dev " in c,
        "generator": lambda c: c.split()[1:3] == ["-m", "generator"],
        "supervisor": lambda c: "ecom_assets.cli up" in c,
    }
    counts = dict.fromkeys(kinds, 0)
    for pid, cmdline in ours(home).items():
        for kind, matches in kinds.items():
            if matches(cmdline) and (kind != "run pool" or os.getpgid(pid) == pid):
                counts[kind] += 1
    return counts


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="ecom-test-healing-"))
    home.chmod(0o755)  # PostgreSQL runs as an unprivileged user under root
    env = isolated_environment(home) | HEALING
    stack = Stack(home, env, healthy(launch(env)))
    stack.url = subprocess.run([*ECOM, "db-url"], env=env, capture_output=True, text=True,
                               check=True).stdout.strip()  # fmt: skip
    try:
        yield stack
    finally:
        subprocess.run([*ECOM, "down"], env=env, capture_output=True, timeout=180)
        if stack.up.process.poll() is None:
            stack.up.process.kill()
        left = ours(home)
        for pid in left:  # never leave a stack behind, even when a test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
        assert left == {}, left


def rows_after(url: str, moment: datetime) -> int:
    """Rows of ecommerce_events from generator files stamped after moment (their names sort
    in time order: events_20260129T103020123456Z_1a2b3c4d.csv)."""
    first = "events_" + moment.strftime("%Y%m%dT%H%M%S%fZ")
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            return conn.execute(
                "SELECT count(*) FROM ecommerce_events WHERE source_file > %s", (first,)
            ).fetchone()[0]
    except psycopg.OperationalError:
        return 0


def test_backoff_doubles_to_its_ceiling_and_a_crash_loop_gives_up() -> None:
    stack = StackSettings(restart_initial_delay_s=1, restart_max_delay_s=5, max_restarts=4,
                          restart_window_s=60)  # fmt: skip
    assert [restart_delay(n, stack) for n in range(1, 6)] == [1, 2, 4, 5, None]
    policy = RestartPolicy(stack)
    assert [policy.on_death("spark", t) for t in (0, 10, 20)] == [(1, 1), (2, 2), (3, 4)]
    assert policy.on_death("dagster", 20) == (1, 1)  # each part has its own count
    assert policy.on_death("spark", 75) == (2, 2)  # the deaths at 0 and 10 left the window
    assert not policy.quiet_since(80) and policy.quiet_since(136)


def test_the_lock_admits_one_supervisor_and_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "stack.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from ecom_assets.stack.healing import StackLock; "
         "assert StackLock(Path(sys.argv[1])).acquire(); print('held', flush=True); "
         "time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    assert lock_held(path)
    assert not StackLock(path).acquire()  # a second `ecom up` is refused
    holder.kill()  # SIGKILL: no cleanup, the kernel drops the lock
    holder.wait()
    assert not lock_held(path)
    mine = StackLock(path)
    assert mine.acquire()
    opened = (
        "import os; print([os.path.realpath(f'/proc/self/fd/{fd}') "
        "for fd in os.listdir('/proc/self/fd')])"
    )
    child = subprocess.run([sys.executable, "-c", opened], capture_output=True, text=True,
                           check=True)  # fmt: skip
    assert str(path) not in child.stdout  # the lock is not inherited: orphans never hold it
    mine.release()


def test_a_killed_postmaster_is_restarted_and_ingestion_resumes(stack: Stack) -> None:
    assert wait_until(lambda: rows_after(stack.url, datetime(2000, 1, 1)) > 0, 180, 1), (
        "nothing ingested before the kill:\n" + stack.up.text()
    )
    old = stack.postmaster()
    killed_at = datetime.now(tz=UTC)
    os.kill(old, signal.SIGKILL)

    assert wait_until(lambda: "[heal] postgresql  restarted" in stack.up.text(), 90), (
        stack.up.text()
    )
    assert stack.postmaster() != old and pid_alive(stack.postmaster())
    began = time.monotonic()
    assert wait_until(lambda: rows_after(stack.url, killed_at) > 0, 180, 0.5), (
        "no file written after the kill was ingested:\n" + stack.up.text()
    )
    print(f"ingestion flowing {time.monotonic() - began:.1f} s after the restart")

    parts = stack.status()
    assert all(part["healthy"] for part in parts.values()), parts
    postgres = parts["postgresql"]
    assert postgres["restarts"] == 1
    assert postgres["last_restart"]["exit"] == "postmaster gone"
    assert "restarted 1x" in postgres["detail"]
    # nothing else had to restart with it: Dagster and the runs reconnect by themselves
    assert [name for name, part in parts.items() if part["restarts"]] == ["postgresql"], parts

    log = "".join(path.read_text() for path in sorted(stack.settings.log_dir.glob("stack_*.log")))
    assert "| WARNING  | [heal] postgresql  died (postmaster gone); restarting in 0.5 s" in log
    assert "ALERT [stack_restart] postgresql died (postmaster gone) and was restarted" in log
    with psycopg.connect(stack.url) as conn:
        alert = conn.execute(
            "SELECT level, details FROM alerts WHERE kind = 'stack_restart' AND resolved_at IS NULL"
        ).fetchall()
    assert len(alert) == 1 and alert[0][0] == "WARNING"
    assert alert[0][1]["part"] == "postgresql" and alert[0][1]["restarts"] == 1
    assert alert[0][1]["died_at"] <= alert[0][1]["restarted_at"]


def test_a_killed_supervisor_is_cleaned_up_by_the_next_up(stack: Stack) -> None:
    before = read_state(stack.settings)
    assert before is not None
    stack.up.process.kill()  # SIGKILL: no shutdown, the parts become orphans
    stack.up.process.wait(timeout=10)
    orphans = {part: group_members(pgid) for part, pgid in before.groups.items()}
    assert all(orphans.values()), orphans  # every part outlived its supervisor
    supervisor = stack.status()["supervisor"]
    assert not supervisor["healthy"]
    assert f"pid {before.supervisor_pid} is gone" in supervisor["detail"]

    stack.up = launch(stack.env)
    assert wait_until(lambda: "previous stack" in stack.up.text(), 120, 0.05), stack.up.text()
    second = subprocess.run([*ECOM, "up"], env=stack.env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert second.returncode == 1, second.stdout + second.stderr
    assert "already running" in second.stderr and "stack.lock" in second.stderr
    healthy(stack.up)
    text = stack.up.text()
    assert f"its supervisor (pid {before.supervisor_pid}) is gone; stopping what it left" in text
    for pids in orphans.values():
        assert not any(pid_alive(pid) for pid in pids), pids
    assert leaders(stack.home) == {
        "postmaster": 1, "spark": 1, "run pool": 1, "dagster dev": 1, "generator": 1,
        "supervisor": 1,
    }  # fmt: skip
    parts = stack.status()
    assert all(part["healthy"] for part in parts.values()), parts
    started = datetime.now(tz=UTC)
    assert wait_until(lambda: rows_after(stack.url, started) > 0, 180, 0.5), stack.up.text()


def test_a_part_that_keeps_dying_gives_up_and_stops_the_stack(stack: Stack) -> None:
    settings = stack.settings
    killed: list[int] = []

    def kill_the_generator() -> bool:
        """SIGKILL each generator once the supervisor reports it running; True once `up`
        exited."""
        state = read_state(settings)
        pid = state.groups.get("generator") if state else None
        restarting = state and state.restarts.get("generator", {}).get("state") == "restarting"
        if pid and pid not in killed and not restarting and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return stack.up.process.poll() is not None

    assert wait_until(kill_the_generator, 120, 0.05), stack.up.text()
    assert stack.up.process.returncode == 1
    text = stack.up.text()
    assert len(killed) == 4, (killed, text)  # 3 restarts allowed, the 4th death gives up
    assert (
        "[up] generator died 4 times within 120 s (last: killed by SIGKILL): a crash loop, "
        "giving up and stopping the stack" in text
    )
    assert f"The last lines of {settings.log_dir / 'generator.out'}:" in text
    assert "[down] postgresql  stopped" in text
    assert wait_until(lambda: ours(stack.home) == {}, 30), ours(stack.home)

    supervisor = stack.status()["supervisor"]
    assert "gave up: generator died 4 times" in supervisor["detail"], supervisor
    # the stack's own server (this process's environment does not name its port)
    server = EmbeddedPostgres(settings.paths.state / "postgres", int(stack.env["ECOM_PG_PORT"]))
    server.start()
    try:
        with psycopg.connect(stack.url) as conn:
            rows = conn.execute(
                "SELECT level, message, details, resolved_at IS NULL FROM alerts "
                "WHERE kind = 'stack_restart' AND details->>'part' = 'generator' "
                "ORDER BY alert_id"
            ).fetchall()
    finally:
        server.stop()
    # a WARNING per restart, each closed by the next; the ERROR closes the last (escalation)
    assert [(row[0], row[3]) for row in rows] == [("WARNING", False)] * 3 + [("ERROR", True)]
    assert [row[2]["restarts"] for row in rows] == [1, 2, 3, 3]
    assert rows[3][2]["deaths_in_window"] == 4
    assert "a crash loop, giving up" in rows[3][1]
