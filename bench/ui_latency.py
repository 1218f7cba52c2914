"""Live file-to-UI latency: from a file's drop into data/input/ to the Dagster UI's API showing it.

Starts the whole stack (`ecom up`, generator at its default rate) in a throwaway home on free
ports and, for --seconds (5 minutes by default), polls the webserver's GraphQL endpoint (the API
the UI itself reads) every --interval seconds for the latest materializations of
`ecommerce_events`, recording when each is first seen. Each committed batch's materialization
names its files (`source_files` metadata); a file's UI latency is the first sighting of the
materialization of its run and partition that lists it, less the file's arrival. Its arrival is
the start of `data_quality_metrics.latency_s`: the file's modification time (kept when it moves to
processed/; `measured_at - latency_s` when the file is gone). Files committed in the window
count; the poll goes on for --grace seconds after it so the last commits can show up. The same
run's drop-to-commit latency (`data_quality_metrics.latency_s`, as bench/latency.py) is printed
beside it, as is the poll's own cost (GraphQL round trip), and how long after each batch
`pipeline_health` was next materialized (downstream_sensor's throttle plus a run).

    .venv/bin/python bench/ui_latency.py --seconds 300 [--set ECOM_INGEST_MAX_RUN_S=5]

Ends with one line: RESULT files=... matched=... unmatched=... p50_s=... p95_s=... max_s=...
commit_p50_s=... commit_p95_s=... poll_ms=... target_p95_s=5 ratio=p95/target
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from harness import (  # bench/ is the script's directory
    CLOCK_TICKS,
    Sampler,
    Stack,
    add_settings_option,
    percentile,
    running_stack,
    stack_settings,
)

TARGET_P95_S = 5.0
ASSET = "ecommerce_events"

QUERY = """
query UiLatency($limit: Int!) {
  assetOrError(assetKey: {path: ["ecommerce_events"]}) {
    __typename
    ... on Asset {
      assetMaterializations(limit: $limit) {
        runId
        timestamp
        partition
        metadataEntries {
          label
          __typename
          ... on JsonMetadataEntry { jsonString }
          ... on IntMetadataEntry { intValue intRepr }
        }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class Materialization:
    run_id: str
    partition: str | None
    logged: float
    """When the run logged it (the event's timestamp, epoch seconds)."""
    seen: float
    """When a poll first returned it (epoch seconds, on the poll's reply)."""
    batch: int | None
    files: int | None
    source_files: frozenset[str] | None
    """The batch's file names; None when the materialization carries no `source_files`."""

    @property
    def truncated(self) -> bool:
        """The list was cut: `files` says the batch had more."""
        count = len(self.source_files or ())
        return self.source_files is not None and self.files is not None and self.files > count


@dataclass
class GraphqlPoller(Sampler):
    """Polls the webserver's GraphQL API in a thread for the latest `limit` materializations of
    ecommerce_events; keeps each one's first sighting, the round trips and the failures."""

    url: str
    interval_s: float = 0.25
    limit: int = 20
    seen: dict[tuple, Materialization] = field(default_factory=dict)
    baseline: set[tuple] = field(default_factory=set)
    """Materializations there at the first answered poll: when they appeared is unknown."""
    round_trips_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    full_pages: int = 0
    """Polls (after the first) whose every materialization was new: some may have been missed."""

    def _sample(self) -> None:
        address = urlsplit(self.url)
        body = json.dumps({"query": QUERY, "variables": {"limit": self.limit}})
        headers = {"Content-Type": "application/json"}
        connection: http.client.HTTPConnection | None = None
        first = True
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                if connection is None:  # one kept-alive connection, as a browser's
                    connection = http.client.HTTPConnection(
                        address.hostname, address.port, timeout=10
                    )
                connection.request("POST", "/graphql", body, headers)
                response = connection.getresponse()
                reply = response.read()
                seen = time.time()
                self.round_trips_ms.append((time.monotonic() - began) * 1000)
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
                events = _materializations(json.loads(reply))
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as exc:
                self.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                if connection is not None:
                    connection.close()
                connection = None
            else:
                self._record(events, seen, first)
                first = False
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - began)))
        if connection is not None:
            connection.close()

    def _record(self, events: list[dict], seen: float, first: bool) -> None:
        new = 0
        for event in events:
            metadata = _metadata(event["metadataEntries"])
            key = (event["runId"], event["timestamp"], event["partition"], metadata.get("batch"))
            if key in self.seen:
                continue
            new += 1
            if first:
                self.baseline.add(key)
            names = metadata.get("source_files")
            self.seen[key] = Materialization(
                run_id=event["runId"],
                partition=event["partition"],
                logged=int(event["timestamp"]) / 1000,
                seen=seen,
                batch=metadata.get("batch"),
                files=metadata.get("files"),
                source_files=(
                    frozenset(Path(str(name)).name for name in names)
                    if isinstance(names, list)
                    else None
                ),
            )
        if not first and events and new == len(events) == self.limit:
            self.full_pages += 1


HEALTH_QUERY = """
{ assetOrError(assetKey: {path: ["pipeline_health"]}) {
    __typename ... on Asset { assetMaterializations(limit: 500) { timestamp } } } }
"""


def health_materialized(url: str) -> list[float]:
    """When pipeline_health was materialized (epoch seconds), through the same API."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        body = json.dumps({"query": HEALTH_QUERY})
        connection.request("POST", "/graphql", body, {"Content-Type": "application/json"})
        events = _materializations(json.loads(connection.getresponse().read()))
    finally:
        connection.close()
    return sorted(int(event["timestamp"]) / 1000 for event in events)


def health_lags(batches: list[Materialization], health: list[float]) -> list[float]:
    """For each batch's materialization, the wait until pipeline_health was next materialized
    (the downstream sensor's throttle plus a run); batches no refresh followed are left out."""
    lags = []
    for batch in batches:
        later = [moment for moment in health if moment > batch.logged]
        if later:
            lags.append(later[0] - batch.logged)
    return lags


def _materializations(reply: dict) -> list[dict]:
    if reply.get("errors"):
        raise ValueError(f"GraphQL: {reply['errors'][0].get('message', reply['errors'][0])}")
    asset = reply["data"]["assetOrError"]
    if asset["__typename"] != "Asset":
        return []  # AssetNotFoundError: nothing materialized yet
    return asset["assetMaterializations"]


def _metadata(entries: list[dict]) -> dict[str, object]:
    """The entries this benchmark reads: ints, and JSON values (parsed)."""
    values: dict[str, object] = {}
    for entry in entries:
        if entry["__typename"] == "IntMetadataEntry":
            values[entry["label"]] = int(entry["intRepr"])
        elif entry["__typename"] == "JsonMetadataEntry":
            values[entry["label"]] = json.loads(entry["jsonString"])
    return values


@dataclass(frozen=True)
class FileCommit:
    run_id: str
    partition: str
    name: str
    committed: float
    """`measured_at`, epoch seconds (the commit transaction's start)."""
    latency_s: float
    arrival: float
    from_mtime: bool


def webserver_cpu_s(stack: Stack) -> float:
    """CPU seconds the Dagster webserver's processes have used (what serves the GraphQL API)."""
    total = 0.0
    for pid, part in stack.parts().items():
        try:
            if part != "dagster" or b"dagster_webserver" not in Path(
                f"/proc/{pid}/cmdline"
            ).read_bytes().split(b"\0"):
                continue
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        total += (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
    return total


def committed_files(url: str, until: float, processed_dir: Path) -> list[FileCommit]:
    """Every file committed by ``until`` (epoch seconds), with its arrival."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT run_id, partition_key, source_file, extract(epoch FROM measured_at), "
            "latency_s FROM data_quality_metrics WHERE measured_at <= to_timestamp(%s) "
            "AND latency_s IS NOT NULL ORDER BY measured_at",
            (until,),
        ).fetchall()
    files = []
    for run_id, partition, name, measured, latency in rows:
        committed, latency_s = float(measured), float(latency)
        try:  # os.replace into processed/ keeps it: the very start of latency_s
            arrival, from_mtime = (processed_dir / partition / name).stat().st_mtime, True
        except OSError:
            arrival, from_mtime = committed - latency_s, False
        files.append(FileCommit(run_id, partition, name, committed, latency_s, arrival, from_mtime))
    return files


@dataclass
class Matches:
    ui: dict[FileCommit, Materialization] = field(default_factory=dict)
    unmatched: Counter[str] = field(default_factory=Counter)
    by_run: dict[FileCommit, Materialization] = field(default_factory=dict)
    """Files whose run and partition only had materializations without `source_files`: the
    first of those seen after the commit (a reference while batches do not name files)."""


def match(files: list[FileCommit], poller: GraphqlPoller) -> Matches:
    """Each file's first sighting: the materialization of its run and partition naming it."""
    candidates: dict[tuple[str, str | None], list[Materialization]] = {}
    for key, event in poller.seen.items():
        if key not in poller.baseline:
            candidates.setdefault((event.run_id, event.partition), []).append(event)
    matches = Matches()
    for file in files:
        events = sorted(candidates.get((file.run_id, file.partition), []), key=lambda e: e.seen)
        naming = [e for e in events if e.source_files is not None and file.name in e.source_files]
        if naming:
            matches.ui[file] = naming[0]
            continue
        if any(event.truncated for event in events):
            matches.unmatched["beyond a truncated source_files list"] += 1
        elif any(event.source_files is None for event in events):
            matches.unmatched["materialization without source_files"] += 1
            later = [e for e in events if e.source_files is None and e.seen >= file.committed]
            if later:
                matches.by_run[file] = later[0]
        elif events:
            matches.unmatched["not in its run's source_files"] += 1
        else:
            matches.unmatched["no materialization of its run and partition seen"] += 1
    return matches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="how long to let it run")
    parser.add_argument(
        "--grace", type=float, default=15, help="polling after the window, for its last commits"
    )
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between polls")
    parser.add_argument("--limit", type=int, default=20, help="materializations per poll")
    add_settings_option(parser)
    args = parser.parse_args()
    env = stack_settings(args)

    with running_stack(generator=True, **env) as stack:
        poller = GraphqlPoller(stack.dagster_url, args.interval, args.limit)
        print(f"polling {stack.dagster_url}/graphql every {args.interval:g} s", flush=True)
        cpu_before = webserver_cpu_s(stack)
        with poller:
            started = time.monotonic()
            time.sleep(args.seconds)
            window_end = time.time()
            elapsed = time.monotonic() - started
            time.sleep(args.grace)
        webserver_cpu = (webserver_cpu_s(stack) - cpu_before) / (time.monotonic() - started)
        files = committed_files(stack.url, window_end, stack.input_dir.parent / "processed")
        health = health_materialized(stack.dagster_url)
    batches = [e for key, e in poller.seen.items() if key not in poller.baseline]
    lags = health_lags([e for e in batches if e.logged <= window_end], health)
    return report(files, poller, elapsed, webserver_cpu, lags)


def report(
    files: list[FileCommit],
    poller: GraphqlPoller,
    elapsed: float,
    webserver_cpu: float,
    health_lags_s: list[float],
) -> int:
    if not files:
        print("RESULT files=0")
        return 1
    matches = match(files, poller)
    commit = [file.latency_s for file in files]
    ui = [event.seen - file.arrival for file, event in matches.ui.items()]
    runs = len({file.run_id for file in files})
    events = [e for key, e in poller.seen.items() if key not in poller.baseline]
    named = [e for e in events if e.source_files is not None]
    print(f"files committed: {len(files)} in {elapsed:.0f} s by {runs} runs")
    print(
        f"materializations of {ASSET} seen: {len(events)} ({len(named)} with source_files, "
        f"{sum(e.truncated for e in named)} of them cut short; "
        f"{len(poller.baseline)} already there at the first poll, left out)"
    )
    mtimes = [file for file in files if file.from_mtime]
    if mtimes:
        early = [file.arrival - (file.committed - file.latency_s) for file in mtimes]
        print(
            f"arrival: file modification time for {len(mtimes)} of {len(files)} files; "
            f"measured_at - latency_s would put it {sum(early) / len(early) * 1000:.0f} ms "
            "earlier on average (measured_at is the commit transaction's start)"
        )
    print(f"drop-to-commit latency: {_spread(commit)}  (data_quality_metrics.latency_s)")
    if ui:
        print(f"drop-to-UI latency:     {_spread(ui)}  ({len(ui)} files matched)")
        after_commit = [e.seen - (f.arrival + f.latency_s) for f, e in matches.ui.items()]
        after_log = [e.seen - e.logged for e in set(matches.ui.values())]
        print(f"  commit to UI:         {_spread(after_commit)}")
        print(f"  logged to UI:         {_spread(after_log)}  (the run's event to the poll)")
    else:
        print("drop-to-UI latency: no file matched")
    print(f"unmatched files: {sum(matches.unmatched.values())}")
    for reason, count in matches.unmatched.most_common():
        print(f"  {count:5} {reason}")
    if matches.by_run:
        reference = [e.seen - f.arrival for f, e in matches.by_run.items()]
        print(
            f"  reference, by run and partition only: {_spread(reference)} "
            f"({len(reference)} files; not part of the result)"
        )
    first = min(file.committed for file in files)
    minutes: dict[int, list[FileCommit]] = {}
    for file in files:
        minutes.setdefault(int((file.committed - first) // 60), []).append(file)
    for minute, group in sorted(minutes.items()):
        seen = [matches.ui[f].seen - f.arrival for f in group if f in matches.ui]
        line = (
            f"  minute {minute + 1} after the first commit: {len(group)} files, "
            f"commit p50 {percentile([f.latency_s for f in group], 0.5):.1f} s"
        )
        if seen:
            line += (
                f", UI {len(seen)} matched p50 {percentile(seen, 0.5):.1f} s max {max(seen):.1f} s"
            )
        print(line)
    trips = poller.round_trips_ms
    poll_ms = sum(trips) / len(trips) if trips else math.nan
    print(
        f"poll: {len(trips)} GraphQL round trips, mean {poll_ms:.1f} ms, "
        f"p95 {percentile(trips, 0.95) if trips else math.nan:.1f} ms, "
        f"max {max(trips, default=math.nan):.1f} ms; {sum(poller.errors.values())} failed; "
        f"{poller.full_pages} polls with only new materializations (some may be missed)"
    )
    print(f"  webserver CPU while polling: {webserver_cpu:.0%} of a core (all its requests)")
    for error, count in poller.errors.most_common(3):
        print(f"  {count:5} {error}")
    p50, p95, worst = (
        (percentile(ui, 0.5), percentile(ui, 0.95), max(ui)) if ui else (math.nan,) * 3
    )
    if health_lags_s:
        print(
            f"batch to pipeline_health materialized: {_spread(health_lags_s)} "
            f"({len(health_lags_s)} batches; downstream_sensor, docs/decisions.md 56)"
        )
    print(
        f"RESULT files={len(files)} matched={len(ui)} unmatched={len(files) - len(ui)} "
        f"p50_s={p50:.2f} p95_s={p95:.2f} max_s={worst:.2f} "
        f"commit_p50_s={percentile(commit, 0.5):.2f} commit_p95_s={percentile(commit, 0.95):.2f} "
        f"poll_ms={poll_ms:.1f} target_p95_s={TARGET_P95_S:g} ratio={p95 / TARGET_P95_S:.2f}"
    )
    return 0 if ui else 1


def _spread(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
        f"max {max(values):.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
