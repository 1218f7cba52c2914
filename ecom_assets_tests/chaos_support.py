"""Chaos runs: a backlog with a known truth, ingested by a real `ecom up` while its parts die.

Shared by the suite's bounded test (test_chaos.py) and the longer benchmark (bench/chaos.py).

- **The backlog** (`write_backlog`): the generator's files (every schema version, 10 % anomalies,
  late rows, replays of earlier files' rows), other shops' files (generator.foreign: BOM, CRLF,
  other column orders, extras, torn rows) and hand-written files no producer of ours writes
  (quoted newlines and quotes, blank lines, extra and missing fields, one id twice with other
  contents, an empty file, bytes that are not UTF-8, a header without records, a replay of a
  generated file's rows under another name). Every file lands in one hourly partition.
- **The truth** (`ingest_truth`): the same files ingested once, undisturbed, in-process with
  `ingest_partition` into an empty database; PLUS an independent count (`account`): every
  record Python's csv module reads is, exactly once, an event, a dead letter (file, line) or a
  silent duplicate of a stored id. Neither alone would do: the first says what the code does
  when nothing fails, not whether that loses rows; the second cannot tell values apart.
- **What is compared** (`Contents`, `differences`): every event id with a hash of all its stored
  values but `processed_at` (the run's clock), every dead letter's (file, line) with its codes,
  id, schema version and raw record, the quarantined files, and each file's metrics rows.
- **The chaos** (`ChaosStack`, `run_chaos`): kill -9 of a run worker, PostgreSQL's postmaster,
  the Spark Connect server's JVM or the `ecom up` supervisor, at seeded random moments while the
  stack ingests; then what a user does: wait a bounded time for the stack to heal itself, and
  when it does not (or the supervisor is gone), `ecom down` then `ecom up`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import psycopg

from ecom_assets.partitions import PARTITION_FORMAT, produced_at
from ecom_assets.settings import IngestionSettings, PathSettings, load_settings
from ecom_assets.stack.local import embedded_postgres, isolated_environment
from ecom_assets.stack.processes import group_members, pid_alive, stop_group, wait_until
from ecom_assets.stack.supervisor import StackState, read_state
from generator.foreign import SHOPS, write_shop

ECOM = [sys.executable, "-m", "ecom_assets.cli"]
TARGETS = ("worker", "postgres", "spark", "supervisor")
FILES_PER_BATCH = 3
"""Small batches: a run commits many times, so kills land between, during and after commits."""
QUIET_CRON = "0 0 1 1 *"  # the analytics refresh, once a year: not part of what is tested
Key = tuple[str, int]  # (source file, record number)


# ---------------------------------------------------------------- the backlog


def backlog_start(now: datetime | None = None) -> datetime:
    """Where simulated time starts: within the current hour, at most 10 minutes ago, so every
    file shares one partition and the generator's future-time anomalies (an hour or more ahead)
    stay in the future for as long as a chaos run lasts."""
    now = now or datetime.now(tz=UTC)
    return max(now.replace(minute=0, second=0, microsecond=0), now - timedelta(minutes=10))


def write_backlog(
    directory: Path, seed: int, generated: int, events: int, start: datetime
) -> list[Path]:
    """Every file of the backlog in ``directory``, none hidden, sorted by name."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "generator", "--output-dir", str(directory),
         "--log-dir", str(directory.parent / "generator-logs"), "--start-time", start.isoformat(),
         "--files", str(generated), "--events-per-file", str(events), "--interval", "1",
         "--schema", "mixed", "--anomaly-rate", "0.1", "--late-rate", "0.05", "--seed", str(seed)],
        env=_clean_env(directory.parent), check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    stamp = start + timedelta(seconds=generated + 5)
    for shop in SHOPS.values():
        for written in write_shop(shop, directory, 1, max(events, 50), seed, now=stamp):
            _stamp(written.path, stamp)
    first = sorted(directory.glob("events_*.csv"))[0]
    for name, content in _hand_written(first, random.Random(seed)).items():
        path = directory / name
        path.write_bytes(content)
        # a copy of a generated file's rows arrives when that file did: identical values
        _stamp(path, produced_at(first.name, stamp) if name.startswith("resend") else stamp)
    return sorted(path for path in directory.iterdir() if path.is_file())


