"""`ecom up` / `down` / `status`: the whole local platform as one supervised, self-healing tree.

`up` starts each part in order (PostgreSQL, migrations, Spark Connect, the run pool, Dagster,
the generator), health-checks it before the next and records the process groups in
`<state>/stack.json`. Then it watches every part: its own children by their exit, the embedded
PostgreSQL (pg_ctl starts it, so it is not a child) by the postmaster named in postmaster.pid and
a connection probe. A part that dies is restarted with backoff; a crash loop gives up, names the
part and its log's tail, and stops everything in reverse order, as Ctrl-C and SIGTERM do
(healing.py). Every restart is told on stdout, in `<logs>/stack_YYYYMMDD.log`, in stack.json
(`ecom status`) and as a `stack_restart` alert. `down` asks a running supervisor to stop, and
cleans up by itself when the supervisor is already gone.

One supervisor per home: `up` holds a lock on the state directory for its life. A new `up` that
finds stack.json but no lock holder (the supervisor was killed) stops what the dead supervisor
left, then starts afresh; a process is signalled only if it carries that stack's ECOM_STACK_ID,
since after a crash a recorded pid may belong to anything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from ecom_assets.monitoring.logs import file_logger
from ecom_assets.redaction import redact, redacted
from ecom_assets.resources.catalogue import load_catalogue
from ecom_assets.resources.migrations import apply_migrations, discover_migrations
from ecom_assets.resources.spark_session import token_file
from ecom_assets.schema.contract_file import ContractError, load_contract
from ecom_assets.settings import Settings
from ecom_assets.stack import run_pool
from ecom_assets.stack.dagster_home import STORAGE_URL_ENV, write_dagster_home
from ecom_assets.stack.file_modes import stack_directories, tighten
from ecom_assets.stack.healing import (
    RestartPolicy,
    StackLock,
    describe_exit,
    lock_held,
    log_tail,
    raise_stack_alert,
    resolve_stack_alerts,
)
from ecom_assets.stack.local import (
    DAGSTER_DATABASE,
    ECOM_DATABASE,
    dagster_storage_url,
    database_url,
    embedded_postgres,
    local_spark_connect,
)
from ecom_assets.stack.processes import (
    STACK_ID_ENV,
    boot_id,
    carries_stack_id,
    command_line,
    command_tail,
    group_members,
    pid_alive,
    port_open,
    runs_command,
    start_group,
    start_ticks,
    stop_group,
    tail,
    wait_until,
)
from ecom_assets.stack.runs import RUN_WORKER_PARTS, StackRuns

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROBE_INTERVAL_S = 5.0
"""How often the supervisor connects to the embedded PostgreSQL (the postmaster's pid is read
every second): one connection per 5 s, against Dagster's ~13 a second (docs/decisions.md 39)."""
STACK_LOG_PREFIX = "stack"


class StackError(RuntimeError):
    """A part of the stack could not start; the message names the part and the reason."""


class GaveUp(StackError):
    """A part died more often than the restart policy allows: the stack stops."""


@dataclass
class StackState:
    """What `up` started, so `down` and `status` can find it from another process."""

    supervisor_pid: int
    groups: dict[str, int] = field(default_factory=dict)  # part -> process group id
    embedded_postgres: bool = False
    started_at: float = field(default_factory=time.time)
    stack_id: str = ""  # ECOM_STACK_ID, carried by every process of this stack
    supervisor_ticks: int | None = None  # the supervisor's start time: a reused pid differs
    restarts: dict[str, dict] = field(default_factory=dict)  # part -> count, last exit, times
    retired: list[int] = field(default_factory=list)
    """Run worker groups whose leader died and was restarted: the runs the dead run pool forked
    go on there, and are stopped with the stack."""
    boot_id: str = ""
    """The boot the pids and start times belong to: after a reboot none of them is ours."""
    supervisor_command: list[str] = field(default_factory=list)
    """The end of the supervisor's command line (processes.command_tail)."""
    leaders: dict[str, dict] = field(default_factory=dict)
    """Per part, its group leader as started: start time ("ticks") and the end of its command
    line ("command"). `down` compares both with /proc before it signals the group (_not_ours)."""


def state_file(settings: Settings) -> Path:
    return settings.paths.state / "stack.json"


