"""What the whole-stack benchmarks share: a throwaway `ecom up`, its database, its memory.

The stack runs exactly as `make run` starts it (embedded PostgreSQL, local Spark Connect, Dagster
webserver + daemon with the sensor, optionally the generator), in a temporary home on free ports.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psycopg

from ecom_assets.settings import PathSettings, load_settings
from ecom_assets.stack.local import embedded_postgres, isolated_environment
from ecom_assets.stack.processes import group_members
from ecom_assets.stack.supervisor import read_state

ECOM = [sys.executable, "-m", "ecom_assets.cli"]
PAGE_BYTES = 4096
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    url: str
    input_dir: Path
    log_dir: Path

    @property
    def dagster_url(self) -> str:
        """The Dagster webserver's base URL (its GraphQL API is at ``/graphql``)."""
        host = self.env.get("ECOM_DAGSTER_HOST", "127.0.0.1")
        if host in ("0.0.0.0", "::"):  # noqa: S104 - bound to every address: reach it locally
            host = "127.0.0.1"
        return f"http://{host}:{self.env['ECOM_DAGSTER_PORT']}"

    def parts(self) -> dict[int, str]:
        """Every live process of the stack, by pid, and the part it belongs to: the supervisor,
        each part's process group, the embedded PostgreSQL server (pg_ctl starts it in a session
        of its own), and all their descendants (PostgreSQL's backends and Spark's Python workers
        start groups of their own; Dagster's run processes are the daemon's children)."""
        settings = load_settings(paths=PathSettings(home=self.home))
        state = read_state(settings)
        if state is None:
            return {}
        roots = {state.supervisor_pid: "supervisor"}
        for part, pgid in state.groups.items():
            roots.update(dict.fromkeys(group_members(pgid), part))
        postmaster = embedded_postgres(settings).data_dir / "postmaster.pid"
        if state.embedded_postgres and postmaster.exists():
            roots[int(postmaster.read_text().split()[0])] = "postgresql"
        return _with_descendants(roots)

    def usage_by_process(self) -> dict[str, ProcessUsage]:
        """Resident bytes, CPU seconds and part of each live process of the stack, keyed by pid,
        start time and program (a backend's title changes with its state; the key must not)."""
        usages = {}
        for pid, part in self.parts().items():
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                # after the parenthesised command that may hold spaces: utime, stime, starttime
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                pss_kb = next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
            except (OSError, IndexError, ValueError, StopIteration):
                continue  # gone meanwhile
            cpu_s = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
            program = _program(_command(argv))
            usages[f"{pid} {stat[19]} {program}"] = ProcessUsage(
                pages * PAGE_BYTES, pss_kb * 1024, cpu_s, f"{part}: {program}"
            )
        return usages


@dataclass(frozen=True)
class ProcessUsage:
    rss: int
    pss: int
    """Proportional set size: each shared page divided among the processes sharing it, so the
    sum over processes counts PostgreSQL's shared buffers and forked workers' pages once."""
    cpu_s: float
    part: str
    """The stack's part and the program, such as "spark: java" or "spark: python" (its
    workers)."""


