"""The record of one ingest batch (`ingest_batches`), written with the batch's own commit.

A completed batch's row is written inside the transaction that commits its rows, so the record
and the data can never disagree; a failed batch's row is written afterwards when PostgreSQL can
still be reached (when it cannot, the ingest log file still has the FAILED line).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import psycopg

QualityStatus = Literal["EXCELLENT", "ACCEPTABLE", "POOR"]
EXCELLENT_VALIDITY = 0.99


def quality_status(validity_rate: float | None, min_validity: float) -> QualityStatus | None:
    """EXCELLENT at 99 % valid rows or more, ACCEPTABLE down to the validity threshold, else POOR;
    None for a batch without rows."""
    if validity_rate is None:
        return None
    if validity_rate >= EXCELLENT_VALIDITY:
        return "EXCELLENT"
    return "ACCEPTABLE" if validity_rate >= min_validity else "POOR"


@dataclass(frozen=True)
class BatchRecord:
    """One batch of one run: what it read, how good it was, how late it committed."""

    run_id: str
    batch_no: int
    partition_key: str
    started_at: datetime
    status: Literal["completed", "failed"] = "completed"
    files: int = 0
    rows_read: int = 0
    rows_valid: int = 0
    rows_invalid: int = 0
    max_latency_s: float | None = None
    error_counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    rows_warned: int = 0
    """Valid rows stored with warnings (the contract's warn-severity rules)."""
    warning_counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def validity_rate(self) -> float | None:
        return self.rows_valid / self.rows_read if self.rows_read else None

    @property
    def warning_rate(self) -> float | None:
        return self.rows_warned / self.rows_read if self.rows_read else None


def record_batch(conn: psycopg.Connection, batch: BatchRecord, min_validity: float) -> None:
    """Insert the batch's row; a repeated (run_id, batch_no) keeps the first record."""
    conn.execute(
        """
        INSERT INTO ingest_batches (run_id, batch_no, partition_key, status, files, rows_read,
            rows_valid, rows_invalid, validity_rate, quality_status, max_latency_s, error_counts,
            error, started_at, rows_warned, warning_counts, finished_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                clock_timestamp())
        ON CONFLICT (run_id, batch_no) DO NOTHING
        """,
        (
            batch.run_id,
            batch.batch_no,
            batch.partition_key,
            batch.status,
            batch.files,
            batch.rows_read,
            batch.rows_valid,
            batch.rows_invalid,
            batch.validity_rate,
            quality_status(batch.validity_rate, min_validity),
            batch.max_latency_s,
            json.dumps(dict(batch.error_counts), sort_keys=True),
            batch.error,
            batch.started_at,
            batch.rows_warned,
            json.dumps(dict(batch.warning_counts), sort_keys=True),
        ),
    )