def lock_file(settings: Settings) -> Path:
    return settings.paths.state / "stack.lock"


def exit_file(settings: Settings) -> Path:
    """How the last supervisor ended (stopped, gave up, failed to start), for `ecom status`."""
    return settings.paths.state / "stack_exit.json"


def read_state(settings: Settings) -> StackState | None:
    """The recorded state; None when there is none or it cannot be read. Keys this version does
    not know are ignored and missing ones take their defaults, so a state written by another
    version is still read (and its processes checked as well as it allows). A reader never
    sees a half-written file: writes are renames (``_write_state``)."""
    try:
        content = json.loads(state_file(settings).read_text())
        known = {item.name for item in fields(StackState)}
        return StackState(**{key: value for key, value in content.items() if key in known})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(content))
    temporary.replace(path)


def _write_state(settings: Settings, state: StackState) -> None:
    """Only the holder of stack.lock writes stack.json (the supervisor, for its whole life) and
    only a holder removes it (the supervisor, or `down` once none runs): two `ecom up`, or an
    `up` and a `down`, never write or remove it at once."""
    _write_json(state_file(settings), asdict(state))


def supervisor_running(settings: Settings, state: StackState | None) -> bool:
    """Is the supervisor of state alive? The lock says so; a state written before the lock
    existed falls back on its pid."""
    if lock_held(lock_file(settings)):
        return True
    return bool(state and not state.stack_id and pid_alive(state.supervisor_pid))


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


def dagster_dev_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(PROJECT_ROOT / "workspace.yaml"),
        "-h", settings.dagster.host,
        "-p", str(settings.dagster.port),
    ]  # fmt: skip


def dagster_environment(settings: Settings) -> dict[str, str]:
    """`dagster dev`'s environment. It has no read-only flag of its own, but the webserver it
    starts reads every option from a DAGSTER_WEBSERVER_ variable; the value is always set, so
    one left in the caller's shell cannot turn the setting around."""
    env = child_environment(settings)
    env["DAGSTER_WEBSERVER_READ_ONLY"] = "true" if settings.dagster.read_only else "false"
    return env


def part_log(settings: Settings, part: str) -> Path:
    """The log file a part writes, whose tail says why it died."""
    if part == "postgresql":
        return embedded_postgres(settings).log_file
    if part == "spark":
        return local_spark_connect(settings).log_file
    names = {"run pool": "run_pool.log", "dagster": "dagster.log", "generator": "generator.out"}
    return settings.log_dir / names.get(part, f"{part}.log")


def postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except (psycopg.Error, OSError):
        return False


