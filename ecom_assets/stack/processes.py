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


def start_group(
    argv: Sequence[str],
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv as the leader of a new session, stdout and stderr appended to log_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
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


def foreign_members(pgid: int, stack_id: str) -> list[int]:
    """Members of group pgid that are not this stack's (pid reuse); empty when all are ours."""
    return [pid for pid in group_members(pgid) if not carries_stack_id(pid, stack_id)]


def stop_group(pgid: int, timeout_s: float = 15.0, first: int = signal.SIGINT) -> bool:
    """Signal a whole group (first, then SIGTERM, then SIGKILL); True when nothing is left."""
    for sig, share in ((first, 0.6), (signal.SIGTERM, 0.3), (signal.SIGKILL, 0.1)):
        if not group_members(pgid):
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
