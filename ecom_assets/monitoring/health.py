"""Pipeline health from PostgreSQL: totals, recent rates, last batch age, open alerts, a state.

`ecom health` and the `pipeline_health` asset both call `load_health`, so the terminal and the
UI always agree. The state is decided by the pure `classify`; the rules are in its docstring
and in docs/runbook.md ("Health and alerts"). Text read from the database (alert messages,
quarantine reasons) may quote an error that quoted a URL: it is redacted as it is read, so the
terminal, the JSON and the asset's metadata in the UI all show the redacted form.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

import psycopg

from ecom_assets.monitoring.alerts import Alert
from ecom_assets.redaction import redact, redact_data
from ecom_assets.settings import Settings

HealthState = Literal["HEALTHY", "DEGRADED", "NO_DATA"]


@dataclass(frozen=True)
class HealthFacts:
    """What the database says; the recent window is the last ECOM_ALERT_HEALTH_WINDOW batches."""

    events: int = 0
    dead_letters_open: int = 0
    files_committed: int = 0
    files_quarantined: int = 0
    files_failing: int = 0
    """Files that failed and wait for a retry; quarantined at ECOM_INGEST_MAX_FILE_FAILURES."""
    latest_quarantined: tuple[tuple[str, str], ...] = ()
    """The last QUARANTINED_SHOWN quarantined files (name, reason), newest first."""
    batches_completed: int = 0
    batches_failed: int = 0
    window_batches: int = 0
    success_rate: float | None = None  # completed / all batches of the window
    validity_rate: float | None = None  # valid / read rows of the window's completed batches
    last_batch_at: datetime | None = None
    last_batch_age_s: float | None = None
    open_alerts: tuple[Alert, ...] = ()

    @property
    def batches(self) -> int:
        return self.batches_completed + self.batches_failed


@dataclass(frozen=True)
class HealthReport:
    state: HealthState
    reasons: tuple[str, ...]
    facts: HealthFacts
    checked_at: datetime

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: state, reasons, checked_at, every fact; alerts as the webhook sends them."""
        facts = asdict(self.facts)
        facts["open_alerts"] = [alert.as_dict() for alert in self.facts.open_alerts]
        if self.facts.last_batch_at is not None:
            facts["last_batch_at"] = self.facts.last_batch_at.isoformat()
        return {
            "state": self.state,
            "reasons": list(self.reasons),
            "checked_at": self.checked_at.isoformat(),
            **facts,
        }


def classify(facts: HealthFacts, settings: Settings) -> tuple[HealthState, tuple[str, ...]]:
    """The state and the reasons for a DEGRADED one.

    - DEGRADED: an open ERROR alert (even before the first batch: runs failing before they
      commit anything are not "no data"), or, once batches exist, the last batch finished more
      than ECOM_ALERT_STALE_AFTER_S ago, or a batch of the recent window failed, or the recent
      window's validity is below ECOM_QUALITY_MIN_VALIDITY.
    - NO_DATA: no batch was ever recorded and no ERROR alert is open.
    - HEALTHY: otherwise. Open WARNING alerts are listed but keep the pipeline HEALTHY: they
      are single-batch signals; a lasting problem escalates to ERROR or shows in the rates.
    """
    reasons = [
        f"open ERROR alert [{alert.kind}] {alert.message}"
        for alert in facts.open_alerts
        if alert.level == "ERROR"
    ]
    if not facts.batches:
        return ("DEGRADED" if reasons else "NO_DATA"), tuple(reasons)
    stale_after = settings.monitoring.stale_after_s
    if facts.last_batch_age_s is not None and facts.last_batch_age_s > stale_after:
        reasons.append(f"last batch {facts.last_batch_age_s:.0f} s ago (> {stale_after} s)")
    if facts.success_rate is not None and facts.success_rate < 1:
        reasons.append(
            f"success rate {facts.success_rate:.1%} over the last {facts.window_batches} batches"
        )
    min_validity = settings.quality.min_validity
    if facts.validity_rate is not None and facts.validity_rate < min_validity:
        reasons.append(
            f"validity {facts.validity_rate:.1%} < {min_validity:.1%} over the last "
            f"{facts.window_batches} batches"
        )
    return ("DEGRADED" if reasons else "HEALTHY"), tuple(reasons)


_TOTALS = """
SELECT (SELECT count(*) FROM ecommerce_events),
       (SELECT count(*) FROM dead_letter_events WHERE status = 'open'),
       (SELECT count(*) FROM ingest_files WHERE status = 'committed'),
       (SELECT count(*) FROM ingest_files WHERE status = 'quarantined'),
       (SELECT count(*) FROM ingest_files WHERE status = 'failed' AND failures > 0),
       (SELECT count(*) FROM ingest_batches WHERE status = 'completed'),
       (SELECT count(*) FROM ingest_batches WHERE status = 'failed'),
       (SELECT max(finished_at) FROM ingest_batches)
"""

