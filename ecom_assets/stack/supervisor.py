"""`ecom up` / `down` / `status`: the whole local platform as one supervised process tree.

`up` starts each part in order (PostgreSQL, migrations, Spark Connect, the run pool, Dagster,
the generator),
health-checks it before the next, records the process groups in `<state>/stack.json`, and on
Ctrl-C, SIGTERM or the death of any part stops everything in reverse order. `down` asks a running
supervisor to do that, and cleans up by itself when the supervisor is already gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from ecom_assets.resources.catalogue import load_catalogue
from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.schema.contract_file import ContractError, load_contract
from ecom_assets.settings import Settings
from ecom_assets.stack import run_pool
from ecom_assets.stack.dagster_home import STORAGE_URL_ENV, write_dagster_home
from ecom_assets.stack.local import (
    DAGSTER_DATABASE,
    ECOM_DATABASE,
    dagster_storage_url,
    database_url,
    embedded_postgres,
    local_spark_connect,
)
from ecom_assets.stack.processes import (
    group_members,
    pid_alive,
    port_open,
    start_group,
    stop_group,
    tail,
    wait_until,
)
from ecom_assets.stack.runs import RUN_WORKER_PARTS, StackRuns

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """A part of the stack could not start; the message names the part and the reason."""


@dataclass
class StackState:
    """What `up` started, so `down` and `status` can find it from another process."""

    supervisor_pid: int
    groups: dict[str, int] = field(default_factory=dict)  # part -> process group id
    embedded_postgres: bool = False
    started_at: float = field(default_factory=time.time)


def state_file(settings: Settings) -> Path:
    return settings.paths.state / "stack.json"


def read_state(settings: Settings) -> StackState | None:
    try:
        return StackState(**json.loads(state_file(settings).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(settings: Settings, state: StackState) -> None:
    path = state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state)))
    temporary.replace(path)


def dagster_url(settings: Settings) -> str:
    return f"http://{settings.dagster.host}:{settings.dagster.port}"


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:
        return False


def child_environment(settings: Settings) -> dict[str, str]:
    """Environment of Dagster and the generator: absolute paths, the instance, the storage."""
    env = dict(os.environ)
    env.update(
        ECOM_HOME=str(settings.paths.root),
        DAGSTER_HOME=str(settings.paths.state / "dagster_home"),
        PYSPARK_PYTHON=sys.executable,
    )
    env[STORAGE_URL_ENV] = dagster_storage_url(settings)
    return env


class Supervisor:
    """Runs `up` in the foreground; every start is timed and reported through `say`."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.state = StackState(supervisor_pid=os.getpid())
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def _timed(self, part: str, start: Callable[[], str]) -> None:
        began = time.monotonic()
        try:
            detail = start()
        except Exception as exc:
            raise StackError(f"{part} failed to start: {exc}") from exc
        self.say(f"[up] {part:<15} ready in {time.monotonic() - began:5.1f} s  {detail}")

    def _record(self, part: str, process: subprocess.Popen[bytes]) -> None:
        self.processes[part] = process
        self.state.groups[part] = process.pid
        _write_state(self.settings, self.state)

    def start_postgres(self) -> str:
        settings = self.settings
        if not settings.database.embedded:
            with psycopg.connect(database_url(settings), connect_timeout=10) as conn:
                conn.execute("SELECT 1")
            return "external server (ECOM_DATABASE_URL)"
        server = embedded_postgres(settings)
        server.start()
        self.state.embedded_postgres = True
        _write_state(settings, self.state)
        for name in (ECOM_DATABASE, DAGSTER_DATABASE):
            server.ensure_database(name)
        return f"embedded, 127.0.0.1:{server.port}, data in {server.data_dir}"

    def migrate(self) -> str:
        with psycopg.connect(database_url(self.settings)) as conn:
            applied = apply_migrations(conn, discover_migrations())
        return f"applied {len(applied)} new migration(s)"

    def load_demo_catalogue(self) -> str:
        """The generator's shop has a catalogue: load it, so the demo exercises the catalogue
        rules (idempotent; a real producer's operator loads theirs with `ecom catalog load`)."""
        settings = self.settings
        if not settings.generator.enabled:
            return "not loaded: the generator is disabled (`ecom catalog load FILE` loads one)"
        from generator.catalog import write_catalogue

        path = settings.paths.data / "demo_catalogue.csv"
        write_catalogue(path)
        with psycopg.connect(database_url(settings)) as conn:
            loaded = load_catalogue(conn, path)
        return f"demo shop's, from {path}: {loaded.summary()}"

    def start_spark(self) -> str:
        spark = self.settings.spark
        if spark.mode == "classic":
            return f"classic sessions per run on {spark.master}"
        if not spark.managed:
            return f"remote {spark.connect_url}"
        server = local_spark_connect(self.settings)
        process = server.start()
        self._record("spark", process)
        server.wait_ready(process, spark.startup_timeout_s)
        return f"Spark Connect at {server.url}, log {server.log_file}"

    def warm_up_spark(self) -> str:
        """The managed server runs the ingest plan once before the generator's first file."""
        spark = self.settings.spark
        if spark.mode == "classic" or not spark.managed:
            return "skipped: the server is not managed by this stack"
        result = subprocess.run(
            [sys.executable, "-m", "ecom_assets.stack.spark_warmup"],
            capture_output=True, text=True, timeout=spark.startup_timeout_s,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"the Spark warm-up failed:\n{result.stderr[-3000:]}")
        return f"ingest plan run on {result.stdout.strip()} sample rows"

    def start_run_pool(self) -> str:
        """The warm process Dagster's runs are forked from (run_pool.py)."""
        settings = self.settings
        if not settings.dagster.run_pool:
            return "disabled (ECOM_DAGSTER_RUN_POOL=false): Dagster's code server spawns runs"
        path = run_pool.socket_path(settings)
        log = settings.log_dir / "run_pool.log"
        argv = [sys.executable, "-m", "ecom_assets.stack.run_pool", "--socket", str(path)]
        process = start_group(argv, log, env=child_environment(settings), cwd=PROJECT_ROOT)
        self._record("run pool", process)

        def ready() -> bool:
            if process.poll() is not None:
                raise StackError(f"the run pool exited with {process.returncode}:\n{tail(log)}")
            return run_pool.answers(path)

        if not wait_until(ready, 120, interval_s=0.2):
            raise StackError(f"the run pool does not answer at {path} after 120 s:\n{tail(log)}")
        return f"pid {process.pid}, socket {path}, log {log}"

    def start_dagster(self) -> str:
        settings = self.settings
        home = write_dagster_home(settings)
        log = settings.log_dir / "dagster.log"
        argv = [
            sys.executable, "-m", "dagster", "dev",
            "-w", str(PROJECT_ROOT / "workspace.yaml"),
            "-h", settings.dagster.host,
            "-p", str(settings.dagster.port),
        ]  # fmt: skip
        process = start_group(argv, log, env=child_environment(settings), cwd=PROJECT_ROOT)
        self._record("dagster", process)
        url = dagster_url(settings)

        def ready() -> bool:
            if process.poll() is not None:
                raise StackError(f"dagster dev exited with {process.returncode}:\n{tail(log)}")
            return http_ok(url + "/server_info")

        if not wait_until(ready, 180, interval_s=0.5):
            raise StackError(f"Dagster UI not answering at {url} after 180 s:\n{tail(log)}")
        return f"UI at {url}, DAGSTER_HOME {home}, log {log}"

    def start_generator(self) -> str:
        settings = self.settings
        if not settings.generator.enabled:
            return "disabled (ECOM_GENERATOR_ENABLED=false)"
        log = settings.log_dir / "generator.out"
        argv = [sys.executable, "-m", "generator"]
        process = start_group(argv, log, env=child_environment(settings), cwd=PROJECT_ROOT)
        self._record("generator", process)
        time.sleep(0.5)
        if process.poll() is not None:
            raise StackError(f"generator exited with {process.returncode}:\n{tail(log)}")
        return f"writing into {settings.input_dir}"

    def up(self) -> int:
        """Start everything, then supervise until a signal or a part dies; returns an exit code."""
        settings = self.settings
        running = read_state(settings)
        if running and pid_alive(running.supervisor_pid):
            raise StackError(f"already running (supervisor pid {running.supervisor_pid})")
        try:
            contract = load_contract(settings.paths.contract)
        except ContractError as exc:
            raise StackError(f"the event contract cannot be used: {exc}") from exc
        self.say(f"[up] {'contract':<15} {contract.source}")
        for directory in (settings.input_dir, settings.processed_dir, settings.quarantine_dir,
                          settings.log_dir):  # fmt: skip
            directory.mkdir(parents=True, exist_ok=True)
        _write_state(settings, self.state)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._timed("postgresql", self.start_postgres)
            self._timed("migrations", self.migrate)
            self._timed("catalogue", self.load_demo_catalogue)
            self._timed("spark", self.start_spark)
            self._timed("run pool", self.start_run_pool)
            self._timed("dagster", self.start_dagster)
            self._timed("spark warm-up", self.warm_up_spark)
            self._timed("generator", self.start_generator)
            self.say(f"[up] all parts healthy; open {dagster_url(settings)} (Ctrl-C stops)")
            return self._supervise()
        except (StackError, KeyboardInterrupt) as exc:
            if not self.stopping:
                self.say(f"[up] {exc}")
            return 0 if self.stopping else 1
        finally:
            self.shutdown()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def _supervise(self) -> int:
        while True:
            for part, process in self.processes.items():
                if process.poll() is not None:
                    self.say(f"[up] {part} exited with {process.returncode}; stopping the stack")
                    return 1
            time.sleep(1)

    def shutdown(self) -> None:
        """Stop in reverse order of start; safe to call more than once."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_recorded(self.settings, self.state, self.say)
        with contextlib.suppress(OSError):
            state_file(self.settings).unlink()


def stop_recorded(settings: Settings, state: StackState, say: Callable[[str], None]) -> bool:
    """Stop every recorded group and the embedded server; True when nothing is left. Runs are
    told before their workers are signalled, so a stop never reads as a failure (runs.py)."""
    clean = True
    runs = StackRuns(settings, say)
    for part in reversed(list(state.groups)):
        if part in RUN_WORKER_PARTS:
            runs.mark_stopping()
        pgid = state.groups[part]
        began = time.monotonic()
        stopped = stop_group(pgid, timeout_s=20)
        clean &= stopped
        verdict = "stopped" if stopped else "STILL RUNNING"
        say(f"[down] {part:<11} {verdict} in {time.monotonic() - began:4.1f} s")
    if any(part in RUN_WORKER_PARTS for part in state.groups):
        runs.cancel_leftovers()
    runs.close()
    if state.embedded_postgres:
        server = embedded_postgres(settings)
        began = time.monotonic()
        server.stop()
        clean &= not server.is_running()
        say(f"[down] postgresql  stopped in {time.monotonic() - began:4.1f} s")
    return clean


def down(settings: Settings, say: Callable[[str], None] = print, timeout_s: float = 60) -> bool:
    """Stop a running stack from another process; True when nothing is left running."""
    state = read_state(settings)
    if state is None:
        say("[down] nothing recorded as running")
        server = embedded_postgres(settings) if settings.database.embedded else None
        if server is not None and server.is_running():
            server.stop()
            say("[down] postgresql  stopped (left over)")
        return True
    if pid_alive(state.supervisor_pid) and state.supervisor_pid != os.getpid():
        os.kill(state.supervisor_pid, signal.SIGTERM)
        if wait_until(lambda: not pid_alive(state.supervisor_pid), timeout_s):
            leftovers = [part for part, pgid in state.groups.items() if group_members(pgid)]
            if not leftovers:
                say("[down] supervisor stopped every part")
                return True
    clean = stop_recorded(settings, state, say)
    with contextlib.suppress(OSError):
        state_file(settings).unlink()
    return clean


@dataclass(frozen=True)
class PartStatus:
    part: str
    healthy: bool
    detail: str


def status(settings: Settings) -> list[PartStatus]:
    """Health of each part, checked for real (query, port, HTTP), not read from the state file."""
    parts = [_postgres_status(settings), _spark_status(settings)]
    url = dagster_url(settings)
    parts.append(PartStatus("dagster", http_ok(url + "/server_info"), url))
    if settings.dagster.run_pool:
        path = run_pool.socket_path(settings)
        parts.append(PartStatus("run pool", run_pool.answers(path), str(path)))
    state = read_state(settings)
    generator_pid = state.groups.get("generator") if state else None
    if not settings.generator.enabled:
        parts.append(PartStatus("generator", True, "disabled"))
    else:
        alive = generator_pid is not None and pid_alive(generator_pid)
        parts.append(PartStatus("generator", alive, f"pid {generator_pid}" if alive else "stopped"))
    return parts


def _postgres_status(settings: Settings) -> PartStatus:
    try:
        with psycopg.connect(database_url(settings), connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        where = "embedded" if settings.database.embedded else "external"
        return PartStatus("postgresql", True, f"{where}, PostgreSQL {version}")
    except Exception as exc:  # any failure is "unhealthy", with its reason
        return PartStatus("postgresql", False, str(exc).splitlines()[0])


def _spark_status(settings: Settings) -> PartStatus:
    spark = settings.spark
    if spark.mode == "classic":
        return PartStatus("spark", True, f"classic sessions on {spark.master}")
    host_port = spark.connect_url.removeprefix("sc://").split("/")[0].split(";")[0]
    host, _, port = host_port.rpartition(":")
    up = port_open(host, int(port or 15002), timeout_s=2)
    return PartStatus("spark", up, f"Spark Connect {spark.connect_url}")