class Supervisor:
    """Runs `up` in the foreground; every start is timed and reported through `say`."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = redacted(say)
        self.state = StackState(
            supervisor_pid=os.getpid(),
            stack_id=uuid.uuid4().hex,
            supervisor_ticks=start_ticks(os.getpid()),
            boot_id=boot_id(),
            supervisor_command=command_tail(command_line(os.getpid()) or []),
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.policy = RestartPolicy(settings.stack)
        self.logger: logging.Logger | None = None
        self.lock = StackLock(lock_file(settings))
        self._probed_at = 0.0
        self._refusing_since: float | None = None
        self._restart_alerts_open = False
        self._exit_reason = "stopped"

    # ----------------------------------------------------------------------------- reporting

    def tell(self, message: str, level: int = logging.INFO) -> None:
        """stdout, and the stack log once it is open."""
        self.say(message)
        if self.logger is not None:
            self.logger.log(level, message)

    def _timed(self, part: str, start: Callable[[], str]) -> None:
        began = time.monotonic()
        try:
            detail = start()
        except Exception as exc:
            raise StackError(f"{part} failed to start: {exc}") from exc
        self.tell(f"[up] {part:<15} ready in {time.monotonic() - began:5.1f} s  {detail}")

    def _record(self, part: str, process: subprocess.Popen[bytes]) -> None:
        self.processes[part] = process
        self.state.groups[part] = process.pid
        leader = {"ticks": start_ticks(process.pid), "command": command_tail(process.args)}
        self.state.leaders[part] = leader
        _write_state(self.settings, self.state)

    # ---------------------------------------------------------------------------- the parts

    def start_postgres(self) -> str:
        settings = self.settings
        if not settings.database.embedded:
            with psycopg.connect(database_url(settings), connect_timeout=10) as conn:
                conn.execute("SELECT 1")
            return "external server (ECOM_DATABASE_URL)"
        server = embedded_postgres(settings)
        server.admit_through(settings.paths.state)  # under root: its user reaches its data
        server.start()
        self.state.embedded_postgres = True
        _write_state(settings, self.state)
        for name in (ECOM_DATABASE, DAGSTER_DATABASE):
            server.ensure_database(name)
        self._refusing_since = None
        return f"embedded, 127.0.0.1:{server.port}, pid {server.postmaster_pid()}, data in " + str(
            server.data_dir
        )

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
        # the installation's token, which the runs and the warm-up present too
        token = token_file(self.settings.paths.state)
        server = replace(local_spark_connect(self.settings), token_file=token)
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
        log = part_log(settings, "run pool")
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
        log = part_log(settings, "dagster")
        argv = dagster_dev_command(settings)
        process = start_group(argv, log, env=dagster_environment(settings), cwd=PROJECT_ROOT)
        self._record("dagster", process)
        url = dagster_url(settings)

        def ready() -> bool:
            if process.poll() is not None:
                raise StackError(f"dagster dev exited with {process.returncode}:\n{tail(log)}")
            return http_ok(url + "/server_info")

        if not wait_until(ready, 180, interval_s=0.5):
            raise StackError(f"Dagster UI not answering at {url} after 180 s:\n{tail(log)}")
        mode = " (read-only)" if settings.dagster.read_only else ""
        return f"UI at {url}{mode}, DAGSTER_HOME {home}, log {log}"

    def start_generator(self) -> str:
        settings = self.settings
        if not settings.generator.enabled:
            return "disabled (ECOM_GENERATOR_ENABLED=false)"
        log = part_log(settings, "generator")
        argv = [sys.executable, "-m", "generator"]
        process = start_group(argv, log, env=child_environment(settings), cwd=PROJECT_ROOT)
        self._record("generator", process)
        time.sleep(0.5)
        if process.poll() is not None:
            raise StackError(f"generator exited with {process.returncode}:\n{tail(log)}")
        return f"writing into {settings.input_dir}"

    def end_runs_of_the_dead_spark(self) -> str:
        """Runs in progress hold sessions of the dead server: each new file would fail in them
        (measured: a lingering run failed every file for minutes). Terminate them, so the
        next run opens a session on the new server."""
        runs = StackRuns(self.settings, self.tell)
        try:
            ended = runs.terminate_started("The Spark Connect server was restarted (ecom up).")
        finally:
            runs.close()
        if ended:
            self.tell(f"[heal] runs        {len(ended)} terminated: {', '.join(ended)}")
        return f"{len(ended)} run(s) terminated"

    def restart_steps(self, part: str) -> list[Callable[[], str]]:
        """What brings a dead part back. A restarted PostgreSQL keeps its data and schema (no
        migration); Dagster's storage and the runs open a connection per use and reconnect by
        themselves. After a new Spark server the runs in progress are terminated (their
        sessions died with the old one), and it is warmed up again, as at start."""
        return {
            "postgresql": [self.start_postgres],
            "spark": [self.start_spark, self.end_runs_of_the_dead_spark, self.warm_up_spark],
            "run pool": [self.start_run_pool],
            "dagster": [self.start_dagster],
            "generator": [self.start_generator],
        }[part]

    # --------------------------------------------------------------------------------- up

    def up(self) -> int:
        """Start everything, then supervise until a signal or a crash loop; an exit code."""
        settings = self.settings
        if not self.lock.acquire():
            previous = read_state(settings)
            pid = f" (supervisor pid {previous.supervisor_pid})" if previous else ""
            raise StackError(
                f"already running{pid}: another `ecom up` (or an `ecom down` stopping the "
                f"last one) holds {self.lock.path}"
            )
        try:  # read under the lock: no other `up` or `down` changes stack.json meanwhile
            previous = read_state(settings)
            if previous and not previous.stack_id and pid_alive(previous.supervisor_pid):
                raise StackError(f"already running (supervisor pid {previous.supervisor_pid})")
            return self._up(previous)
        finally:
            self.lock.release()

    def _up(self, previous: StackState | None) -> int:
        settings = self.settings
        try:
            contract = load_contract(settings.paths.contract)
        except ContractError as exc:
            raise StackError(f"the event contract cannot be used: {exc}") from exc
        for directory in (settings.input_dir, settings.processed_dir, settings.quarantine_dir,
                          settings.log_dir):  # fmt: skip
            directory.mkdir(parents=True, exist_ok=True)
        tightened = tighten(stack_directories(settings), settings.paths.root)
        self.logger = file_logger("ecom.stack", settings.log_dir, STACK_LOG_PREFIX)
        self.tell(f"[up] {'contract':<15} {contract.source}")
        if tightened:
            self.tell(f"[up] {'private files':<15} group and other access removed from "
                      f"{', '.join(map(str, tightened))}")  # fmt: skip
        if previous is not None:
            self.clean_up_after(previous)
        os.environ[STACK_ID_ENV] = self.state.stack_id  # inherited by every part
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
            resolve_stack_alerts(database_url(settings), ("WARNING", "ERROR"), self.logger)
            self.tell(f"[up] all parts healthy; open {dagster_url(settings)} (Ctrl-C stops)")
            return self._supervise()
        except (StackError, KeyboardInterrupt) as exc:
            if not self.stopping:
                self.tell(f"[up] {exc}", logging.ERROR)
                self._exit_reason = f"gave up: {exc}" if isinstance(exc, GaveUp) else str(exc)
            return 0 if self.stopping else 1
        finally:
            self.shutdown()

    def clean_up_after(self, previous: StackState) -> None:
        """A supervisor was killed (the lock was free, its stack.json is here): stop what it
        left, then start afresh. Adopting the orphans was the other way; it would save their
        start (about 30 s), but they are not our children (no exit status, output pipes of a
        dead parent) and a run pool or Dagster that lost its supervisor mid-restart may be
        half-started; starting afresh gives one known state."""
        alive = [part for part, pgid in previous.groups.items() if group_members(pgid)]
        left = ", ".join(alive) if alive else "no process group"
        self.tell(
            f"[up] {'previous stack':<15} its supervisor (pid {previous.supervisor_pid}) is "
            f"gone; stopping what it left ({left})",
            logging.WARNING,
        )
        stop_recorded(self.settings, previous, self.tell)
        with contextlib.suppress(OSError):
            state_file(self.settings).unlink()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # ------------------------------------------------------------------------------ healing

    def _watched(self) -> list[str]:
        """The parts to watch, in start (dependency) order: PostgreSQL is healed first."""
        return (["postgresql"] if self.state.embedded_postgres else []) + list(self.processes)

    def _supervise(self) -> int:
        while True:
            for part in self._watched():
                how = self._death(part)
                if how is not None:
                    self._heal(part, how)
            if self._restart_alerts_open and self.policy.quiet_since(time.time()):
                resolve_stack_alerts(database_url(self.settings), ("WARNING",), self.logger)
                self._restart_alerts_open = False
            time.sleep(1)

    def _death(self, part: str) -> str | None:
        """None while the part lives; else how it died."""
        if part == "postgresql":
            return self._postgres_death()
        code = self.processes[part].poll()
        return None if code is None else describe_exit(code)

    def _postgres_death(self) -> str | None:
        server = embedded_postgres(self.settings)
        pid = server.postmaster_pid()
        if pid is None:
            return "postmaster gone"
        now = time.monotonic()
        if now - self._probed_at < PROBE_INTERVAL_S:
            return None
        self._probed_at = now
        if postgres_answers(database_url(self.settings)):
            self._refusing_since = None
            return None
        if self._refusing_since is None:
            self._refusing_since = now
            self.tell(f"[heal] postgresql  postmaster pid {pid} refuses connections",
                      logging.WARNING)  # fmt: skip
            return None
        grace = self.settings.stack.probe_grace_s
        if now - self._refusing_since < grace:
            return None
        return f"postmaster pid {pid} refused connections for {grace:.0f} s"

    def _heal(self, part: str, how: str) -> None:
        """Restart a dead part after its backoff; a restart that fails is another death.
        Raises GaveUp on a crash loop."""
        first = how
        record = self.state.restarts.setdefault(part, {"count": 0})
        window = self.settings.stack.restart_window_s
        while True:
            died_at = time.time()
            deaths, delay = self.policy.on_death(part, died_at)
            record.update(last_exit=how, last_died_at=died_at, state="restarting")
            _write_state(self.settings, self.state)
            if delay is None:
                self._give_up(part, how, deaths)
            self.tell(
                f"[heal] {part:<11} died ({how}); restarting in {delay:.1f} s "
                f"({deaths} death(s) within {window:.0f} s)",
                logging.WARNING,
            )
            self._clear(part)
            time.sleep(delay)
            began = time.monotonic()
            try:
                for step in self.restart_steps(part):
                    step()
            except Exception as exc:  # the next death: counted, backed off, or a crash loop
                how = "restart failed: " + (str(exc).splitlines() or [type(exc).__name__])[0]
                self.tell(f"[heal] {part:<11} {how}", logging.WARNING)
                continue
            break
        record.update(count=record["count"] + 1, last_restarted_at=time.time(), state="running")
        _write_state(self.settings, self.state)
        took = time.monotonic() - began
        self.tell(f"[heal] {part:<11} restarted in {took:.1f} s (restart {record['count']} of "
                  f"this stack)")  # fmt: skip
        raise_stack_alert(
            database_url(self.settings), self.settings, "WARNING",
            f"{part} died ({first}) and was restarted (restart {record['count']} of this "
            f"stack, {deaths} death(s) within {window:.0f} s)",
            {"part": part, "exit": first, "restarts": record["count"],
             "deaths_in_window": deaths, "died_at": _iso(record["last_died_at"]),
             "restarted_at": _iso(record["last_restarted_at"])},
            self.logger,
        )  # fmt: skip
        self._restart_alerts_open = True

    def _clear(self, part: str) -> None:
        """What a dead part left, out of the way of its successor."""
        if part == "postgresql":
            server = embedded_postgres(self.settings)
            pid = server.postmaster_pid()
            if pid is not None:  # alive but refusing connections: an immediate shutdown
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)
                if not wait_until(lambda: server.postmaster_pid() is None, 10):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            ended = server.end_orphans()
            if ended:
                self.tell(f"[heal] postgresql  ended {ended} process(es) of the dead postmaster")
            return
        pgid = self.state.groups.get(part)
        if pgid is None or not group_members(pgid):
            return
        if part == "run pool":  # its forked runs are not the pool: they finish their work
            self.state.retired.append(pgid)
            _write_state(self.settings, self.state)
            self.tell(f"[heal] run pool    its run workers (group {pgid}) go on")
            return
        stop_group(pgid, timeout_s=20)

    def _give_up(self, part: str, how: str, deaths: int) -> None:
        window = self.settings.stack.restart_window_s
        log = part_log(self.settings, part)
        summary = (
            f"{part} died {deaths} times within {window:.0f} s (last: {how}): a crash loop, "
            f"giving up and stopping the stack"
        )
        raise_stack_alert(
            database_url(self.settings), self.settings, "ERROR",
            f"{summary}. The last lines of {log}: {tail(log, 3)}",
            {"part": part, "exit": how, "deaths_in_window": deaths,
             "restarts": self.state.restarts.get(part, {}).get("count", 0),
             "died_at": _iso(time.time()), "log": str(log)},
            self.logger,
        )  # fmt: skip
        raise GaveUp(f"{summary}. The last lines of {log}:\n{log_tail(log, tail)}")

    # ------------------------------------------------------------------------------- stop

    def shutdown(self) -> None:
        """Stop in reverse order of start; safe to call more than once."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_recorded(self.settings, self.state, self.tell)
        with contextlib.suppress(OSError):
            state_file(self.settings).unlink()
        with contextlib.suppress(OSError):
            _write_json(
                exit_file(self.settings),
                {
                    "at": time.time(),
                    "reason": redact(self._exit_reason),
                    "restarts": self.state.restarts,
                },
            )


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="seconds")


