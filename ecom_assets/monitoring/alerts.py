"""Alerts about ingest batches and runs: pure rules, then one way to store, log and post them.

`assess_batch` judges a completed batch on each kind it says something about. Low validity is
a WARNING, an ERROR once ECOM_ALERT_CONSECUTIVE_BATCHES batches in a row (across runs and
partitions, by commit time; batches without rows do not count) are below the threshold. Latency
and error concentration are WARNINGs.

Open alerts are the problems that are still current:
- a batch that is fine for a kind resolves every open alert of that kind;
- an alert is not stored again while one of its kind, level and partition is open (the storm
  guard, a unique index of `sql/004_open_alerts.sql`); only a newly stored alert is logged and
  posted, so a problem that lasts is one line, not one per batch;
- a new ERROR supersedes (resolves) the open WARNINGs of its kind: the escalation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

import psycopg

from ecom_assets.monitoring.batches import BatchRecord
from ecom_assets.monitoring.logs import LogSink
from ecom_assets.monitoring.webhook import queue_post
from ecom_assets.redaction import redact, redact_data
from ecom_assets.settings import MonitoringSettings, QualitySettings, Settings

AlertKind = Literal[
    "low_validity",
    "high_latency",
    "error_concentration",
    "run_failure",
    "high_warning_rate",
    "stack_restart",  # `ecom up` restarted a part, or gave up on one (stack/healing.py)
]
AlertLevel = Literal["WARNING", "ERROR"]


@dataclass(frozen=True)
class Alert:
    """One alert; alert_id and raised_at are set once the database stored it."""

    kind: AlertKind
    level: AlertLevel
    message: str
    partition_key: str | None = None
    run_id: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    alert_id: int | None = None
    raised_at: datetime | None = None

    def __post_init__(self) -> None:
        # a message or detail may quote an error that quoted a URL; redacted here, every alert
        # is stored, logged, posted and shown redacted
        object.__setattr__(self, "message", redact(self.message))
        object.__setattr__(self, "details", redact_data(dict(self.details)))

    @property
    def line(self) -> str:
        """The log line: `ALERT [low_validity] partition ... validity 91.2% < 95.0% ...`."""
        return f"ALERT [{self.kind}] {self.message}"

    def as_dict(self) -> dict[str, object]:
        """The webhook payload; `text` makes it readable by Slack-style incoming webhooks."""
        return {
            "source": "ecom",
            "alert_id": self.alert_id,
            "kind": self.kind,
            "level": self.level,
            "message": self.message,
            "partition_key": self.partition_key,
            "run_id": self.run_id,
            "details": dict(self.details),
            "raised_at": self.raised_at.isoformat() if self.raised_at else None,
            "text": f"{self.level} {self.line}",
        }


def _pct(share: float) -> str:
    return f"{share:.1%}"


def low_validity_alert(
    batch: BatchRecord,
    previous_validity: Sequence[float],
    quality: QualitySettings,
    monitoring: MonitoringSettings,
) -> Alert | None:
    """WARNING below min_validity; ERROR when the previous (consecutive_batches - 1) batches,
    most recent first in previous_validity, were below too."""
    rate = batch.validity_rate
    if rate is None or rate >= quality.min_validity:
        return None
    streak = 1
    for previous in previous_validity[: monitoring.consecutive_batches - 1]:
        if previous >= quality.min_validity:
            break
        streak += 1
    level: AlertLevel = "ERROR" if streak >= monitoring.consecutive_batches else "WARNING"
    in_a_row = f" ({streak} consecutive batches)" if streak > 1 else ""
    return Alert(
        kind="low_validity",
        level=level,
        message=f"partition {batch.partition_key} validity {_pct(rate)} < "
        f"{_pct(quality.min_validity)}{in_a_row}",
        partition_key=batch.partition_key,
        run_id=batch.run_id,
        details={
            "batch_no": batch.batch_no,
            "validity_rate": rate,
            "min_validity": quality.min_validity,
            "consecutive_batches": streak,
        },
    )


def latency_alert(batch: BatchRecord, monitoring: MonitoringSettings) -> Alert | None:
    """WARNING when the batch's slowest file took longer than latency_s from arrival to commit."""
    latency = batch.max_latency_s
    if latency is None or latency <= monitoring.latency_s:
        return None
    return Alert(
        kind="high_latency",
        level="WARNING",
        message=f"partition {batch.partition_key} batch latency {latency:.1f} s > "
        f"{monitoring.latency_s:.1f} s",
        partition_key=batch.partition_key,
        run_id=batch.run_id,
        details={
            "batch_no": batch.batch_no,
            "max_latency_s": latency,
            "latency_s": monitoring.latency_s,
        },
    )


