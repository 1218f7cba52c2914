"""The warm run pool: Dagster and the code location imported once, one fork per run.

Dagster's default launcher asks the code server to start each run, and the code server spawns a
new interpreter that imports Dagster, its CLI and the code location before the run's first
step: 2-3 s on two cores, paid by every backlog and by the first live file (docs/decisions.md
46). This process imports them once, then forks a child per run that executes it exactly as
`dagster api execute_run` does (`run_launcher.PooledRunLauncher` sends it the same arguments).

Before each fork it checks that the code location's module files and the settings file are
unchanged. If one changed it refuses the run, so the launcher starts a new interpreter as Dagster
would, and re-executes itself to import the new code. A code location that fails to import does
not stop the pool either: it refuses runs with the reason, and each run's new interpreter
reports the error in the run, as Dagster's own launcher would.

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

from ecom_assets.code_files import fingerprint, watched_files
from ecom_assets.settings import Settings

PRELOAD = (
    "dagster._cli.api",
    "dagster_postgres",
    "pyspark.sql.connect.session",
    "ecom_assets.definitions",
)
"""What a run imports before its first step: Dagster's run command, its PostgreSQL storage
(0.6 s: SQLAlchemy, Alembic), Spark Connect's client session (0.25 s) and the code location."""

MAX_SOCKET_PATH = 100  # bytes; AF_UNIX paths end at 107
REQUEST_TIMEOUT_S = 5.0


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


def preload(modules: list[str]) -> str | None:
    """Import ``modules``; None, or why the code location cannot be imported (the pool then
    refuses runs with that reason, and each starts in a new interpreter that reports it)."""
    try:
        for module in modules:
            importlib.import_module(module)
    except Exception as exc:  # any import failure: the runs will show it, the pool keeps serving
        traceback.print_exc()
        return f"the code location failed to import: {type(exc).__name__}: {exc}"
    return None


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


def answer(payload: bytes, changed: bool, broken: str | None, *inherited: socket.socket) -> dict:
    """The reply to one request: a refusal with its reason, or the pid of the forked run."""
    reason = "the code location changed since it was imported" if changed else broken
    reason = reason or refusal(payload)
    if reason:
        return {"refused": reason}
    try:
        return {"pid": fork_run(payload.decode(), *inherited)}
    except OSError as exc:  # no process to spare: the launcher starts one itself, or fails
        return {"refused": f"fork failed: {exc}"}


def serve(listener: socket.socket, watched: list[str], broken: str | None) -> None:
    """Answer requests until the watched files change; then return, to be reloaded."""
    imported = fingerprint(watched)
    while True:
        conn, _ = listener.accept()
        conn.settimeout(REQUEST_TIMEOUT_S)  # a client that never finishes does not stop the pool
        changed = False
        with conn:
            try:
                payload = receive_all(conn)
                changed = bool(payload) and fingerprint(watched) != imported
                conn.sendall(json.dumps(answer(payload, changed, broken, listener, conn)).encode())
            except OSError as exc:  # the client went away or stalled; the next one is served
                print(f"run pool: request dropped: {exc}", flush=True)
        if changed:
            print("run pool: the code location changed; reloading", flush=True)
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    parser.add_argument(
        "--preload", action="append", help=f"module to import first (default: {PRELOAD})"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS threads in a process that forks
    watched = watched_files()
    broken = preload(args.preload or list(PRELOAD))
    listener = listen(args.socket)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the runs
    state = f"refusing runs, {broken}" if broken else "ready"
    print(f"run pool: {state}; pid {os.getpid()}, socket {args.socket}", flush=True)
    serve(listener, watched, broken)
    listener.close()
    again = [sys.executable, "-m", __spec__.name, *(argv if argv is not None else sys.argv[1:])]
    os.execv(sys.executable, again)  # noqa: S606 - this very program, to import the new code


if __name__ == "__main__":
    main()
