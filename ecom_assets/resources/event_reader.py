"""Read claimed CSV files with Spark into one DataFrame of the latest schema.

Files are grouped by their (normalised) header, since one Spark read needs one column layout;
each group is read with every column as a string and migrated to the latest version, then the
groups are unioned. Each row keeps its source file and its record number within the file
(1-based, header excluded): Spark reads a file's rows in order, so numbering them by a
monotonically increasing id within the file gives the record number, and a dead letter can
always be traced back to its line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from ecom_assets.schema.detection import HeaderMatch
from ecom_assets.schema.migration import to_latest
from ecom_assets.schema.parsing import raw_schema

KEEP_COLUMNS = ("source_file", "source_line", "arrived_at")


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


def read_event_files(spark: SparkSession, files: Sequence[ReadableFile]) -> DataFrame:
    """One DataFrame of LATEST's parsed and raw columns plus source_file/line and arrived_at."""
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
    raw = (
        spark.read.option("header", True)
        .option("multiLine", True)  # quoted newlines stay inside their record
        .option("mode", "PERMISSIVE")
        .schema(raw_schema(header.columns))
        .csv([str(file.path) for file in files])
        .withColumn("source_file", F.col("_metadata.file_name"))
        .withColumn("_read_order", F.monotonically_increasing_id())
    )
    numbered = raw.withColumn(
        "source_line",
        F.row_number().over(Window.partitionBy("source_file").orderBy("_read_order")),
    ).drop("_read_order")
    return to_latest(numbered, header.version, keep=["source_file", "source_line"])
