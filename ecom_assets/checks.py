"""Asset checks of an ingested partition: validity, error concentration, warnings, conservation,
uniqueness.

The numbers come from PostgreSQL, not from the run's memory, so a check also catches what an
earlier run or a manual change did to the files. Each file counts with its first committed
ingestion: a replay of a file inserts nothing new and must not double its rows.

An ingest run evaluates them for each batch it commits, over that batch's files, as it commits
(docs/decisions.md 53): a partition's bad hour is reported once, by the run that committed it, not
again by every later run of the hour. Executed from the UI, they judge the whole partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import psycopg

from ecom_assets.partitions import ingest_partitions
from ecom_assets.settings import QualitySettings

EVENTS = dg.AssetKey("ecommerce_events")
METRICS = dg.AssetKey("data_quality_metrics")

CHECK_SPECS = [
    dg.AssetCheckSpec(
        "validity_rate",
        asset=METRICS,
        blocking=True,
        partitions_def=ingest_partitions,
        description="Share of valid rows: WARN below ECOM_QUALITY_MIN_VALIDITY, ERROR (blocking "
        "downstream) below ECOM_QUALITY_BLOCKING_VALIDITY.",
    ),
    dg.AssetCheckSpec(
        "error_concentration",
        asset=METRICS,
        partitions_def=ingest_partitions,
        description="No single error code on more than ECOM_QUALITY_MAX_ERROR_SHARE of rows.",
    ),
    dg.AssetCheckSpec(
        "quality_warnings",
        asset=EVENTS,
        partitions_def=ingest_partitions,
        description="Share of stored rows carrying warnings (the contract's warn rules): WARN "
        "above ECOM_QUALITY_MAX_WARNING_SHARE; the rows per warning code in its metadata.",
    ),
    dg.AssetCheckSpec(
        "rows_conserved",
        asset=METRICS,
        blocking=True,
        partitions_def=ingest_partitions,
        description="Rows read = inserted + duplicates skipped + dead-lettered, and the tables "
        "hold exactly what the metrics say.",
    ),
    dg.AssetCheckSpec(
        "unique_event_ids",
        asset=EVENTS,
        partitions_def=ingest_partitions,
        description="No event_id stored twice (and the primary key that guarantees it exists).",
    ),
]


@dataclass(frozen=True)
class PartitionQuality:
    """A partition's totals over the first committed ingestion of each of its files."""

    files: int = 0
    rows_read: int = 0
    rows_valid: int = 0
    rows_invalid: int = 0
    rows_inserted: int = 0
    rows_duplicate: int = 0
    error_counts: dict[str, int] = field(default_factory=dict)
    rows_warned: int = 0
    warning_counts: dict[str, int] = field(default_factory=dict)
    events_stored: int = 0
    dead_letters_stored: int = 0
    duplicate_event_ids: int = 0
    primary_key_present: bool = True

    @property
    def validity_rate(self) -> float | None:
        return self.rows_valid / self.rows_read if self.rows_read else None


_QUALITY = """
WITH first AS (
    SELECT DISTINCT ON (source_file) *
    FROM data_quality_metrics
    WHERE partition_key = %(partition)s
      AND (%(files)s::text[] IS NULL OR source_file = ANY(%(files)s::text[]))
    ORDER BY source_file, measured_at, metric_id
), codes AS (
    SELECT code, sum(n::bigint) AS n FROM first, jsonb_each_text(error_counts) AS e(code, n)
    GROUP BY code
), warnings AS (
    SELECT code, sum(n::bigint) AS n FROM first, jsonb_each_text(warning_counts) AS w(code, n)
    GROUP BY code
), pk AS (
    SELECT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'ecommerce_events'::regclass AND contype = 'p') AS present
)
SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_valid), 0),
       coalesce(sum(rows_invalid), 0), coalesce(sum(rows_inserted), 0),
       coalesce(sum(rows_duplicate), 0),
       (SELECT coalesce(jsonb_object_agg(code, n), '{}'::jsonb) FROM codes),
       (SELECT count(*) FROM ecommerce_events WHERE source_file IN (SELECT source_file FROM first)),
       (SELECT count(*) FROM dead_letter_events
         WHERE source_file IN (SELECT source_file FROM first)),
       CASE WHEN (SELECT present FROM pk) THEN 0  -- the key makes a repeat impossible
            ELSE (SELECT count(*) FROM (SELECT event_id FROM ecommerce_events
                  WHERE source_file IN (SELECT source_file FROM first)
                  GROUP BY event_id HAVING count(*) > 1) AS d) END,
       (SELECT present FROM pk),
       coalesce(sum(rows_warned), 0),
       (SELECT coalesce(jsonb_object_agg(code, n), '{}'::jsonb) FROM warnings)
FROM first
"""


def load_partition_quality(
    conn: psycopg.Connection, partition: str, files: list[str] | None = None
) -> PartitionQuality:
    """The partition's quality, or that of its ``files`` only (a batch's)."""
    row = conn.execute(_QUALITY, {"partition": partition, "files": files}).fetchone()
    if row is None:  # an aggregate always returns a row
        raise RuntimeError("partition quality query returned nothing")
    return PartitionQuality(
        files=row[0],
        rows_read=int(row[1]),
        rows_valid=int(row[2]),
        rows_invalid=int(row[3]),
        rows_inserted=int(row[4]),
        rows_duplicate=int(row[5]),
        error_counts={code: int(n) for code, n in row[6].items()},
        events_stored=row[7],
        dead_letters_stored=row[8],
        duplicate_event_ids=row[9],
        primary_key_present=row[10],
        rows_warned=int(row[11]),
        warning_counts={code: int(n) for code, n in row[12].items()},
    )


