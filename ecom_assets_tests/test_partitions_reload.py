"""End to end under `dagster dev`: a file older than the first partition lands after the load;
the sensor moves the first hour back and gets the code location reloaded through the webserver,
and the reloaded sensor requests the file's own hour (real webserver, daemon and code server)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.storage.tags import PARTITION_NAME_TAG

from ecom_assets.code_location import reload_code_location
from ecom_assets.partitions import PARTITION_FORMAT, hour_of, read_recorded_start
from ecom_assets.stack.processes import free_port, start_group, stop_group, tail, wait_until
from ecom_assets.stack.supervisor import http_ok

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[tuple[Path, int, Path]]:
    """`dagster dev` on the project's workspace, everything under tmp_path; runs stay queued
    (nothing here needs PostgreSQL or Spark). Yields (ECOM_HOME, port, DAGSTER_HOME)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    queue_only = {
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": 0},
        },
        "telemetry": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(queue_only))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "ECOM_INGEST_PARTITIONS_START"},
        "DAGSTER_HOME": str(home),
        "ECOM_HOME": str(tmp_path),
        "ECOM_ENV_FILE": str(tmp_path / "absent.env"),
        "ECOM_DAGSTER_PORT": str(port),
        "ECOM_INGEST_FILE_SETTLE_S": "0",
    }
    log = tmp_path / "dagster.log"
    argv = [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"),
            "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    process = start_group(argv, log, env=env, cwd=ROOT)
    try:
        if not wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/server_info"), 180, 0.5):
            pytest.fail(f"dagster dev did not answer:\n{tail(log, 40)}")
        yield tmp_path, port, home
    finally:
        stop_group(process.pid)


def test_an_older_file_landing_later_is_ingested_in_its_own_hour_after_a_reload(
    dagster_dev: tuple[Path, int, Path],
) -> None:
    ecom_home, port, dagster_home = dagster_dev
    url = f"http://127.0.0.1:{port}/graphql"
    reload_code_location(url)  # the location loads and a reload through GraphQL works
    record = ecom_home / ".ecom" / "partitions_start"
    first = read_recorded_start(record)
    assert first == hour_of(datetime.now(tz=UTC))  # a new installation: this hour

    # another producer's file, its modification time kept from three days ago
    old = first - timedelta(days=3)
    staged = ecom_home / "legacy_orders.csv"
    staged.write_text("event_id,event_type\n")
    os.utime(staged, ((old + timedelta(minutes=30)).timestamp(),) * 2)
    input_dir = ecom_home / "data" / "input"
    input_dir.mkdir(parents=True, exist_ok=True)
    os.rename(staged, input_dir / staged.name)

    old_key = old.strftime(PARTITION_FORMAT)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:

        def requested() -> bool:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={PARTITION_NAME_TAG: old_key}))
            return bool(runs)

        assert wait_until(requested, 150, 1.0), tail(ecom_home / "dagster.log", 60)
    assert read_recorded_start(record) == old
    assert (input_dir / staged.name).exists()  # waiting for its run: never moved elsewhere