QUARANTINED_SHOWN = 5

_LATEST_QUARANTINED = """
SELECT file_name, coalesce(error, '') FROM ingest_files WHERE status = 'quarantined'
ORDER BY quarantined_at DESC NULLS LAST, file_name LIMIT %s
"""

_WINDOW = """
WITH recent AS (
    SELECT status, rows_read, rows_valid FROM ingest_batches
    ORDER BY finished_at DESC LIMIT %s
)
SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
       coalesce(sum(rows_read) FILTER (WHERE status = 'completed'), 0),
       coalesce(sum(rows_valid) FILTER (WHERE status = 'completed'), 0)
FROM recent
"""

_OPEN_ALERTS = """
SELECT alert_id, kind, level, message, partition_key, run_id, details, raised_at FROM alerts
WHERE resolved_at IS NULL
ORDER BY level = 'ERROR' DESC, raised_at DESC, alert_id DESC
"""


def load_open_alerts(conn: psycopg.Connection) -> tuple[Alert, ...]:
    """Open alerts, ERRORs first, newest first."""
    return tuple(
        Alert(
            kind=kind,
            level=level,
            message=redact(message),
            partition_key=partition,
            run_id=run_id,
            details=redact_data(details or {}),
            alert_id=alert_id,
            raised_at=raised_at,
        )
        for alert_id, kind, level, message, partition, run_id, details, raised_at in conn.execute(
            _OPEN_ALERTS
        )
    )


def load_facts(conn: psycopg.Connection, settings: Settings, now: datetime) -> HealthFacts:
    """Every number of the report, read in one transaction."""
    with conn.transaction():
        totals = conn.execute(_TOTALS).fetchone()
        window = conn.execute(_WINDOW, (settings.monitoring.health_window,)).fetchone()
        open_alerts = load_open_alerts(conn)
        quarantined_files = conn.execute(_LATEST_QUARANTINED, (QUARANTINED_SHOWN,)).fetchall()
    if totals is None or window is None:  # aggregates always return a row
        raise RuntimeError("health queries returned nothing")
    events, dead_open, committed, quarantined, failing, completed, failed, last_at = totals
    size, window_completed, rows_read, rows_valid = window
    return HealthFacts(
        events=events,
        dead_letters_open=dead_open,
        files_committed=committed,
        files_quarantined=quarantined,
        files_failing=failing,
        latest_quarantined=tuple((name, redact(reason)) for name, reason in quarantined_files),
        batches_completed=completed,
        batches_failed=failed,
        window_batches=size,
        success_rate=window_completed / size if size else None,
        validity_rate=int(rows_valid) / int(rows_read) if rows_read else None,
        last_batch_at=last_at,
        last_batch_age_s=max(0.0, (now - last_at).total_seconds()) if last_at else None,
        open_alerts=open_alerts,
    )


def load_health(conn: psycopg.Connection, settings: Settings, now: datetime) -> HealthReport:
    facts = load_facts(conn, settings, now)
    state, reasons = classify(facts, settings)
    return HealthReport(state=state, reasons=reasons, facts=facts, checked_at=now)


def _rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1%}"


def report_lines(report: HealthReport) -> list[str]:
    """The human view of `ecom health`."""
    facts = report.facts
    last = "never"
    if facts.last_batch_at is not None and facts.last_batch_age_s is not None:
        when = facts.last_batch_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        last = f"{when} ({facts.last_batch_age_s:.0f} s ago)"
    window = f"(last {facts.window_batches} batches)"
    lines = [f"state         {report.state}"]
    lines += [f"  - {reason}" for reason in report.reasons]
    lines += [
        f"events        {facts.events}",
        f"dead letters  {facts.dead_letters_open} open",
        f"files         {facts.files_committed} committed, {facts.files_quarantined} quarantined, "
        f"{facts.files_failing} failing (retried, then quarantined)",
        *(f"  quarantined {name}: {reason[:160]}" for name, reason in facts.latest_quarantined),
        f"batches       {facts.batches_completed} completed, {facts.batches_failed} failed",
        f"success rate  {_rate(facts.success_rate)} {window}",
        f"validity      {_rate(facts.validity_rate)} {window}",
        f"last batch    {last}",
        f"open alerts   {len(facts.open_alerts)}",
    ]
    lines += [f"  {alert.level:<8} {alert.kind:<20} {alert.message}" for alert in facts.open_alerts]
    return [redact(line) for line in lines]


def report_json(report: HealthReport) -> str:
    return json.dumps(redact_data(report.as_dict()), indent=2, default=str)