def _not_ours(part: str, pgid: int, state: StackState) -> str | None:
    """Why process group pgid is not (or no longer) this stack's ``part``; None when it is, or
    when nothing is left in it to signal.

    After a crash or a reboot a recorded pid may belong to anything. So: recorded under another
    boot, nothing is ours; a live leader (pid == pgid) must have the recorded start time and
    the recorded end of its command line; and one member at least must carry the stack's
    ECOM_STACK_ID (while it has members, Linux never gives the group's id to another group, so
    a leaderless group of ours stays recognisable). A group recorded by an older version with
    neither an id nor a leader's identity cannot be told from a reused pid: it is not ours."""
    if state.boot_id and state.boot_id != boot_id():
        return "recorded before the machine restarted"
    members = group_members(pgid)
    if not members:
        return None
    leader = state.leaders.get(part)
    if leader is not None and pgid in members:
        if start_ticks(pgid) != leader.get("ticks"):
            return f"its leader started at another time than the {part} recorded"
        if not runs_command(pgid, leader.get("command") or []):
            return f"its leader runs another command than the {part} recorded"
    if state.stack_id:
        if any(carries_stack_id(pid, state.stack_id) for pid in members):
            return None
        return f"none of its processes carries this stack's {STACK_ID_ENV}"
    return None if leader is not None else "stack.json records no identity for it"


