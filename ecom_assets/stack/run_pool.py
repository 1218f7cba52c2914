"""The warm run pool: Dagster and the code location imported once, one fork per run.

Dagster's default launcher asks the code server to start each run, and the code server spawns a
new interpreter that imports Dagster, its CLI and the code location before the run's first
step: 2-3 s on two cores, paid by every backlog and by the first live file (docs/decisions.md
46). This process imports them once, then forks a child per run that executes it exactly as
`dagster api execute_run` does (`run_launcher.PooledRunLauncher` sends it the same arguments).

Before each fork it checks that the files it imported from the code location, and the settings
file, are unchanged. If one changed it refuses the run, so the launcher starts a new interpreter
as Dagster would, and re-executes itself to import the new code.

Whoever can write to the socket can run code as this user: it is created readable by its owner
only, in the stack's state directory.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import signal
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from ecom_assets.settings import Settings, env_file

PRELOAD = (
    "dagster._cli.api",
    "dagster_postgres",
    "pyspark.sql.connect.session",
    "ecom_assets.definitions",
)
"""What a run imports before its first step: Dagster's run command, its PostgreSQL storage
(0.6 s: SQLAlchemy, Alembic), Spark Connect's client session (0.25 s) and the code location."""

WATCHED_PACKAGE = "ecom_assets"
MAX_SOCKET_PATH = 100  # bytes; AF_UNIX paths end at 107


def socket_path(settings: Settings) -> Path:
    """The pool's socket: in the state directory, or in the temporary directory when that path
    is too long for a Unix socket."""
    path = settings.paths.state / "run_pool.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(settings.paths.state)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"ecom-run-pool-{digest}.sock"


def receive_all(conn: socket.socket) -> bytes:
    """Everything the peer sends until it shuts down its side."""
    return b"".join(iter(lambda: conn.recv(1 << 16), b""))


def request(path: Path | str, payload: bytes, timeout_s: float) -> dict[str, Any]:
    """Send one request to the pool at ``path``; its answer ({"pid": n} or {"refused": why}).
    Raises OSError or ValueError when nothing answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(path))
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        return json.loads(receive_all(conn))


def answers(path: Path | str, timeout_s: float = 2.0) -> bool:
    """Does a pool answer at ``path``? (An empty request is refused without a fork.)"""
    try:
        return "refused" in request(path, b"", timeout_s)
    except (OSError, ValueError):
        return False


Fingerprint = dict[str, int | None]


def fingerprint(paths: list[str]) -> Fingerprint:
    """Each file's modification time in ns (None: absent)."""
    stamps: Fingerprint = {}
    for path in paths:
        try:
            stamps[path] = os.stat(path).st_mtime_ns
        except OSError:
            stamps[path] = None
    return stamps


def preload() -> list[str]:
    """Import PRELOAD; the files a run would read again if it started afresh."""
    for module in PRELOAD:
        importlib.import_module(module)
    files = [
        module.__file__
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == WATCHED_PACKAGE and getattr(module, "__file__", None)
    ]
    return [*sorted(files), str(env_file().resolve())]


def listen(path: Path) -> socket.socket:
    """A Unix socket at ``path`` that only this user can connect to (a leftover is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    listener.listen(16)
    return listener


def refusal(payload: bytes) -> str | None:
    """Why a request cannot run here, or None. An empty request is the readiness probe."""
    if not payload:
        return "empty request"
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import deserialize_value

    try:
        args = deserialize_value(payload.decode(), ExecuteRunArgs)
    except Exception as exc:  # any malformed request is refused with its reason
        return f"not the arguments of a run: {exc}"
    if args.job_origin.executable_path != sys.executable:
        return f"the run's interpreter is {args.job_origin.executable_path}, not {sys.executable}"
    return None


def execute_run(payload: str) -> int:
    """Run ``dagster api execute_run`` in this process; its exit code."""
    from dagster._cli.api import execute_run_command

    try:
        execute_run_command.main(args=[payload], prog_name="dagster api execute_run")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    except Exception:  # the run's own failures are in its event log; this is the worker's
        traceback.print_exc()
        return 1
    return 0


def fork_run(payload: str, *inherited: socket.socket) -> int:
    """Fork a child that executes the run and exits; the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sock in inherited:
            sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        code = execute_run(payload)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(listener: socket.socket, watched: list[str]) -> None:
    """Answer requests until the watched files change; then return, to be reloaded."""
    imported = fingerprint(watched)
    while True:
        conn, _ = listener.accept()
        with conn:
            payload = receive_all(conn)
            changed = bool(payload) and fingerprint(watched) != imported
            reason = "the code location changed since it was imported" if changed else None
            reason = reason or refusal(payload)
            if reason:
                reply: dict[str, Any] = {"refused": reason}
            else:
                reply = {"pid": fork_run(payload.decode(), listener, conn)}
            conn.sendall(json.dumps(reply).encode())
        if changed:
            print("run pool: the code location changed; reloading", flush=True)
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS threads in a process that forks
    watched = preload()
    listener = listen(args.socket)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the runs
    print(f"run pool: ready, pid {os.getpid()}, socket {args.socket}", flush=True)
    serve(listener, watched)
    listener.close()
    argv = [sys.executable, "-m", __spec__.name, "--socket", str(args.socket)]
    os.execv(sys.executable, argv)  # noqa: S606 - this very program, to import the new code


if __name__ == "__main__":
    main()
