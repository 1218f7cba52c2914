"""The run queue launches at once when nothing waits, and queues when a limit is reached.

A real instance with the coordinator `ecom up` configures; the runs launched execute in this
process (Dagster's synchronous launcher), the worker job of the run pool's tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator.base import SubmitRunContext

from ecom_assets.stack.dagster_home import INGEST_CONCURRENCY_TAG
from ecom_assets.stack.run_coordinator import ImmediateRunCoordinator
from ecom_assets_tests.test_run_pool_support import worker_job, worker_run_config

INGEST = {INGEST_CONCURRENCY_TAG: "2026-12-06-10:00"}
REMOTE_ORIGIN = RemoteRepositoryOrigin(
    RegisteredCodeLocationOrigin("tests"), "repo"
).get_job_origin("worker_job")


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    coordinator = {
        "module": "ecom_assets.stack.run_coordinator",
        "class": "ImmediateRunCoordinator",
        "config": {
            "max_concurrent_runs": 2,
            "tag_concurrency_limits": [{"key": INGEST_CONCURRENCY_TAG, "limit": 1}],
        },
    }
    launcher = {
        "module": "dagster._core.launcher.sync_in_memory_run_launcher",
        "class": "SyncInMemoryRunLauncher",
    }
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(
        temp_dir=str(tmp_path / "dagster"),
        overrides={"run_coordinator": coordinator, "run_launcher": launcher},
    ) as instance:
        assert isinstance(instance.run_coordinator, ImmediateRunCoordinator)
        yield instance


def new_run(
    instance: dg.DagsterInstance,
    tags: dict[str, str],
    status: dg.DagsterRunStatus | None = None,
    out: Path = Path("/dev/null"),
) -> dg.DagsterRun:
    return instance.create_run_for_job(
        job_def=worker_job,
        run_config=worker_run_config(out),
        tags=tags,
        status=status,
        job_code_origin=dg.reconstructable(worker_job).get_python_origin(),
        remote_job_origin=REMOTE_ORIGIN,  # the queue needs one; only its name is read here
    )


def submit(instance: dg.DagsterInstance, tmp_path: Path, tags: dict[str, str]) -> dg.DagsterRun:
    run = new_run(instance, tags, out=tmp_path / "worker.json")
    # what DagsterInstance.submit_run calls, minus its check for a code server's origin
    instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
    return instance.get_run_by_id(run.run_id)


def in_progress(instance: dg.DagsterInstance, tags: dict[str, str]) -> None:
    new_run(instance, tags, status=dg.DagsterRunStatus.STARTED)


def enqueued(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    return bool(instance.all_logs(run.run_id, of_type=DagsterEventType.PIPELINE_ENQUEUED))


def test_with_nothing_waiting_a_run_is_launched_without_queueing(instance, tmp_path) -> None:
    run = submit(instance, tmp_path, INGEST)
    assert run.status == dg.DagsterRunStatus.SUCCESS  # the synchronous launcher ran it
    assert not enqueued(instance, run)
    assert (tmp_path / "worker.json").exists()


def test_a_second_ingest_run_waits_in_the_queue(instance, tmp_path) -> None:
    in_progress(instance, INGEST)
    run = submit(instance, tmp_path, INGEST)
    assert run.status == dg.DagsterRunStatus.QUEUED
    assert enqueued(instance, run)
    # a run without the ingest tag has room beside it
    assert submit(instance, tmp_path, {}).status == dg.DagsterRunStatus.QUEUED  # behind it


def test_a_run_without_the_tag_is_launched_beside_an_ingest_run(instance, tmp_path) -> None:
    in_progress(instance, INGEST)
    assert submit(instance, tmp_path, {}).status == dg.DagsterRunStatus.SUCCESS


def test_the_run_limit_queues_every_run(instance, tmp_path) -> None:
    in_progress(instance, {})
    in_progress(instance, {})
    assert submit(instance, tmp_path, {}).status == dg.DagsterRunStatus.QUEUED


def test_a_limit_on_a_tag_value_is_left_to_the_daemon(tmp_path: Path) -> None:
    coordinator = ImmediateRunCoordinator(
        tag_concurrency_limits=[{"key": "team", "value": "a", "limit": 5}]
    )
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        coordinator.register_instance(instance)
        assert not coordinator.fits_now(new_run(instance, {"team": "a"}))
        assert coordinator.fits_now(new_run(instance, {"team": "b"}))  # the limit is a's
        coordinator = ImmediateRunCoordinator(
            tag_concurrency_limits=[
                {"key": "team", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
            ]
        )
        coordinator.register_instance(instance)
        assert not coordinator.fits_now(new_run(instance, {"team": "b"}))