def _stamp(path: Path, moment: datetime) -> None:
    os.utime(path, (moment.timestamp(), moment.timestamp()))


def _clean_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECOM_")}
    return env | {"ECOM_ENV_FILE": str(home / "absent.env"), "ECOM_DATA_DIR": str(home / "gen")}


def _hand_written(generated: Path, rng: random.Random) -> dict[str, bytes]:
    """Files no generator of ours writes; what becomes of them is the truth run's to say."""
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(12)]
    moment = "2026-01-01T00:00:00Z"
    quoted = (
        "event_type,event_id,user_id,product_id,price,quantity,event_time,session_id,geo_city,note\r\n"
        f'view,{ids[0]},7,101,,,{moment},s1,"Washington, D.C.","a ""quoted"" note"\r\n'
        "\r\n"
        f'purchase,{ids[1].upper()},8,102,19.99,2,{moment},s2,"line one\nline two",x\r\n'
        f"view,{ids[2]},9,103,,,{moment},s3,Oslo\r\n"  # a field missing: MALFORMED_ROW
        f"view,{ids[3]},9,103,,,{moment},s3,Oslo,x,surplus\r\n"  # one too many
        f"add_to_cart,{ids[4]},10,104,5.00,1,{moment},s4,Bergen,\r\n"
        f"add_to_cart,{ids[4]},10,104,6.00,1,{moment},s4,Bergen,other contents\r\n"
        f"search,not-a-uuid,11,,,,{moment},s5,,\r\n"
        f",{ids[5]},12,105,,,{moment},s6,,no type\r\n"
        f"view,{ids[6]},13,106,,,31/12/2025 10:00,s7,,day first\r\n"
    )
    with generated.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    resend = io_csv([rows[0], *rows[1:6]])  # the first five records again, byte for byte
    return {
        "partner_feed_quoted.csv": quoted.encode(),
        "resend_of_first_file.csv": resend,
        "header_only.csv": b"event_id,event_type,user_id,product_id,price,event_time\n",
        "empty.csv": b"",
        "latin1_export.csv": "event_id,event_type,user_id\n1,vue caf\xe9,2\n".encode("latin-1"),
    }


def io_csv(rows: list[list[str]]) -> bytes:
    lines = []
    for row in rows:
        lines.append(",".join(_quote(value) for value in row))
    return ("\n".join(lines) + "\n").encode()


def _quote(value: str) -> str:
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


# ---------------------------------------------------------------- what landed


@dataclass
class Contents:
    """What the tables and the quarantine hold, row by row."""

    events: dict[str, str] = field(default_factory=dict)
    """event_id -> hash of every stored value but processed_at."""
    event_values: dict[str, dict] = field(default_factory=dict, repr=False)
    """event_id -> the values hashed, to say which differ."""
    event_sources: dict[str, Key] = field(default_factory=dict)
    dead_letters: dict[Key, str] = field(default_factory=dict)
    """(file, line) -> codes, id, schema version and a hash of the raw record."""
    dead_letter_rows: int = 0
    quarantined: set[str] = field(default_factory=set)
    """Quarantined names: in the ledger, and in the quarantine directory."""
    metrics: dict[str, str] = field(default_factory=dict)
    """file -> its data_quality_metrics rows: how many, rows read, valid, invalid."""
    unfinished_files: list[str] = field(default_factory=list)
    """Ledger rows neither committed nor quarantined (claimed, pending, failed)."""
    staging_tables: int = 0

    @property
    def rows(self) -> int:
        return len(self.events) + self.dead_letter_rows


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_contents(url: str, quarantine_dir: Path) -> Contents:
    found = Contents()
    with psycopg.connect(url) as conn:
        for doc in conn.execute("SELECT to_jsonb(e) - 'processed_at' FROM ecommerce_events e"):
            row = doc[0]
            found.events[row["event_id"]] = _digest(row)
            found.event_values[row["event_id"]] = row
            found.event_sources[row["event_id"]] = (row["source_file"], row["source_line"])
        dead = conn.execute(
            "SELECT source_file, source_line, error_codes, event_id, schema_version, raw_record "
            "FROM dead_letter_events"
        ).fetchall()
        for file, line, codes, event_id, version, raw in dead:
            found.dead_letters[(file, line)] = (
                f"{','.join(sorted(codes))} id={event_id} v={version} raw={_digest(raw)}"
            )
        found.dead_letter_rows = len(dead)
        ledger = conn.execute("SELECT file_name, status FROM ingest_files").fetchall()
        found.quarantined = {name for name, status in ledger if status == "quarantined"}
        found.unfinished_files = sorted(
            f"{name} ({status})" for name, status in ledger
            if status not in ("committed", "quarantined")
        )  # fmt: skip
        metrics = conn.execute(
            "SELECT source_file, count(*), sum(rows_read), sum(rows_valid), sum(rows_invalid) "
            "FROM data_quality_metrics GROUP BY source_file"
        ).fetchall()
        found.metrics = {file: f"rows={n} read={r} valid={v} invalid={i}"
                         for file, n, r, v, i in metrics}  # fmt: skip
        found.staging_tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'stage%'"
        ).fetchone()[0]
    if quarantine_dir.is_dir():
        found.quarantined |= {
            "dir:" + path.name for path in quarantine_dir.iterdir()
            if path.is_file() and not path.name.endswith(".reason.json")
        }  # fmt: skip
    return found


