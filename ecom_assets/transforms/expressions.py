"""Spark column expressions shared by the transforms (built-in functions only, no UDFs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecom_assets.schema.contract import CATEGORIES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_micros(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime; naive ones are refused (whose local time?)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware (UTC), got naive {moment!r}")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def with_run_values(df: DataFrame, values: Mapping[str, int]) -> DataFrame:
    """``df`` plus one BIGINT column per value, joined from a one-row relation, not literals.

    Spark writes a BIGINT or TIMESTAMP literal into the code it generates, so a value that
    changes with every batch (its clock) made new classes for Janino and the JIT to compile per
    batch: 3 classes and about a third of the JVM's JIT time (bench notes in
    docs/performance.md). A relation's values are data: the generated code, and the machine
    code the JIT made of it, serve every batch of the same shape.
    """
    names = list(values)
    row = df.sparkSession.createDataFrame(
        [tuple(values[name] for name in names)], ", ".join(f"{name} bigint" for name in names)
    )
    return df.crossJoin(F.broadcast(row))


def is_in(column: Column, values: Iterable[str]) -> Column:
    """``column IN values`` that is False, never NULL, for a NULL column (safe under NOT)."""
    return F.coalesce(column.isin(*sorted(values)), F.lit(False))


def product_category(product_id: Column) -> Column:
    """Name of the category whose id range holds ``product_id``; NULL when none does.

    A CASE over contract.CATEGORIES, the Spark twin of ``contract.category_of_product``.
    """
    first, *rest = CATEGORIES
    case = F.when(product_id.between(first.first_product_id, first.last_product_id), first.name)
    for category in rest:
        owns = product_id.between(category.first_product_id, category.last_product_id)
        case = case.when(owns, category.name)
    return case
