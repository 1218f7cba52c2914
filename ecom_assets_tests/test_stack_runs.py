"""A stop of the stack tells Dagster before it signals the runs: a real instance's run storage."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from ecom_assets.settings import PathSettings, load_settings
from ecom_assets.stack.runs import StackRuns


def add_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(DagsterRun(job_name="ingest_job", run_id=run_id, status=status))
    return run_id


def test_active_runs_are_marked_canceling_then_canceled_and_waiting_runs_stay(
    tmp_path: Path,
) -> None:
    settings = load_settings(paths=PathSettings(home=tmp_path))
    home = settings.paths.state / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # SQLite run storage
    said: list[str] = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        started = add_run(instance, dg.DagsterRunStatus.STARTED)
        starting = add_run(instance, dg.DagsterRunStatus.STARTING)
        waiting = add_run(instance, dg.DagsterRunStatus.NOT_STARTED)  # as a QUEUED one
        done = add_run(instance, dg.DagsterRunStatus.SUCCESS)

        runs = StackRuns(settings, said.append)
        runs.mark_stopping()

        def status(run_id: str) -> dg.DagsterRunStatus:
            return instance.get_run_by_id(run_id).status

        assert status(started) == status(starting) == dg.DagsterRunStatus.CANCELING
        assert status(waiting) == dg.DagsterRunStatus.NOT_STARTED  # takes its files after a restart
        assert status(done) == dg.DagsterRunStatus.SUCCESS
        runs.cancel_leftovers()  # their workers never reported: the stop says why
        runs.close()
        assert status(started) == status(starting) == dg.DagsterRunStatus.CANCELED
        assert status(waiting) == dg.DagsterRunStatus.NOT_STARTED
    assert said[0].startswith("[down] runs        2 asked to stop:")
    assert said[1].startswith("[down] runs        2 marked CANCELED:")


def test_a_missing_run_storage_is_reported_and_never_stops_the_stop(tmp_path: Path) -> None:
    settings = load_settings(paths=PathSettings(home=tmp_path / "nowhere"))
    said: list[str] = []
    runs = StackRuns(settings, said.append)
    runs.mark_stopping()
    runs.cancel_leftovers()
    runs.close()
    assert len(said) == 1 and said[0].startswith("[down] runs        not marked:")
