"""Chaos: a real `ecom up` ingests a backlog while a run worker, PostgreSQL's postmaster, the
Spark Connect server and the supervisor itself are killed with SIGKILL at random moments; after
each kill it is restarted as a user would. Then every row is compared with the truth: the same
files ingested undisturbed, and an independent count of their records (chaos_support.py).

Seeded: the seed is printed (and in the failure message); CHAOS_SEED=<seed> replays a run's
choices (the timing of the stack itself is not replayable). Bounded: four rounds, one per target,
about four minutes on two cores; bench/chaos.py runs longer.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecom_assets_tests.chaos_support import (
    TARGETS,
    ChaosPlan,
    account,
    backlog_start,
    chaos_against_stack,
    copies_of,
    csv_records,
    differences,
    ingest_truth,
    kill_leftovers,
    write_backlog,
)

pytestmark = pytest.mark.integration

ROUNDS = len(TARGETS)  # round-robin: every target killed once


@pytest.fixture
def home() -> Iterator[Path]:
    """Outside pytest's tmp_path, whose parents the embedded PostgreSQL's user may not reach."""
    home = Path(tempfile.mkdtemp(prefix="ecom-test-chaos-"))
    home.chmod(0o755)
    yield home
    kill_leftovers(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.timeout(480)
def test_random_kills_lose_duplicate_and_change_no_row(
    spark, migrated_database_url: str, tmp_path: Path, home: Path
) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed {seed} (replay: CHAOS_SEED={seed})")
    backlog = write_backlog(tmp_path / "backlog", seed, 12, 100, backlog_start())
    records, unreadable = csv_records(backlog)
    truth = ingest_truth(spark, migrated_database_url, tmp_path / "truth", backlog)
    # the truth itself: every record once, and the backlog has every kind of outcome
    assert account(records, unreadable, truth) == []
    assert truth.events and truth.dead_letters and truth.quarantined

    plan = ChaosPlan(rounds=ROUNDS, seed=seed, kill_window_s=5, heal_wait_s=60,
                     drain_timeout_s=240, settle_timeout_s=60)  # fmt: skip
    outcome = chaos_against_stack(home, backlog, plan)
    report, got, left = outcome.report, outcome.got, outcome.left
    assert left == [], f"seed {seed}: processes left after ecom down: {left}"
    assert report.kills_by_target() == dict.fromkeys(TARGETS, 1)
    never = [(kill.round, kill.target) for kill in report.kills if kill.recovery_s is None]
    assert never == [], f"seed {seed}: ingestion never resumed after {never}"
    found, _stored_from_another_copy = differences(truth, got, copies_of(records))
    assert found == [], f"seed {seed}"
    assert account(records, unreadable, got) == [], f"seed {seed}"
    assert got.rows == truth.rows > 0