def differences(truth: Contents, got: Contents, copies: dict[str, set[Key]], limit: int = 20
                ) -> tuple[list[str], int]:  # fmt: skip
    """Every way ``got`` differs from ``truth``: lost, extra or changed rows, quarantines and
    metrics; plus anything left unfinished. Empty when they agree.

    An event written in several files (``copies``: a producer's replay) is stored from the copy
    that commits first; a kill can change which batch commits first, so an event stored from
    another of its copies is not a difference: the second value returned counts them."""
    found: list[str] = []
    other_copy = 0
    for line in _compare("event", truth.events, got.events):
        event_id = line.split()[2]
        source = got.event_sources.get(event_id)
        if (
            line.startswith("event changed:")
            and source != truth.event_sources.get(event_id)
            and source in copies.get(event_id, set())
        ):
            other_copy += 1
            continue
        found.append(line + _changed_values(truth.event_values, got.event_values, line))
    found += _compare("dead letter", truth.dead_letters, got.dead_letters)
    if got.dead_letter_rows != len(got.dead_letters):
        found.append(f"dead letters duplicated: {got.dead_letter_rows} rows, "
                     f"{len(got.dead_letters)} (file, line)")  # fmt: skip
    found += _compare("quarantined", dict.fromkeys(truth.quarantined, "yes"),
                      dict.fromkeys(got.quarantined, "yes"))  # fmt: skip
    found += _compare("metrics of file", truth.metrics, got.metrics)
    found += [f"unfinished in the ledger: {name}" for name in got.unfinished_files]
    if got.staging_tables:
        found.append(f"{got.staging_tables} staging table(s) left")
    if len(found) > limit:
        found = [*found[:limit], f"... and {len(found) - limit} more"]
    return found, other_copy


def copies_of(records: list[Record]) -> dict[str, set[Key]]:
    """Event ids written in more than one file, with every record that holds them."""
    by_id: dict[str, set[Key]] = defaultdict(set)
    for record in records:
        by_id[_uuid_text(record.event_id)].add(record.key)
    return {
        event_id: keys for event_id, keys in by_id.items()
        if event_id and len({file for file, _ in keys}) > 1
    }  # fmt: skip


def _changed_values(truth: dict[str, dict], got: dict[str, dict], line: str) -> str:
    """For a changed event, which of its values differ (truth -> got)."""
    event_id = line.split()[2] if line.startswith("event changed:") else None
    if event_id not in truth or event_id not in got:
        return ""
    old, new = truth[event_id], got[event_id]
    fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return " (" + "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in fields) + ")"


def _compare(what: str, truth: dict, got: dict) -> list[str]:
    lost = [
        f"{what} lost: {key} {truth[key]}" for key in sorted(truth.keys() - got.keys(), key=str)
    ]
    extra = [
        f"{what} extra: {key} {got[key]}" for key in sorted(got.keys() - truth.keys(), key=str)
    ]
    changed = [
        f"{what} changed: {key} {truth[key]} -> {got[key]}"
        for key in sorted(truth.keys() & got.keys(), key=str)
        if truth[key] != got[key]
    ]
    return lost + extra + changed


# ---------------------------------------------------------------- the independent count


