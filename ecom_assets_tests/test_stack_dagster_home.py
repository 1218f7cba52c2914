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
from ecom_assets.stack.run_coordinator import ImmediateRunCoordinator
from ecom_assets.stack.run_launcher import PooledRunLauncher
from ecom_assets.stack.run_pool import socket_path


def test_the_instance_runs_only_the_daemons_the_platform_uses(
    ingest_settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORAGE_URL_ENV, "postgresql+psycopg2://" + database_url.split("://", 1)[1])
    home = write_dagster_home(ingest_settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        daemons = set(instance.get_required_daemon_types())
        assert isinstance(instance.run_coordinator, ImmediateRunCoordinator)
        # a dead run worker frees the ingest slot within seconds, not Dagster's 120 s
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["poll_interval_seconds"] == 5
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


@pytest.mark.parametrize("pooled", [True, False])
def test_runs_launch_from_the_run_pool_unless_it_is_turned_off(
    ingest_settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch, pooled: bool
) -> None:
    monkeypatch.setenv(STORAGE_URL_ENV, "postgresql+psycopg2://" + database_url.split("://", 1)[1])
    settings = ingest_settings.model_copy(
        update={"dagster": ingest_settings.dagster.model_copy(update={"run_pool": pooled})}
    )
    with dg.DagsterInstance.from_config(str(write_dagster_home(settings))) as instance:
        launcher = instance.run_launcher
    if pooled:
        assert isinstance(launcher, PooledRunLauncher)
        assert launcher.inst_data.config_dict == {"socket": str(socket_path(settings))}
    else:
        assert isinstance(launcher, dg.DefaultRunLauncher)
