"""The DAGSTER_HOME of `ecom up`: Dagster reads it into an instance with only the daemons used."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._daemon.daemon import BackfillDaemon, MonitoringDaemon, SchedulerDaemon, SensorDaemon
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from ecom_assets.settings import Settings
from ecom_assets.stack.dagster_home import STORAGE_URL_ENV, write_dagster_home


def test_the_instance_runs_only_the_daemons_the_platform_uses(
    ingest_settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORAGE_URL_ENV, "postgresql+psycopg2://" + database_url.split("://", 1)[1])
    home = write_dagster_home(ingest_settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        daemons = set(instance.get_required_daemon_types())
    # no AssetDaemon (automation conditions) and no FreshnessDaemon: nothing uses them
    assert daemons == {
        daemon.daemon_type()
        for daemon in (
            SensorDaemon,
            BackfillDaemon,
            SchedulerDaemon,
            QueuedRunCoordinatorDaemon,
            MonitoringDaemon,
        )
    }