@dataclass(frozen=True)
class Record:
    key: Key
    event_id: str
    """As written, stripped and lower-cased: how a valid id is stored."""


def csv_records(files: list[Path]) -> tuple[list[Record], set[str]]:
    """Every record Python's csv module reads (header and empty lines excluded), and the files
    it cannot read as UTF-8 CSV with a header naming event_id."""
    records: list[Record] = []
    unreadable: set[str] = set()
    for path in files:
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows = [row for row in csv.reader(handle) if row]
        except (UnicodeDecodeError, csv.Error):
            unreadable.add(path.name)
            continue
        header = [name.strip().lower() for name in rows[0]] if rows else []
        if "event_id" not in header:
            unreadable.add(path.name)
            continue
        column = header.index("event_id")
        for number, row in enumerate(rows[1:], start=1):
            value = row[column].strip().lower() if column < len(row) else ""
            records.append(Record((path.name, number), value))
    return records, unreadable


def account(records: list[Record], unreadable: set[str], contents: Contents) -> list[str]:
    """Problems with "every record lands exactly once": each record of a file that was not
    quarantined is an event from that (file, line), or a dead letter of it, or a silent duplicate
    (its id stored from another record); no row comes from anywhere else."""
    problems: list[str] = []
    quarantined = {name.removeprefix("dir:") for name in contents.quarantined}
    event_at = {source: event_id for event_id, source in contents.event_sources.items()}
    known = {record.key for record in records}
    duplicates = 0
    for record in records:
        if record.key[0] in quarantined:
            continue
        as_event = record.key in event_at
        as_dead = record.key in contents.dead_letters
        if as_event and as_dead:
            problems.append(f"record {record.key} is both an event and a dead letter")
        elif as_event and event_at[record.key] != _uuid_text(record.event_id):
            problems.append(f"record {record.key} stored under id {event_at[record.key]}")
        elif not as_event and not as_dead:
            if _uuid_text(record.event_id) in contents.events:
                duplicates += 1
            else:
                problems.append(f"record {record.key} (id {record.event_id!r}) is nowhere")
    for source in sorted(event_at.keys() - known):
        problems.append(f"event from {source}: no such record")
    for source in sorted(contents.dead_letters.keys() - known):
        if source[0] not in unreadable:
            problems.append(f"dead letter of {source}: no such record")
    for name in sorted(quarantined & {record.key[0] for record in records}):
        if any(key[0] == name for key in event_at) or any(
            key[0] == name for key in contents.dead_letters
        ):
            problems.append(f"quarantined file {name} also has rows stored")
    return problems


def _uuid_text(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


# ---------------------------------------------------------------- the truth run


def partitions_of(files: list[Path]) -> list[str]:
    return sorted(
        {
            produced_at(path.name, datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)).strftime(
                PARTITION_FORMAT
            )
            for path in files
        }
    )


def ingest_truth(spark, url: str, home: Path, files: list[Path]) -> Contents:
    """The files ingested once, undisturbed, in this process, into the migrated database at url."""
    from ecom_assets.ingest import ingest_partition  # the data path: only where it is used

    settings = load_settings(
        paths=PathSettings(home=home),
        ingestion=IngestionSettings(
            file_settle_s=0, max_files_per_run=FILES_PER_BATCH, linger_s=0, max_run_s=0,
            partitions_start=partitions_of(files)[0],
        ),
    )  # fmt: skip
    settings.input_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, settings.input_dir / path.name)
    log = logging.getLogger("chaos.truth")
    for number, partition in enumerate(partitions_of(files)):
        ingest_partition(spark, url, settings, partition, f"truth-{number}", log)
    left = sorted(path.name for path in settings.input_dir.iterdir())
    if left:
        raise AssertionError(f"the undisturbed run left files in input/: {left}")
    return read_contents(url, settings.quarantine_dir)


# ---------------------------------------------------------------- the stack under chaos


@dataclass
class Kill:
    round: int
    target: str
    pid: int
    at_s: float
    """Seconds after the round's files were dropped."""
    killed_at: float = 0.0
    """time.time() of the kill."""
    restarted: str = ""
    """How it came back: "healed" by itself, "ecom up" again, or "down+up"."""
    back_s: float = 0.0
    """From the kill to the stack healthy again (as `_recover` saw it)."""
    recovery_s: float | None = None
    """From the kill to the next file committed: ingestion flowing again."""