def _supervisor_not_ours(state: StackState) -> str | None:
    """Why the recorded supervisor pid is not that supervisor now; None when it is."""
    pid = state.supervisor_pid
    if state.boot_id and state.boot_id != boot_id():
        return "recorded before the machine restarted"
    if state.supervisor_ticks is None:
        return "stack.json records no start time for it"
    if start_ticks(pid) != state.supervisor_ticks:
        return "it started at another time than the supervisor recorded"
    if state.supervisor_command and not runs_command(pid, state.supervisor_command):
        return "it runs another command than the supervisor recorded"
    return None


def stop_recorded(settings: Settings, state: StackState, say: Callable[[str], None]) -> bool:
    """Stop every recorded group and the embedded server; True when nothing is left. Runs are
    told before their workers are signalled, so a stop never reads as a failure (runs.py).
    A group whose processes are not this stack's (pid reuse after a crash or a reboot) is never
    signalled (``_not_ours``, asked again before each signal), and said so."""
    clean = True
    runs = StackRuns(settings, say)
    groups = [(f"{part}", pgid) for part, pgid in state.groups.items()]
    groups = [("run pool (old)", pgid) for pgid in state.retired] + groups
    for part, pgid in reversed(groups):
        why = _not_ours(part, pgid, state)
        if why is not None:
            say(f"[down] {part:<11} not ours: group {pgid}, {why}; left alone")
            continue
        if part.split(" (")[0] in RUN_WORKER_PARTS and group_members(pgid):
            runs.mark_stopping()
        began = time.monotonic()

        def ours(part: str = part, pgid: int = pgid) -> bool:
            return _not_ours(part, pgid, state) is None

        stopped = stop_group(pgid, timeout_s=20, ours=ours)
        clean &= stopped
        verdict = "stopped" if stopped else "STILL RUNNING"
        say(f"[down] {part:<11} {verdict} in {time.monotonic() - began:4.1f} s")
    if any(part.split(" (")[0] in RUN_WORKER_PARTS for part, _ in groups):
        runs.cancel_leftovers()
    runs.close()
    if state.embedded_postgres:
        server = embedded_postgres(settings)
        began = time.monotonic()
        server.stop()
        server.end_orphans()
        clean &= not server.is_running()
        say(f"[down] postgresql  stopped in {time.monotonic() - began:4.1f} s")
    return clean


