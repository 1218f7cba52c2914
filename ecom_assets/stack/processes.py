"""Start, watch and stop child processes as whole process groups.

Dagster dev and the Spark Connect server each fork children of their own; stopping only the
parent leaves orphans (a SIGTERM to `dagster dev` once left its code server alive), so every
service runs in its own session and is stopped by signalling its whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ecom_assets.stack.file_modes import STACK_UMASK


def start_group(
    argv: Sequence[str],
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv as the leader of a new session, stdout and stderr appended to log_file; it
    and everything it starts create private files (STACK_UMASK), whoever called."""
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            umask=STACK_UMASK,
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is pgid, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


STACK_ID_ENV = "ECOM_STACK_ID"
"""Set by `ecom up` in its own environment, so every process of the stack inherits it: a pid or
process group recorded in stack.json is signalled only when its processes carry this stack's id
(after a crash the pids may have been reused by anything)."""


def start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot; None: no such process, or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def carries_stack_id(pid: int, stack_id: str) -> bool:
    """Does the process's (initial) environment hold ECOM_STACK_ID=stack_id?"""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"{STACK_ID_ENV}={stack_id}".encode() in environ


COMMAND_TAIL = 3
"""Arguments at the end of a command line that identify a recorded process (``command_tail``)."""


def command_tail(argv: Sequence[str]) -> list[str]:
    """The last arguments a process was started with (never its program), recorded with its pid
    and start time: a process that reused the pid has other arguments. The program is left out
    because a start script may exec another that keeps its arguments (Spark's
    start-connect-server.sh becomes spark-daemon.sh, same arguments last)."""
    return [os.fsdecode(arg) for arg in list(argv)[1:]][-COMMAND_TAIL:]


def command_line(pid: int) -> list[str] | None:
    """/proc/<pid>/cmdline as arguments; None when unreadable (gone, or hidden from us)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [os.fsdecode(arg) for arg in raw.split(b"\0")[:-1]]


def runs_command(pid: int, tail: Sequence[str]) -> bool:
    """Does pid's command line end with ``tail`` (``command_tail`` of what was started)?"""
    args = command_line(pid)
    return bool(args and tail) and command_tail(args) == list(tail)


def boot_id() -> str:
    """This boot's id: pids and start times recorded under another boot name nothing now."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def foreign_members(pgid: int, stack_id: str) -> list[int]:
    """Members of group pgid that are not this stack's (pid reuse); empty when all are ours."""
    return [pid for pid in group_members(pgid) if not carries_stack_id(pid, stack_id)]


def stop_group(
    pgid: int,
    timeout_s: float = 15.0,
    first: int = signal.SIGINT,
    ours: Callable[[], bool] | None = None,
) -> bool:
    """Signal a whole group (first, then SIGTERM, then SIGKILL); True when nothing is left.

    ``ours`` is asked again before each signal: once it says no, the group id names other
    processes (ours are all gone, since Linux never reuses the id of a group with members), so
    nothing more is sent and nothing of ours is left."""
    for sig, share in ((first, 0.6), (signal.SIGTERM, 0.3), (signal.SIGKILL, 0.1)):
        if not group_members(pgid) or (ours is not None and not ours()):
            return True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        if wait_until(lambda: not group_members(pgid), timeout_s * share):
            return True
    return not group_members(pgid)


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (for throwaway test servers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages that say why a service died."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
