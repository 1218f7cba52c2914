"""Read claimed CSV files with Spark into one DataFrame of the latest schema.

Files are grouped by their (normalised) header, since one Spark read needs one column layout;
each group is read with every column as a string and migrated to the latest version, then the
groups are unioned. Each row keeps its source file and its record number within the file
(1-based, header excluded): Spark reads a file's rows in order, so numbering them by a
monotonically increasing id within the file gives the record number, and a dead letter can
always be traced back to its line. A record with more or fewer fields than its header keeps
its text in ``record_raw`` (see schema/parsing.py), for validation to dead-letter it whole.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from ecom_assets.partitions import produced_at
from ecom_assets.schema.detection import HeaderMatch, detect_file
from ecom_assets.schema.file_checks import MAX_FIELDS
from ecom_assets.schema.migration import to_latest
from ecom_assets.schema.parsing import RECORD, raw_name, raw_schema


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

    @classmethod
    def landed(cls, path: Path, header: HeaderMatch, modified_at: datetime) -> ReadableFile:
        """A file as it landed: it arrived when its name says (``partitions.produced_at``)."""
        return cls(path, header, produced_at(path.name, modified_at), landed_at=modified_at)


def readable_in(directory: Path) -> list[ReadableFile]:
    """Every CSV file of a directory by name, as landed now: for samples and benchmarks."""
    files = []
    for path in sorted(directory.glob("*.csv")):
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        files.append(ReadableFile.landed(path, detect_file(path), modified))
    return files


def read_event_files(spark: SparkSession, files: Sequence[ReadableFile]) -> DataFrame:
    """One DataFrame of LATEST's parsed and raw columns, source_file/line, record_raw, arrived_at.

    Rows are matched to their file by name; file_checks admits only names that Spark's
    ``_metadata.file_name`` gives back unchanged.
    """
    groups: dict[tuple[str, ...], list[ReadableFile]] = defaultdict(list)
    for file in files:
        groups[tuple(file.header.columns)].append(file)
    arrivals = spark.createDataFrame(
        [(file.path.name, file.arrived_at) for file in files],
        StructType(
            [StructField("source_file", StringType()), StructField("arrived_at", TimestampType())]
        ),
    )
    frames = [_read_group(spark, group) for group in groups.values()]
    unioned = reduce(DataFrame.unionByName, frames)
    return unioned.join(F.broadcast(arrivals), "source_file").select(*unioned.columns, "arrived_at")


def _read_group(spark: SparkSession, files: list[ReadableFile]) -> DataFrame:
    header = files[0].header
    record = raw_name(RECORD)
    schema = StructType([*raw_schema(header.columns).fields, StructField(record, StringType())])
    raw = (
        spark.read.options(
            header=True,
            multiLine=True,  # quoted newlines stay inside their record
            escape='"',  # RFC 4180, as csv.writer and pandas write: "" is a quote in a field
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=record,  # a record of the wrong width keeps its text
            maxColumns=MAX_FIELDS,  # wider lines are quarantined by file_checks
        )
        .schema(schema)
        .csv([str(file.path) for file in files])
        .withColumn("source_file", F.col("_metadata.file_name"))
        .withColumn("_read_order", F.monotonically_increasing_id())
    )
    numbered = raw.withColumn(
        "source_line",
        F.row_number().over(Window.partitionBy("source_file").orderBy("_read_order")),
    ).drop("_read_order")
    return to_latest(numbered, header.version, keep=["source_file", "source_line", record])
