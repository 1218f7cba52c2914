"""`ecom down` signals only processes that are still this stack's: a reused pid is left alone.

Each test writes a stack.json whose recorded pid is a process this test started (`sleep 300`
in a session of its own, as a stack's part would be), with one part of its identity wrong: no
ECOM_STACK_ID, another start time, another command line, another boot, or no identity at all
(a state of an older version). Then the real `ecom down` runs, and the process must be alive
afterwards, with a "not ours" line that says why. The last test gives the full identity and
checks that `down` does stop it, so the checks refuse strangers, not everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecom_assets.settings import PathSettings, load_settings
from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.processes import (
    STACK_ID_ENV,
    boot_id,
    command_tail,
    pid_alive,
    start_ticks,
    wait_until,
)

STACK_ID = uuid.uuid4().hex
SLEEP = ["sleep", "300"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def start_stranger(carries_stack_id: bool) -> subprocess.Popen[bytes]:
    """`sleep 300` leading a session of its own, with this stack's id in its environment or
    not: the process that got a recorded pid after a crash or a reboot."""
    env = {key: value for key, value in os.environ.items() if key != STACK_ID_ENV}
    if carries_stack_id:
        env[STACK_ID_ENV] = STACK_ID
    process = subprocess.Popen(SLEEP, env=env, start_new_session=True)
    assert wait_until(lambda: start_ticks(process.pid) is not None, 5, 0.01)
    return process


@pytest.fixture
def strangers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # whatever the test found, nothing is left running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def record(home: Path, pid: int, **state: object) -> Path:
    """A stack.json recording pid as the generator's group (and, unless given, a supervisor
    that is gone: the state a killed supervisor leaves)."""
    settings = load_settings(paths=PathSettings(home=home))
    path = settings.paths.state / "stack.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"supervisor_pid": 2**22 + 1, "groups": {"generator": pid}, **state}
    path.write_text(json.dumps(content))
    return path


def ecom_down(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecom_assets.cli", "down"],
        env=isolated_environment(home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def identity(pid: int, **wrong: object) -> dict[str, object]:
    """The full identity of pid as `up` records it, with ``wrong`` fields replaced."""
    leader = {"ticks": start_ticks(pid), "command": command_tail(SLEEP)}
    leader.update(wrong)
    return {"stack_id": STACK_ID, "boot_id": boot_id(), "leaders": {"generator": leader}}


CASES = {  # (carries the stack id, wrong fields of the recorded identity, the reason said)
    "carries no stack id": (False, {}, "none of its processes carries this stack's ECOM_STACK_ID"),
    "started at another time": (
        True, {"ticks": -1}, "its leader started at another time than the generator recorded",
    ),
    "runs another command": (
        True, {"command": ["-m", "generator"]}, "its leader runs another command than the",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_down_leaves_a_process_that_reused_a_recorded_pid_alone(
    home: Path, strangers: list[subprocess.Popen[bytes]], case: str
) -> None:
    carries, wrong, why = CASES[case]
    stranger = start_stranger(carries)
    strangers.append(stranger)
    state = record(home, stranger.pid, **identity(stranger.pid, **wrong))
    result = ecom_down(home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stranger.poll() is None and pid_alive(stranger.pid)
    line = f"[down] generator   not ours: group {stranger.pid}, "
    assert f"{line}{why}" in result.stdout and "; left alone" in result.stdout, result.stdout
    assert not state.exists()  # the record is gone; the process it named is not


def test_a_recorded_pid_from_another_boot_is_left_alone(
    home: Path, strangers: list[subprocess.Popen[bytes]]
) -> None:
    """Everything matches but the boot: after a reboot, pids and start times restart too."""
    stranger = start_stranger(carries_stack_id=True)
    strangers.append(stranger)
    recorded = identity(stranger.pid) | {"boot_id": str(uuid.uuid4())}
    record(home, stranger.pid, supervisor_pid=stranger.pid,
           supervisor_ticks=start_ticks(stranger.pid), **recorded)  # fmt: skip
    result = ecom_down(home)
    assert stranger.poll() is None and pid_alive(stranger.pid)
    assert "recorded before the machine restarted; left alone" in result.stdout, result.stdout


def test_a_state_without_identities_signals_nothing(
    home: Path, strangers: list[subprocess.Popen[bytes]]
) -> None:
    """A stack.json of an older version (no stack id, no start times) names the stranger as
    supervisor and as a part: it used to get a SIGTERM as the supervisor, then its group's."""
    stranger = start_stranger(carries_stack_id=False)
    strangers.append(stranger)
    record(home, stranger.pid, supervisor_pid=stranger.pid)
    result = ecom_down(home)
    assert stranger.poll() is None and pid_alive(stranger.pid)
    out = result.stdout
    assert f"[down] supervisor  not ours: pid {stranger.pid}, stack.json records no start " in out
    assert f"not ours: group {stranger.pid}, stack.json records no identity for it" in out, out


def test_down_stops_a_recorded_group_that_is_still_ours(
    home: Path, strangers: list[subprocess.Popen[bytes]]
) -> None:
    """The control: same boot, start time, command line and stack id -> stopped."""
    ours = start_stranger(carries_stack_id=True)
    strangers.append(ours)
    record(home, ours.pid, **identity(ours.pid))
    result = ecom_down(home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[down] generator   stopped in" in result.stdout, result.stdout
    assert ours.wait(timeout=10) == -signal.SIGINT