def validity_check(quality: PartitionQuality, rules: QualitySettings) -> dg.AssetCheckResult:
    rate = quality.validity_rate
    metadata = {"validity_rate": rate if rate is not None else 1.0, "rows_read": quality.rows_read}
    if rate is None or rate >= rules.min_validity:
        return dg.AssetCheckResult(
            check_name="validity_rate", asset_key=METRICS, passed=True, metadata=metadata
        )
    severity = (
        dg.AssetCheckSeverity.ERROR
        if rate < rules.blocking_validity
        else dg.AssetCheckSeverity.WARN
    )
    return dg.AssetCheckResult(
        check_name="validity_rate",
        asset_key=METRICS,
        passed=False,
        severity=severity,
        description=f"validity {rate:.2%} below {rules.min_validity:.0%}",
        metadata=metadata,
    )


def error_concentration_check(
    quality: PartitionQuality, rules: QualitySettings
) -> dg.AssetCheckResult:
    shares = {
        code: count / quality.rows_read for code, count in quality.error_counts.items() if count
    }
    worst = max(shares.items(), key=lambda item: item[1], default=(None, 0.0))
    too_high = sorted(code for code, share in shares.items() if share > rules.max_error_share)
    return dg.AssetCheckResult(
        check_name="error_concentration",
        asset_key=METRICS,
        passed=not too_high,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"above {rules.max_error_share:.0%} of rows: {', '.join(too_high)}"
        if too_high
        else None,
        metadata={"worst_code": str(worst[0]), "worst_share": worst[1]},
    )


def warnings_check(quality: PartitionQuality, rules: QualitySettings) -> dg.AssetCheckResult:
    """Warnings never block: the rows are stored. The check says how many rows carry them and
    which rules fired, so a producer that drifts (a new segment, products missing from the
    catalogue) shows in the UI before anyone queries the table."""
    share = quality.rows_warned / quality.rows_read if quality.rows_read else 0.0
    counts = sorted(quality.warning_counts.items(), key=lambda item: (-item[1], item[0]))
    table = "\n".join(
        ["| rule | rows | share of rows read |", "| --- | --- | --- |"]
        + [f"| {code} | {rows} | {rows / quality.rows_read:.2%} |" for code, rows in counts]
    )
    return dg.AssetCheckResult(
        check_name="quality_warnings",
        asset_key=EVENTS,
        passed=share <= rules.max_warning_share,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{share:.1%} of rows stored with warnings > {rules.max_warning_share:.0%}"
        if share > rules.max_warning_share
        else None,
        metadata={
            "rows_warned": quality.rows_warned,
            "warning_share": share,
            "warnings_by_rule": dg.MetadataValue.md(table if counts else "no warnings"),
        },
    )


def conservation_check(quality: PartitionQuality) -> dg.AssetCheckResult:
    accounted = quality.rows_inserted + quality.rows_duplicate + quality.rows_invalid
    problems = []
    if accounted != quality.rows_read:
        problems.append(f"read {quality.rows_read} but accounted for {accounted}")
    if quality.events_stored != quality.rows_inserted:
        problems.append(f"{quality.events_stored} events stored, {quality.rows_inserted} inserted")
    if quality.dead_letters_stored != quality.rows_invalid:
        problems.append(
            f"{quality.dead_letters_stored} dead letters stored, {quality.rows_invalid} invalid"
        )
    return dg.AssetCheckResult(
        check_name="rows_conserved",
        asset_key=METRICS,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or None,
        metadata={
            "rows_read": quality.rows_read,
            "rows_inserted": quality.rows_inserted,
            "rows_duplicate": quality.rows_duplicate,
            "rows_dead_lettered": quality.rows_invalid,
        },
    )


def unique_event_ids_check(quality: PartitionQuality) -> dg.AssetCheckResult:
    passed = quality.duplicate_event_ids == 0 and quality.primary_key_present
    return dg.AssetCheckResult(
        check_name="unique_event_ids",
        asset_key=EVENTS,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if passed else "duplicate event ids or missing primary key",
        metadata={"duplicate_event_ids": quality.duplicate_event_ids},
    )


def evaluate_checks(quality: PartitionQuality, rules: QualitySettings) -> list[dg.AssetCheckResult]:
    return [
        validity_check(quality, rules),
        error_concentration_check(quality, rules),
        warnings_check(quality, rules),
        conservation_check(quality),
        unique_event_ids_check(quality),
    ]


BLOCKING = {(spec.asset_key, spec.name): spec.blocking for spec in CHECK_SPECS}


def as_evaluations(
    results: list[dg.AssetCheckResult], partition: str, scope: dict[str, object]
) -> list[dg.AssetCheckEvaluation]:
    """The results as evaluations a running step can log at any time (a step yields each check's
    result only once); ``scope`` says what was judged (which batch, which files)."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=result.asset_key,
            check_name=result.check_name,
            passed=result.passed,
            metadata={**scope, **result.metadata},
            severity=result.severity,
            description=result.description,
            blocking=BLOCKING[(result.asset_key, result.check_name)],
            partition=partition,
        )
        for result in results
    ]