def _left_running(state: StackState) -> list[str]:
    """The recorded parts of which processes of ours are still running."""
    return [
        part
        for part, pgid in state.groups.items()
        if group_members(pgid) and _not_ours(part, pgid, state) is None
    ]


def down(settings: Settings, say: Callable[[str], None] = print, timeout_s: float = 60) -> bool:
    """Stop a running stack from another process; True when nothing is left running.

    The supervisor is signalled only when its pid still has the recorded start time and
    command line. Once no supervisor runs, `down` holds stack.lock itself while it stops what
    is left and removes stack.json: an `ecom up` starting meanwhile is refused, rather than
    finding the old parts half-stopped or having its fresh stack.json removed under it."""
    say = redacted(say)
    state = read_state(settings)
    if state is None:
        say("[down] nothing recorded as running")
        server = embedded_postgres(settings) if settings.database.embedded else None
        if server is not None and server.is_running():
            server.stop()
            say("[down] postgresql  stopped (left over)")
        return True
    pid = state.supervisor_pid
    signalled = False
    if supervisor_running(settings, state) and pid != os.getpid():
        why = _supervisor_not_ours(state)
        if why is None:
            os.kill(pid, signal.SIGTERM)
            signalled = True
        else:
            say(f"[down] supervisor  not ours: pid {pid}, {why}; left alone")
    lock = StackLock(lock_file(settings))
    # the supervisor lets the lock go when it has stopped; until then there is nothing to take
    locked = wait_until(lock.acquire, timeout_s if signalled else 0)
    try:
        if locked:  # no supervisor runs and none can start: stack.json is the last one's
            current = read_state(settings)
            if current is not None and current.stack_id != state.stack_id:
                state = current  # another stack came and went since the first read
            if signalled and current is None and not _left_running(state):
                say("[down] supervisor stopped every part")
                return True
        clean = stop_recorded(settings, state, say)
        current = read_state(settings)
        if current is not None and (locked or current.stack_id == state.stack_id):
            with contextlib.suppress(OSError):  # never the stack.json of an `up` started since
                state_file(settings).unlink()
        return clean
    finally:
        if locked:
            lock.release()


