"""What the whole-stack benchmarks share: a throwaway `ecom up`, its database, its memory.

The stack runs exactly as `make run` starts it (embedded PostgreSQL, local Spark Connect, Dagster
webserver + daemon with the sensor, optionally the generator), in a temporary home on free ports.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ecom_assets.settings import PathSettings, load_settings
from ecom_assets.stack.local import isolated_environment
from ecom_assets.stack.processes import group_members
from ecom_assets.stack.supervisor import read_state

ECOM = [sys.executable, "-m", "ecom_assets.cli"]
PAGE_BYTES = 4096


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    url: str
    input_dir: Path
    log_dir: Path

    def pids(self) -> list[int]:
        """Every live process of the stack: the supervisor and each part's process group."""
        state = read_state(load_settings(paths=PathSettings(home=self.home)))
        if state is None:
            return []
        pids = {state.supervisor_pid}
        for pgid in state.groups.values():
            pids.update(group_members(pgid))
        return sorted(pids)

    def rss_bytes(self) -> int:
        """Resident memory of the whole stack now (RSS summed over its processes)."""
        return sum(self.rss_by_process().values())

    def rss_by_process(self) -> dict[str, int]:
        """Resident bytes of each live process of the stack, keyed by pid and command."""
        sizes = {}
        for pid in self.pids():
            try:
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            sizes[f"{pid} {_command(argv)}"] = pages * PAGE_BYTES
        return sizes


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


@dataclass
class PeakRss:
    """Samples a stack's RSS in a thread until stopped; keeps the peak."""

    stack: Stack
    interval_s: float = 0.5
    peak: int = 0
    at_peak: dict[str, int] = field(default_factory=dict)
    """Each process's RSS in the sample with the largest total."""
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            sizes = self.stack.rss_by_process()
            if sum(sizes.values()) > self.peak:
                self.peak, self.at_peak = sum(sizes.values()), sizes
            self._stop.wait(self.interval_s)

    def breakdown(self, top: int = 8) -> str:
        """The largest processes at the peak, one per line."""
        largest = sorted(self.at_peak.items(), key=lambda item: item[1], reverse=True)[:top]
        return "\n".join(f"  {size / 2**20:7,.0f} MB  {name}" for name, size in largest)


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