class ChaosStack:
    """`ecom up` in a throwaway home, driven from outside as a user would."""

    def __init__(self, home: Path, partitions_start: str) -> None:
        self.home = home
        self.env = isolated_environment(home) | {
            "ECOM_INGEST_PARTITIONS_START": partitions_start,
            "ECOM_GENERATOR_ENABLED": "false",
            "ECOM_DAGSTER_ANALYTICS_CRON": QUIET_CRON,
            "ECOM_INGEST_MAX_FILES_PER_RUN": str(FILES_PER_BATCH),
            "ECOM_INGEST_RETRY_AFTER_S": "5",
        }
        self.settings = load_settings(paths=PathSettings(home=home))
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "ecom-up.log"
        self.url = ""

    @property
    def input_dir(self) -> Path:
        return self.home / "data" / "input"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "data" / "quarantine"

    def ecom(self, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ECOM, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s
        )

    def up(self, timeout_s: float = 240) -> None:
        """`ecom up` in the background; returns once it says every part is healthy."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*ECOM, "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        process = self.process

        def healthy() -> bool:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if "all parts healthy" in text:
                return True
            if process.poll() is not None:
                raise RuntimeError(f"ecom up exited with {process.returncode}:\n{text[-3000:]}")
            return False

        if not wait_until(healthy, timeout_s, interval_s=0.3):
            raise RuntimeError(f"ecom up not healthy after {timeout_s} s")
        if not self.url:
            self.url = self.ecom("db-url").stdout.strip()

    def down(self) -> str:
        result = self.ecom("down")
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return result.stdout

    def healthy(self) -> bool:
        """The supervisor alive and `ecom status` healthy."""
        if self.process is None or self.process.poll() is not None:
            return False
        return self.ecom("status", timeout_s=60).returncode == 0

    def target_pid(self, target: str) -> int | None:
        """The live process a kill of ``target`` hits, or None when there is none right now."""
        state = read_state(self.settings)
        if state is None:
            return None
        if target == "supervisor":
            return state.supervisor_pid if pid_alive(state.supervisor_pid) else None
        if target == "postgres":
            pid_file = embedded_postgres(self.settings).data_dir / "postmaster.pid"
            with suppress(OSError, ValueError, IndexError):
                pid = int(pid_file.read_text().split()[0])
                return pid if pid_alive(pid) else None
            return None
        if target == "spark":
            return _find(state, "spark", lambda argv: argv[:1] and argv[0].endswith("java"))
        if target == "worker":
            return run_worker(state)
        raise ValueError(target)

    def next_commit_s(self, moment: float) -> float | None:
        """Seconds from ``moment`` (time.time()) to the first file committed after it."""
        with psycopg.connect(self.url, connect_timeout=10) as conn:
            first = conn.execute(
                "SELECT min(committed_at) FROM ingest_files WHERE committed_at > to_timestamp(%s)",
                (moment,),
            ).fetchone()[0]
        return None if first is None else first.timestamp() - moment

    def waiting(self, names: set[str]) -> list[str]:
        return sorted(name for name in os.listdir(self.input_dir) if name in names)

    def leftovers(self) -> list[str]:
        """Processes of this home still alive (their environment names it)."""
        return processes_of(self.home)


def _find(state: StackState, part: str, wanted: Callable[[list[str]], bool]) -> int | None:
    pgid = state.groups.get(part)
    for pid in group_members(pgid) if pgid else []:
        if wanted(_argv(pid)):
            return pid
    return None


def _argv(pid: int) -> list[str]:
    try:
        return [word.decode(errors="replace") for word in
                Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if word]  # fmt: skip
    except OSError:
        return []


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found


def run_worker(state: StackState) -> int | None:
    """A process executing a Dagster run: a fork of the run pool, or (the pool off or refusing)
    a `dagster api execute_run` the code server spawned."""
    pool = state.groups.get("run pool")
    if pool and pid_alive(pool):
        forks = _children(pool)
        if forks:
            return forks[0]
    for part in ("dagster", "run pool"):
        found = _find(state, part, lambda argv: "execute_run" in argv)
        if found:
            return found
    return None


def processes_of(home: Path) -> list[str]:
    """Live processes whose environment has ECOM_HOME=home: what a stack there left running."""
    marker = f"ECOM_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0") and pid_alive(
                int(entry.name)
            ):
                found.append(f"{entry.name} {' '.join(_argv(int(entry.name)))[:120]}")
    return found


def kill_leftovers(home: Path) -> None:
    """Last resort after a failed run: nothing of the throwaway stack may outlive it."""
    for line in processes_of(home):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


@dataclass
class ChaosPlan:
    rounds: int
    seed: int
    kill_window_s: float = 6.0
    """A kill comes at a random moment up to this long after the round's files landed."""
    heal_wait_s: float = 20.0
    """How long a broken stack may take to heal itself before `ecom down` + `ecom up`."""
    drain_timeout_s: float = 300.0
    """After the last round, for every file to leave input/."""
    settle_timeout_s: float = 60.0
    """Then for the ledger to hold no unfinished file and the last run to drop its staging."""