def error_concentration_alert(batch: BatchRecord, quality: QualitySettings) -> Alert | None:
    """WARNING when one error code hit more than max_error_share of the rows read; the message
    names the worst code, details list every code above the share."""
    if not batch.rows_read:
        return None
    shares = {code: rows / batch.rows_read for code, rows in batch.error_counts.items()}
    above = {code: share for code, share in shares.items() if share > quality.max_error_share}
    if not above:
        return None
    worst = max(sorted(above), key=above.__getitem__)
    return Alert(
        kind="error_concentration",
        level="WARNING",
        message=f"partition {batch.partition_key} error code {worst} on {_pct(above[worst])} "
        f"of rows > {_pct(quality.max_error_share)}",
        partition_key=batch.partition_key,
        run_id=batch.run_id,
        details={
            "batch_no": batch.batch_no,
            "code": worst,
            "share": above[worst],
            "codes_above": dict(sorted(above.items())),
            "max_error_share": quality.max_error_share,
        },
    )


def warning_rate_alert(batch: BatchRecord, quality: QualitySettings) -> Alert | None:
    """WARNING when more than max_warning_share of the rows read were stored with warnings: the
    contract's warn rules fire often, so either the producer or the contract needs a look (a
    new segment, an unloaded catalogue). Details list the rows per warning code."""
    rate = batch.warning_rate
    if rate is None or rate <= quality.max_warning_share:
        return None
    counts = dict(sorted(batch.warning_counts.items(), key=lambda item: (-item[1], item[0])))
    worst = next(iter(counts), None)
    return Alert(
        kind="high_warning_rate",
        level="WARNING",
        message=f"partition {batch.partition_key} {_pct(rate)} of rows stored with warnings > "
        f"{_pct(quality.max_warning_share)} (most: {worst})",
        partition_key=batch.partition_key,
        run_id=batch.run_id,
        details={
            "batch_no": batch.batch_no,
            "warning_rate": rate,
            "warning_counts": counts,
            "max_warning_share": quality.max_warning_share,
        },
    )


def assess_batch(
    batch: BatchRecord, previous_validity: Sequence[float], settings: Settings
) -> dict[AlertKind, Alert | None]:
    """Per kind the batch can be judged on, its alert or None when it is fine for that kind.

    Kinds it says nothing about are absent, so their open alerts stay as they are: validity and
    error share need rows, latency needs a measurement.
    """
    verdicts: dict[AlertKind, Alert | None] = {}
    if batch.rows_read:
        verdicts["low_validity"] = low_validity_alert(
            batch, previous_validity, settings.quality, settings.monitoring
        )
        verdicts["error_concentration"] = error_concentration_alert(batch, settings.quality)
        verdicts["high_warning_rate"] = warning_rate_alert(batch, settings.quality)
    if batch.max_latency_s is not None:
        verdicts["high_latency"] = latency_alert(batch, settings.monitoring)
    return verdicts


