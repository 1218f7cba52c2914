"""Asset checks of an ingested partition: validity, error concentration, warnings, conservation,
each row in one place.

The numbers come from PostgreSQL, not from the run's memory, so a check also catches what an
earlier run or a manual change did to the files. Each file counts with its first committed
ingestion: a replay of a file inserts nothing new and must not double its rows. The last two
checks compare counts that nothing in the schema ties together, so each can fail: the rows the
ledger says a file's scan read against the rows the tables hold for it, and the events against
the dead letters of the same file and line.

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
        description="The rows the ledger says each file's read gave = the file's events stored + "
        "its dead letters stored + its duplicates (rows whose event was held, same contents); "
        "and the metrics account for every row read.",
    ),
    dg.AssetCheckSpec(
        "rows_in_one_place",
        asset=EVENTS,
        partitions_def=ingest_partitions,
        description="No source row (file and line) is both a stored event and a dead letter.",
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
    ledger_files: int = 0
    """Files among them whose ledger row holds a count of rows read (set at their commit)."""
    ledger_rows_read: int = 0
    rows_in_both: int = 0
    """Source rows (file, line) stored both as an event and as a dead letter."""

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
), ledger AS (
    SELECT count(*) AS files, coalesce(sum(rows_read), 0) AS rows_read FROM ingest_files
    WHERE file_name IN (SELECT source_file FROM first) AND rows_read IS NOT NULL
)
SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_valid), 0),
       coalesce(sum(rows_invalid), 0), coalesce(sum(rows_inserted), 0),
       coalesce(sum(rows_duplicate), 0),
       (SELECT coalesce(jsonb_object_agg(code, n), '{}'::jsonb) FROM codes),
       (SELECT count(*) FROM ecommerce_events WHERE source_file IN (SELECT source_file FROM first)),
       (SELECT count(*) FROM dead_letter_events
         WHERE source_file IN (SELECT source_file FROM first)),
       (SELECT files FROM ledger),
       (SELECT rows_read FROM ledger),
       (SELECT count(*) FROM dead_letter_events d
         WHERE d.source_file IN (SELECT source_file FROM first)
           AND EXISTS (SELECT FROM ecommerce_events e
                       WHERE e.source_file = d.source_file AND e.source_line = d.source_line)),
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
        ledger_files=row[9],
        ledger_rows_read=int(row[10]),
        rows_in_both=row[11],
        rows_warned=int(row[12]),
        warning_counts={code: int(n) for code, n in row[13].items()},
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
    """Every row a file's read gave is in the tables: an event, a dead letter, or a duplicate.

    The ledger's count is the one the commit recorded for the file; the events and dead
    letters are counted in their tables, so a row lost or stored twice after the commit shows.
    A duplicate is a valid row whose event was held with the same contents: the commit counts
    only those it found a holder for, so a row lost at the commit shows too."""
    held = quality.events_stored + quality.dead_letters_stored + quality.rows_duplicate
    accounted = quality.rows_inserted + quality.rows_duplicate + quality.rows_invalid
    problems = []
    if quality.ledger_files != quality.files:
        problems.append(
            f"{quality.files - quality.ledger_files} of {quality.files} files have no count of "
            "rows read in the ledger"
        )
    if quality.ledger_rows_read != held:
        problems.append(
            f"the ledger says {quality.ledger_rows_read} rows were read, the tables hold {held} "
            f"({quality.events_stored} events, {quality.dead_letters_stored} dead letters, "
            f"{quality.rows_duplicate} duplicates)"
        )
    if accounted != quality.rows_read:
        problems.append(f"read {quality.rows_read} but accounted for {accounted}")
    return dg.AssetCheckResult(
        check_name="rows_conserved",
        asset_key=METRICS,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or None,
        metadata={
            "rows_read": quality.rows_read,
            "ledger_rows_read": quality.ledger_rows_read,
            "rows_inserted": quality.rows_inserted,
            "rows_duplicate": quality.rows_duplicate,
            "rows_dead_lettered": quality.rows_invalid,
            "events_stored": quality.events_stored,
            "dead_letters_stored": quality.dead_letters_stored,
        },
    )


def one_place_check(quality: PartitionQuality) -> dg.AssetCheckResult:
    """A source row is an event or a dead letter, never both: the tables do not enforce it (a
    file replayed after a rule was relaxed stores the rows that pass now, while their old dead
    letters stay until deleted)."""
    return dg.AssetCheckResult(
        check_name="rows_in_one_place",
        asset_key=EVENTS,
        passed=quality.rows_in_both == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{quality.rows_in_both} source rows (file and line) are both a stored "
        "event and a dead letter"
        if quality.rows_in_both
        else None,
        metadata={"rows_in_both": quality.rows_in_both},
    )


def evaluate_checks(quality: PartitionQuality, rules: QualitySettings) -> list[dg.AssetCheckResult]:
    return [
        validity_check(quality, rules),
        error_concentration_check(quality, rules),
        warnings_check(quality, rules),
        conservation_check(quality),
        one_place_check(quality),
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