@dataclass
class ChaosReport:
    kills: list[Kill] = field(default_factory=list)
    restarts: int = 0
    drained_s: float = 0.0

    def kills_by_target(self) -> dict[str, int]:
        return dict(Counter(kill.target for kill in self.kills))


def run_chaos(
    stack: ChaosStack, backlog: list[Path], plan: ChaosPlan, say: Callable[[str], None] = print
) -> ChaosReport:
    """Drop the backlog in slices, one per round, and kill a target in each round (round-robin
    from a seeded offset, at a seeded random moment); restart as a user would; finally wait
    until every file has left input/. The stack is left up (the caller reads it, then stops it)."""
    rng = random.Random(plan.seed)
    first = rng.randrange(len(TARGETS))
    order = [TARGETS[(first + number) % len(TARGETS)] for number in range(plan.rounds)]
    if len(backlog) < 2 * plan.rounds:
        raise ValueError(f"{len(backlog)} files cannot make {plan.rounds} rounds of 2 or more")
    slices = _slices(backlog, plan.rounds)
    names = {path.name for path in backlog}
    report = ChaosReport()
    stack.up()
    for number, target in enumerate(order, start=1):
        before, after = slices[number - 1]
        dropped = time.monotonic()
        _drop(before, stack.input_dir)
        kill = _kill(stack, number, target, dropped, rng.uniform(0.5, plan.kill_window_s), say)
        _drop(after, stack.input_dir)  # something always waits after the kill
        kill.restarted = _recover(stack, target, plan, say)
        kill.back_s = time.time() - kill.killed_at
        report.restarts += kill.restarted == "down+up"
        say(f"[chaos] round {number}: kill -9 {target} (pid {kill.pid}) at +{kill.at_s:.1f} s; "
            f"{kill.restarted}, healthy again after {kill.back_s:.1f} s")  # fmt: skip
        report.kills.append(kill)
    started = time.monotonic()
    if not wait_until(lambda: not stack.waiting(names), plan.drain_timeout_s, 1.0):
        raise AssertionError(f"files still in input/ after {plan.drain_timeout_s} s: "
                             f"{stack.waiting(names)}")  # fmt: skip
    report.drained_s = time.monotonic() - started
    # the last run lingers for its hour, then drops its staging tables
    settled = partial(_settled, stack)
    wait_until(settled, plan.settle_timeout_s, 1.0)
    for kill in report.kills:
        kill.recovery_s = stack.next_commit_s(kill.killed_at)
    return report


def _settled(stack: ChaosStack) -> bool:
    contents = read_contents(stack.url, stack.quarantine_dir)
    return not contents.unfinished_files and not contents.staging_tables