def _with_descendants(roots: dict[int, str]) -> dict[int, str]:
    """The given processes and every live descendant of theirs, each with its root's part."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: dict[int, str] = {}
    pending = list(roots.items())
    while pending:
        pid, part = pending.pop()
        if pid not in found:
            found[pid] = part
            pending.extend((child, part) for child in children.get(pid, []))
    return found


def _program(command: str) -> str:
    """What a process is: its program, and for PostgreSQL's processes their role from the
    title ("postgres: checkpointer", "postgres: <user> <database> <client> <state>"): the
    background process, or a client connection by database (ecom, or Dagster's storage)."""
    program = command.split(" ")[0].rstrip(":")
    if program != "postgres" or not command.startswith("postgres:"):
        return program
    words = command.split()[1:]
    if len(words) >= 3 and "(" in words[2]:
        return f"postgres client of {words[1]}"
    return "postgres " + " ".join(words[:2])


def _command(argv: list[bytes]) -> str:
    """A short name for a process: its program and the first arguments, which say what it runs."""
    words = [Path(word.decode(errors="replace")).name for word in argv if word][:4]
    return " ".join(words)[:60]


@contextmanager
def running_stack(*, generator: bool, **env: str) -> Iterator[Stack]:
    """`ecom up` in a temporary home; yields once every part is healthy, stops it after."""
    home = Path(tempfile.mkdtemp(prefix="ecom-bench-"))
    home.chmod(0o755)  # PostgreSQL may run as an unprivileged user and must reach its data
    environment = isolated_environment(home) | env
    environment["ECOM_GENERATOR_ENABLED"] = "true" if generator else "false"
    process = subprocess.Popen([*ECOM, "up"], env=environment, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print(line.rstrip(), flush=True)
            if "all parts healthy" in line:
                break
        else:
            raise RuntimeError("the stack did not start")
        # keep reading its output, or the supervisor blocks on a full pipe
        threading.Thread(target=process.stdout.read, daemon=True).start()
        url = subprocess.run(
            [*ECOM, "db-url"], env=environment, capture_output=True, text=True, check=True
        ).stdout.strip()
        data = home / "data"
        yield Stack(home, environment, url, data / "input", data / "logs")
    finally:
        subprocess.run([*ECOM, "down"], env=environment, capture_output=True, timeout=120)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(home, ignore_errors=True)


class Sampler:
    """A context that runs ``_sample`` in a thread until it exits; ``_sample`` loops until
    ``_stop`` is set."""

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        raise NotImplementedError


@dataclass
class StackUsage(Sampler):
    """Samples a stack's processes in a thread until stopped: the peaks of their summed RSS and
    PSS, and the CPU each used meanwhile (processes sampled at least once; one that lives less than
    a sampling interval is missed)."""

    stack: Stack
    interval_s: float = 0.5
    peak: int = 0
    at_peak: dict[str, int] = field(default_factory=dict)
    """Each process's RSS in the sample with the largest total."""
    peak_pss: int = 0
    cpu_first: dict[str, float] = field(default_factory=dict)
    cpu_last: dict[str, ProcessUsage] = field(default_factory=dict)

    def _sample(self) -> None:
        first = True
        while True:  # a last sample once stopped: the CPU of the final interval counts too
            stopping = self._stop.is_set()
            usages = self.stack.usage_by_process()
            sizes = {name: usage.rss for name, usage in usages.items()}
            if sum(sizes.values()) > self.peak:
                self.peak, self.at_peak = sum(sizes.values()), sizes
            self.peak_pss = max(self.peak_pss, sum(usage.pss for usage in usages.values()))
            for name, usage in usages.items():
                # a process already running at the start counts from there; a new one from 0
                self.cpu_first.setdefault(name, usage.cpu_s if first else 0.0)
                self.cpu_last[name] = usage
            first = False
            if stopping:
                return
            self._stop.wait(self.interval_s)

    def breakdown(self, top: int = 8) -> str:
        """The largest processes at the peak, one per line."""
        largest = sorted(self.at_peak.items(), key=lambda item: item[1], reverse=True)[:top]
        return "\n".join(f"  {size / 2**20:7,.0f} MB  {name}" for name, size in largest)

    def cpu_by_part(self) -> dict[str, float]:
        """CPU seconds used while sampling, per part of the stack and program."""
        parts: dict[str, float] = {}
        for name, last in self.cpu_last.items():
            parts[last.part] = parts.get(last.part, 0.0) + last.cpu_s - self.cpu_first[name]
        return parts


CPU_GROUPS = ("postgresql", "spark jvm", "spark python workers", "dagster and runs")


def cpu_group(part: str) -> str:
    """Which of CPU_GROUPS a part ("spark: java", "postgresql: postgres client of ecom", ...)
    belongs to: where a row's CPU goes, as #23 asks for it."""
    if part.startswith("postgresql:"):
        return "postgresql"
    if part == "spark: java":
        return "spark jvm"
    if part.startswith("spark:"):
        return "spark python workers"
    return "dagster and runs"


def cpu_by_group(cpu_by_part: dict[str, float]) -> dict[str, float]:
    groups = dict.fromkeys(CPU_GROUPS, 0.0)
    for part, cpu_s in cpu_by_part.items():
        groups[cpu_group(part)] += cpu_s
    return groups


def cpu_between(
    before: dict[str, ProcessUsage], after: dict[str, ProcessUsage]
) -> dict[str, float]:
    """CPU seconds per part between two ``Stack.usage_by_process`` snapshots; a process that
    started in between counts from 0."""
    parts: dict[str, float] = {}
    for name, last in after.items():
        first = before[name].cpu_s if name in before else 0.0
        parts[last.part] = parts.get(last.part, 0.0) + last.cpu_s - first
    return parts


@dataclass
class WaitSampler(Sampler):
    """Samples what the database's active backends are doing, every ``interval_s`` in a thread:
    their wait event ("CPU" when none: running or runnable) and the statement's first words.
    The shares show whether the commits compute or wait (locks, I/O, WAL)."""

    url: str
    interval_s: float = 0.1
    samples: Counter[tuple[str, str]] = field(default_factory=Counter)

    def _sample(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.interval_s):
                self.samples.update(
                    conn.execute(
                        "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), "
                        "left(regexp_replace(query, '\\s+', ' ', 'g'), 32) "
                        "FROM pg_stat_activity WHERE datname = current_database() "
                        "AND state = 'active' AND pid <> pg_backend_pid()"
                    ).fetchall()
                )

    def top(self, count: int = 12) -> list[str]:
        total = sum(self.samples.values()) or 1
        return [
            f"{seen / total:6.1%}  {wait:<28} {query}"
            for (wait, query), seen in self.samples.most_common(count)
        ]


def committed_files(url: str) -> int:
    query = "SELECT count(*) FROM ingest_files WHERE status = 'committed'"
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def wait_committed(url: str, files: int, timeout_s: float) -> float:
    """Seconds until `files` input files are committed; raises when it takes longer."""
    started = time.monotonic()
    while committed_files(url) < files:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"only {committed_files(url)} of {files} files in {timeout_s} s")
        time.sleep(0.5)
    return time.monotonic() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def add_settings_option(parser: argparse.ArgumentParser) -> None:
    """`--set ECOM_NAME=VALUE` (repeatable): the benchmarked stack's environment is isolated."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ECOM_NAME=VALUE",
        help="a setting of the benchmarked stack (its environment is otherwise isolated)",
    )


def stack_settings(args: argparse.Namespace) -> dict[str, str]:
    return dict(item.split("=", 1) for item in args.set)
