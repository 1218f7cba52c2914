"""DAGSTER_HOME managed by the project: run storage in PostgreSQL, a bounded run queue that
launches at once when nothing waits, and runs forked from the warm run pool."""

from __future__ import annotations

from pathlib import Path

import yaml

from ecom_assets.settings import Settings
from ecom_assets.stack.run_pool import socket_path

STORAGE_URL_ENV = "ECOM_DAGSTER_STORAGE_URL"
INGEST_CONCURRENCY_TAG = "ecom/ingest"
RUN_MONITORING_POLL_S = 5
UNUSED_DAEMONS_OFF = {
    "auto_materialize": {"enabled": False, "use_sensors": False},
    "freshness": {"enabled": False},
}
"""The AssetDaemon and FreshnessDaemon, off: docker/dagster.yaml says the same."""


def instance_config(settings: Settings) -> dict:
    """dagster.yaml as a dict. The storage URL is read from an env var, never written down."""
    return {
        "storage": {"postgres": {"postgres_url": {"env": STORAGE_URL_ENV}}},
        # Dagster's queue, launching at once when nothing waits (docs/decisions.md 47)
        "run_coordinator": {
            "module": "ecom_assets.stack.run_coordinator",
            "class": "ImmediateRunCoordinator",
            "config": {
                "max_concurrent_runs": settings.dagster.max_concurrent_runs,
                "dequeue_interval_seconds": settings.dagster.dequeue_interval_s,
                "tag_concurrency_limits": [
                    {"key": INGEST_CONCURRENCY_TAG, "limit": settings.ingestion.max_concurrent_runs}
                ],
            },
        },
        **(
            {
                "run_launcher": {
                    "module": "ecom_assets.stack.run_launcher",
                    "class": "PooledRunLauncher",
                    "config": {"socket": str(socket_path(settings))},
                }
            }
            if settings.dagster.run_pool
            else {}  # Dagster's default: the code server spawns each run
        ),
        # a run whose worker died (kill -9, out of memory) holds the ingest slot until the
        # monitor sees it: Dagster's default look every 120 s stalled ingestion for 80-150 s
        # in the chaos bench; a look costs one query of the runs in progress
        "run_monitoring": {"enabled": True, "poll_interval_seconds": RUN_MONITORING_POLL_S},
        # no asset has an automation condition or a freshness policy: their daemons would only
        # poll the storage (docs/decisions.md 39)
        **UNUSED_DAEMONS_OFF,
        "telemetry": {"enabled": False},
    }


def write_dagster_home(settings: Settings) -> Path:
    home = settings.paths.state / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(settings), sort_keys=False))
    return home