@dataclass(frozen=True)
class PartStatus:
    part: str
    healthy: bool
    detail: str
    restarts: int = 0
    last_restart: dict | None = None  # died_at, exit, restarted_at of the latest restart


def status(settings: Settings) -> list[PartStatus]:
    """Health of each part, checked for real (query, port, HTTP), not read from the state file;
    with the restarts the running supervisor recorded."""
    state = read_state(settings)
    parts = [_supervisor_status(settings, state), _postgres_status(settings),
             _spark_status(settings)]  # fmt: skip
    url = dagster_url(settings)
    parts.append(PartStatus("dagster", http_ok(url + "/server_info"), url))
    if settings.dagster.run_pool:
        path = run_pool.socket_path(settings)
        parts.append(PartStatus("run pool", run_pool.answers(path), str(path)))
    generator_pid = state.groups.get("generator") if state else None
    if not settings.generator.enabled:
        parts.append(PartStatus("generator", True, "disabled"))
    else:
        alive = generator_pid is not None and pid_alive(generator_pid)
        parts.append(PartStatus("generator", alive, f"pid {generator_pid}" if alive else "stopped"))
    restarts = state.restarts if state else {}
    return [_with_restarts(part, restarts.get(part.part)) for part in parts]


def _with_restarts(part: PartStatus, record: dict | None) -> PartStatus:
    if not record:
        return part
    last = {
        "exit": record.get("last_exit"),
        "died_at": _iso(record.get("last_died_at")),
        "restarted_at": _iso(record.get("last_restarted_at")),
    }
    if record.get("state") == "restarting":
        note = f"restarting after: {last['exit']} at {last['died_at']}"
        healthy = False
    else:
        note = f"restarted {record['count']}x, last after: {last['exit']} at {last['died_at']}"
        healthy = part.healthy
    return PartStatus(part.part, healthy, f"{part.detail}; {note}", record["count"], last)


def _supervisor_status(settings: Settings, state: StackState | None) -> PartStatus:
    if state is not None and supervisor_running(settings, state):
        since = _iso(state.started_at)
        return PartStatus("supervisor", True, f"pid {state.supervisor_pid}, up since {since}")
    if state is not None:
        return PartStatus(
            "supervisor", False,
            f"pid {state.supervisor_pid} is gone: its parts run unsupervised; `ecom up` stops "
            "them and starts afresh, `ecom down` stops them",
        )  # fmt: skip
    try:
        last = json.loads(exit_file(settings).read_text())
        return PartStatus("supervisor", False, f"not running; last {_iso(last['at'])}: "
                          f"{last['reason'].splitlines()[0]}")  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return PartStatus("supervisor", False, "not running")


def _postgres_status(settings: Settings) -> PartStatus:
    try:
        with psycopg.connect(database_url(settings), connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        if settings.database.embedded:
            pid = embedded_postgres(settings).postmaster_pid()
            return PartStatus("postgresql", True, f"embedded, PostgreSQL {version}, pid {pid}")
        return PartStatus("postgresql", True, f"external, PostgreSQL {version}")
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
