"""Arrow compute helpers shared by the transforms: whole-column kernels, NULL-safe."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from ecom_assets.schema.parsing import Column

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_micros(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime; naive ones are refused (whose local time?)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware (UTC), got naive {moment!r}")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def is_in(column: Column, values: Iterable[str]) -> Column:
    """``column IN values`` that is False, never NULL, for a NULL value (safe under invert)."""
    return pc.is_in(column, value_set=pa.array(sorted(values), type=column.type))