def _slices(backlog: list[Path], rounds: int) -> list[tuple[list[Path], list[Path]]]:
    """Per round: files dropped before the kill, and at least one after it; the last round's
    slice takes what is left. In name order, as the undisturbed run took them: an event written
    in two files is stored from the one that commits first, so only that order gives the truth
    run's rows."""
    files = sorted(backlog, key=lambda path: path.name)
    size = max(2, len(files) // rounds)
    slices = []
    for number in range(rounds):
        end = len(files) if number == rounds - 1 else (number + 1) * size
        part = files[number * size : end]
        split = max(1, len(part) - max(1, len(part) // 4))
        slices.append((part[:split], part[split:]))
    return slices


def _drop(files: list[Path], input_dir: Path) -> None:
    """Rename into input/ as producers should (the backlog sits on the same file system)."""
    for path in files:
        if path.exists():
            path.rename(input_dir / path.name)


def _kill(stack: ChaosStack, number: int, target: str, dropped: float, delay_s: float,
          say: Callable[[str], None]) -> Kill:  # fmt: skip
    """kill -9 the target once it exists, at the drawn moment (or as soon after as it exists)."""
    time.sleep(max(0.0, dropped + delay_s - time.monotonic()))
    deadline = time.monotonic() + 180  # a worker: once the sensor's run starts
    while (pid := stack.target_pid(target)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"round {number}: no {target} process to kill within 180 s")
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return Kill(number, target, pid, time.monotonic() - dropped, killed_at=time.time())


def _recover(stack: ChaosStack, target: str, plan: ChaosPlan, say: Callable[[str], None]) -> str:
    """What a user does. The supervisor gone (`ecom up` was killed, or gave up): run `ecom up`
    again, and when that does not come up, `ecom down` then `ecom up`. The supervisor alive: give
    the stack heal_wait_s to heal itself, then `ecom down` then `ecom up`."""
    time.sleep(1.0)  # let the supervisor see the death, if it will
    if stack.process is None or stack.process.poll() is not None:
        try:
            stack.up()
            return "ecom up"
        except RuntimeError as exc:
            say(f"[chaos] after the {target} kill, ecom up again failed: {exc}")
    elif wait_until(stack.healthy, plan.heal_wait_s, 1.0):
        return "healed"
    else:
        say(f"[chaos] after the {target} kill the stack is unhealthy for {plan.heal_wait_s} s")
    say("[chaos] ecom down + ecom up")
    out = stack.down()
    if stack.leftovers():
        say("[chaos] ecom down left processes running:\n  " + "\n  ".join(stack.leftovers()))
        say(out)
    stack.up()
    return "down+up"


@contextmanager
def truth_services() -> Iterator[tuple[object, str]]:
    """For the benchmark: a throwaway PostgreSQL (an empty migrated database) and Spark Connect
    server, and a Spark session on it, as the suite's session fixtures provide them."""
    from pyspark.sql import SparkSession

    from ecom_assets.resources.migrations import apply_migrations, discover_migrations
    from ecom_assets.stack.postgres_server import EmbeddedPostgres, find_bin_dir
    from ecom_assets.stack.processes import free_port
    from ecom_assets.stack.spark_connect_server import LocalSparkConnect

    root = Path(tempfile.mkdtemp(prefix="ecom-chaos-truth-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root=root / "pg", port=free_port(), bin_dir=find_bin_dir())
    spark_server = LocalSparkConnect(root=root / "spark", port=free_port())
    server.start()
    process = None
    session = None
    try:
        server.ensure_database("truth")
        url = server.url("truth")
        with psycopg.connect(url, autocommit=True) as conn:
            apply_migrations(conn, discover_migrations())
        process = spark_server.start()
        spark_server.wait_ready(process, timeout_s=180)
        session = SparkSession.builder.remote(spark_server.url).getOrCreate()
        yield session, url
    finally:
        if session is not None:
            session.stop()
        if process is not None:
            stop_group(process.pid)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class ChaosOutcome:
    """What a chaos run left: its rounds, the rows the stack held, what outlived `ecom down`."""

    report: ChaosReport
    got: Contents
    left: list[str]
    """Processes of the home still alive after `ecom down` (must be none)."""


def chaos_against_stack(
    home: Path, backlog: list[Path], plan: ChaosPlan, say: Callable[[str], None] = print
) -> ChaosOutcome:
    """Copy the backlog beside the stack's input/ (so a drop is a rename), run the rounds
    against a real `ecom up` in ``home``, read what it holds, and stop it, whatever happens."""
    staged = home / "data" / "backlog"
    staged.mkdir(parents=True)
    for path in backlog:
        shutil.copy2(path, staged / path.name)
    stack = ChaosStack(home, partitions_of(backlog)[0])
    try:
        report = run_chaos(stack, sorted(staged.iterdir()), plan, say)
        got = read_contents(stack.url, stack.quarantine_dir)
    finally:
        say(stack.down())
        left = stack.leftovers()
    return ChaosOutcome(report, got, left)
