"""Claimed CSV files: Spark's tasks read them, Arrow turns them into rows of the latest schema.

Spark distributes the files' names (``file_names``); each task's Python worker reads its files
whole, so it sees all of a file and in order, and parses them with Arrow (``latest_events``).
Files are grouped by their (normalised) header, each group read with every column as a string
and migrated to the latest version, so the rules then run over one table of many files. Each
row keeps its source file and its record number (schema/csv_records.py), so a dead letter can
always be traced back to its record. Why not Spark's CSV reader and SQL expressions:
docs/decisions.md 37; why not Spark's ``binaryFile`` reader: 40.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from ecom_assets.partitions import produced_at
from ecom_assets.safe_open import read_regular
from ecom_assets.schema.csv_records import FILE, SOURCE_LINE, read_records
from ecom_assets.schema.detection import HeaderMatch, detect_file
from ecom_assets.schema.extras import EXTRAS, extras_column
from ecom_assets.schema.migration import to_latest
from ecom_assets.schema.parsing import RECORD, raw_name

KEEP = ("source_file", SOURCE_LINE, raw_name(RECORD), "arrived_at", EXTRAS)
"""What each row carries besides the schema's columns, through migration."""


@dataclass(frozen=True)
class ReadableFile:
    """A claimed, ingestible file.

    ``arrived_at`` is when the file arrived as its producer stamped it (the name's timestamp,
    else the modification time): the late-arrival flag compares event times with it, so a
    backlog ingested hours later does not turn every row late.
    """

    path: Path
    header: HeaderMatch
    arrived_at: datetime
    landed_at: datetime
    """When the file appeared in the input directory (its modification time): latency's start."""
    sha256: str | None = None
    """The content's hash when the run scanned it: a task reading other bytes refuses them."""

    @classmethod
    def landed(
        cls, path: Path, header: HeaderMatch, modified_at: datetime, sha256: str | None = None
    ) -> ReadableFile:
        """A file as it landed: it arrived when its name says (``partitions.produced_at``)."""
        arrived = produced_at(path.name, modified_at)
        return cls(path, header, arrived, landed_at=modified_at, sha256=sha256)

    def read(self) -> bytes:
        """The file's bytes, as scanned: a file rewritten since (a producer still writing, a
        copy over it) would commit other rows than the ledger's fingerprint describes. A name
        swapped for a link or a FIFO since the scan is not read (NotRegularFileError)."""
        content = read_regular(self.path)
        if self.sha256 is not None and hashlib.sha256(content).hexdigest() != self.sha256:
            raise FileChangedError(
                f"{self.path.name} changed after its scan (now {len(content)} bytes, another "
                "hash): was it still being written? producers must write to a temporary name "
                "and rename"
            )
        return content


class FileChangedError(RuntimeError):
    """A file's bytes are not those the run scanned and claimed."""


def readable_in(directory: Path) -> list[ReadableFile]:
    """Every CSV file of a directory by name, as landed now: for samples and benchmarks."""
    files = []
    for path in sorted(directory.glob("*.csv")):
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        files.append(ReadableFile.landed(path, detect_file(path), modified))
    return files


def file_names(spark: SparkSession, files: Sequence[ReadableFile]) -> DataFrame:
    """One row per file, ``source_file`` (its name): the tasks read the bytes themselves
    (``FileRows.routed``). Spark's ``binaryFile`` source cost its JVM 1.7 ms per file in a
    backlog of small files (docs/decisions.md 40)."""
    return spark.createDataFrame([(file.path.name,) for file in files], "source_file string")


def latest_events(contents: Iterable[tuple[ReadableFile, bytes]]) -> pa.Table:
    """Files' bytes as one table of LATEST's parsed and raw columns and ``KEEP``.

    Files sharing a header are read and migrated together: a kernel's cost per call, not per
    row, dominates small files, so 1,000 files of 100 rows cost about what one of 100,000 does.
    """
    groups: dict[tuple[str, ...], list[tuple[ReadableFile, bytes]]] = defaultdict(list)
    for file, content in contents:
        groups[tuple(file.header.columns)].append((file, content))
    if not groups:
        raise ValueError("no files to read")
    return pa.concat_tables(_group_events(group) for group in groups.values())


def _group_events(group: list[tuple[ReadableFile, bytes]]) -> pa.Table:
    """Files of one header read and migrated together; each row tagged with its file."""
    files = [file for file, _ in group]
    header = files[0].header
    records = read_records([content for _, content in group], header.columns)
    index = records.column(FILE)
    names = pa.array([file.path.name for file in files], pa.string())
    arrivals = pa.array([file.arrived_at for file in files], pa.timestamp("us", tz="UTC"))
    tagged = (
        records.append_column("source_file", names.take(index))
        .append_column("arrived_at", arrivals.take(index))
        .append_column(EXTRAS, extras_column(records, header.columns, header.extra))
    )
    return to_latest(tagged, header.version, keep=KEEP)


def read_event_files(files: Sequence[ReadableFile]) -> pa.Table:
    """``latest_events`` of files read from disk here: for tests, samples and benchmarks."""
    return latest_events((file, file.read()) for file in files)