_PREVIOUS_VALIDITY = """
WITH this AS (
    SELECT coalesce(max(finished_at), clock_timestamp()) AS finished_at FROM ingest_batches
    WHERE run_id = %(run_id)s AND batch_no = %(batch_no)s
)
SELECT validity_rate FROM ingest_batches, this
WHERE status = 'completed' AND validity_rate IS NOT NULL
  AND (run_id, batch_no) <> (%(run_id)s, %(batch_no)s)
  AND ingest_batches.finished_at <= this.finished_at
ORDER BY ingest_batches.finished_at DESC
LIMIT %(limit)s
"""


def previous_validity(conn: psycopg.Connection, batch: BatchRecord, limit: int) -> list[float]:
    """Validity of the completed batches with rows committed before this one, latest first."""
    rows = conn.execute(
        _PREVIOUS_VALIDITY, {"run_id": batch.run_id, "batch_no": batch.batch_no, "limit": limit}
    ).fetchall()
    return [row[0] for row in rows]


def store_alert(conn: psycopg.Connection, alert: Alert) -> Alert | None:
    """Insert alert unless one of its kind, level and partition is open; on insert resolve the
    open alerts of its kind at a lower level. Returns the stored alert, None for a duplicate."""
    row = conn.execute(
        """
        INSERT INTO alerts (kind, level, message, partition_key, run_id, details)
        VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (kind, level, (coalesce(partition_key, ''))) WHERE resolved_at IS NULL
        DO NOTHING
        RETURNING alert_id, raised_at
        """,
        (
            alert.kind,
            alert.level,
            alert.message,
            alert.partition_key,
            alert.run_id,
            json.dumps(dict(alert.details), sort_keys=True, default=str),
        ),
    ).fetchone()
    if row is None:
        return None
    if alert.level == "ERROR":
        conn.execute(
            "UPDATE alerts SET resolved_at = now() "
            "WHERE kind = %s AND level = 'WARNING' AND resolved_at IS NULL",
            (alert.kind,),
        )
    return replace(alert, alert_id=row[0], raised_at=row[1])


def resolve_alerts(conn: psycopg.Connection, kind: AlertKind) -> int:
    """Close every open alert of kind; returns how many were open."""
    return conn.execute(
        "UPDATE alerts SET resolved_at = now() WHERE kind = %s AND resolved_at IS NULL", (kind,)
    ).rowcount


def publish(alert: Alert, monitoring: MonitoringSettings, log: LogSink) -> None:
    """Log a stored alert at its level and queue its webhook post when one is configured: the
    post is sent by the webhook's sender thread, so this never waits for the endpoint."""
    (log.error if alert.level == "ERROR" else log.warning)(alert.line)
    if monitoring.webhook_url:
        queue_post(monitoring.webhook_url, alert.as_dict(), log)


def log_resolved(log: LogSink, kind: AlertKind, count: int, by: str) -> None:
    if count:
        log.info(f"ALERT RESOLVED [{kind}] {count} open alert(s), {by}")


def raise_batch_alerts(
    conn: psycopg.Connection, batch: BatchRecord, settings: Settings, log: LogSink
) -> list[Alert]:
    """Judge a completed batch whose row is committed; store, resolve, log and post alerts.

    The database work is one transaction; logging and the queued webhook post follow its commit,
    so a slow endpoint holds no lock and delays no batch. Database errors propagate (the caller
    decides whether monitoring may fail its run); webhook errors never do. Returns the alerts
    stored now.
    """
    if batch.status != "completed":
        return []
    raised: list[Alert] = []
    resolved: dict[AlertKind, int] = {}
    with conn.transaction():
        history = previous_validity(conn, batch, settings.monitoring.consecutive_batches - 1)
        for kind, alert in assess_batch(batch, history, settings).items():
            if alert is None:
                resolved[kind] = resolve_alerts(conn, kind)
            elif (stored := store_alert(conn, alert)) is not None:
                raised.append(stored)
    for kind, count in resolved.items():
        log_resolved(log, kind, count, f"batch {batch.batch_no} of run {batch.run_id} is fine")
    for alert in raised:
        publish(alert, settings.monitoring, log)
    return raised
