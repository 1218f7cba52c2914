"""The warm run pool and its launcher: real processes, a real Dagster instance, real runs.

A run handed to the pool is a fork of it (its parent is the pool); without a pool, or with code
changed since the pool imported it, the launcher starts a new interpreter instead, and the pool
reloads. Termination and run monitoring find the worker through the run's tag.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.launcher.base import WorkerStatus

from ecom_assets.settings import PathSettings, load_settings
from ecom_assets.stack.run_launcher import WORKER_TAG, PooledRunLauncher, worker_alive
from ecom_assets.stack.run_pool import REQUEST_TIMEOUT_S, answers, refusal, socket_path
from ecom_assets.stack.supervisor import PROJECT_ROOT
from ecom_assets_tests.test_run_pool_support import worker_job, worker_of, worker_run_config

START_TIMEOUT_S = 120  # the pool imports Dagster and the code location first
RUN_TIMEOUT_S = 120


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.env"
    path.write_text("")
    return path


@contextmanager
def running_pool(
    tmp_path: Path, env_file: Path, *args: str, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A run pool on a socket in tmp_path, its output in pool.log."""
    path = tmp_path / "pool.sock"
    environment = {**os.environ, "ECOM_ENV_FILE": str(env_file), **env}
    with open(tmp_path / "pool.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ecom_assets.stack.run_pool", "--socket", str(path), *args],
            env=environment, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: answers(path), START_TIMEOUT_S, "the pool to answer")
        yield process, path
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def pool(tmp_path: Path, env_file: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    with running_pool(tmp_path, env_file) as started:
        yield started


def pooled_instance(tmp_path: Path, path: Path) -> AbstractContextManager[dg.DagsterInstance]:
    launcher = {"module": "ecom_assets.stack.run_launcher", "class": "PooledRunLauncher"}
    (tmp_path / "dagster").mkdir(exist_ok=True)
    return dg.instance_for_test(
        temp_dir=str(tmp_path / "dagster"),
        overrides={"run_launcher": {**launcher, "config": {"socket": str(path)}}},
    )


def launch(instance: dg.DagsterInstance, out: Path, wait_s: float = 0.0) -> str:
    run = instance.create_run_for_job(
        job_def=worker_job,
        run_config=worker_run_config(out, wait_s),
        job_code_origin=dg.reconstructable(worker_job).get_python_origin(),
    )
    instance.launch_run(run.run_id, workspace=None)
    return run.run_id


def finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    wait_for(lambda: instance.get_run_by_id(run_id).is_finished, RUN_TIMEOUT_S, "the run")
    return instance.get_run_by_id(run_id)


def launch_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """The launcher's engine event on the run."""
    prefix = f"[{PooledRunLauncher.__name__}] "
    return next(
        entry.message.removeprefix(prefix)
        for entry in instance.all_logs(run_id)
        if entry.message.startswith(prefix)
    )


def test_a_run_is_a_fork_of_the_warm_pool(tmp_path: Path, pool) -> None:
    process, path = pool
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # only this user may hand it code to run
    out = tmp_path / "worker.json"
    with pooled_instance(tmp_path, path) as instance:
        assert isinstance(instance.run_launcher, PooledRunLauncher)
        run_id = launch(instance, out)
        run = finished(instance, run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        worker = worker_of(out)
        assert worker["parent"] == process.pid
        assert run.tags[WORKER_TAG].startswith(f"{worker['pid']}/")
        assert launch_message(instance, run_id) == (
            f"Run worker forked by the warm run pool (pid {worker['pid']})."
        )


def test_without_a_pool_the_run_starts_in_a_new_interpreter(tmp_path: Path) -> None:
    out = tmp_path / "worker.json"
    with pooled_instance(tmp_path, tmp_path / "absent.sock") as instance:
        run_id = launch(instance, out)
        run = finished(instance, run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert worker_of(out)["parent"] == os.getpid()  # the launcher started it
        message = launch_message(instance, run_id)
        assert message.startswith("Run pool unavailable (FileNotFoundError"), message
        assert "started a new interpreter" in message


def test_changed_settings_run_afresh_and_the_pool_reloads(tmp_path: Path, pool, env_file) -> None:
    process, path = pool
    stamp = env_file.stat().st_mtime_ns + 10**9
    os.utime(env_file, ns=(stamp, stamp))  # as an edit would
    with pooled_instance(tmp_path, path) as instance:
        run_id = launch(instance, tmp_path / "first.json")
        assert finished(instance, run_id).status == dg.DagsterRunStatus.SUCCESS
        assert worker_of(tmp_path / "first.json")["parent"] == os.getpid()
        assert "the code location changed since it was imported" in launch_message(instance, run_id)
        # the pool re-executed itself (same pid) with the new files, and forks runs again
        wait_for(lambda: answers(path), START_TIMEOUT_S, "the reloaded pool")
        assert process.poll() is None
        run_id = launch(instance, tmp_path / "second.json")
        assert finished(instance, run_id).status == dg.DagsterRunStatus.SUCCESS
        assert worker_of(tmp_path / "second.json")["parent"] == process.pid
    assert b"the code location changed; reloading" in (tmp_path / "pool.log").read_bytes()


def test_a_code_location_that_fails_to_import_leaves_runs_to_new_interpreters(
    tmp_path: Path, env_file: Path
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "broken_location.py").write_text("raise RuntimeError('broken on purpose')\n")
    path_with_it = os.pathsep.join([str(modules), os.environ.get("PYTHONPATH", "")])
    with (
        running_pool(
            tmp_path, env_file, "--preload", "broken_location", PYTHONPATH=path_with_it
        ) as (process, path),
        pooled_instance(tmp_path, path) as instance,
    ):
        run_id = launch(instance, tmp_path / "worker.json")
        assert finished(instance, run_id).status == dg.DagsterRunStatus.SUCCESS
        assert worker_of(tmp_path / "worker.json")["parent"] == os.getpid()
        assert (
            "the code location failed to import: RuntimeError: broken on purpose"
            in launch_message(instance, run_id)
        )
        assert process.poll() is None  # still serving


def test_a_client_that_never_finishes_does_not_stop_the_pool(pool) -> None:
    _, path = pool
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.connect(str(path))
        stuck.sendall(b"{")  # and never shuts down its side
        began = time.monotonic()
        assert answers(path, timeout_s=REQUEST_TIMEOUT_S + 10)
        assert time.monotonic() - began < REQUEST_TIMEOUT_S + 5


@contextmanager
def waiting_run(tmp_path: Path, path: Path) -> Iterator[tuple[dg.DagsterInstance, str, Path]]:
    """A pooled run whose op has started and waits a minute: the instance, run id, its record."""
    out = tmp_path / "worker.json"
    with pooled_instance(tmp_path, path) as instance:
        run_id = launch(instance, out, wait_s=60)
        wait_for(out.exists, RUN_TIMEOUT_S, "the run's op")
        yield instance, run_id, out


def test_terminate_cancels_a_pooled_run(tmp_path: Path, pool) -> None:
    with waiting_run(tmp_path, pool[1]) as (instance, run_id, _):
        run = instance.get_run_by_id(run_id)
        assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        assert instance.run_launcher.terminate(run_id)
        assert finished(instance, run_id).status == dg.DagsterRunStatus.CANCELED
        assert not instance.run_launcher.terminate(run_id)  # finished: nothing to stop


def test_run_monitoring_sees_a_dead_worker(tmp_path: Path, pool) -> None:
    with waiting_run(tmp_path, pool[1]) as (instance, run_id, out):
        os.kill(worker_of(out)["pid"], signal.SIGKILL)
        run = instance.get_run_by_id(run_id)
        wait_for(lambda: not worker_alive(run.tags[WORKER_TAG]), 10, "the worker to die")
        health = instance.run_launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.FAILED
        assert run.tags[WORKER_TAG] in health.msg


def test_the_pool_refuses_what_it_cannot_run() -> None:
    assert refusal(b"") == "empty request"
    assert refusal(b"{not json").startswith("not the arguments of a run")
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import serialize_value

    origin = dg.reconstructable(worker_job).get_python_origin()
    elsewhere = origin._replace(
        repository_origin=origin.repository_origin._replace(executable_path="/other/python")
    )
    args = ExecuteRunArgs(job_origin=elsewhere, run_id="r", instance_ref=None)
    assert refusal(serialize_value(args).encode()) == (
        f"the run's interpreter is /other/python, not {sys.executable}"
    )


def test_a_state_directory_too_deep_for_a_socket_uses_the_temporary_directory(
    tmp_path: Path,
) -> None:
    short = load_settings(paths=PathSettings(home=tmp_path))
    assert socket_path(short) == short.paths.state / "run_pool.sock"
    deep = load_settings(paths=PathSettings(home=tmp_path / ("d" * 120)))
    path = socket_path(deep)
    assert len(os.fsencode(path)) <= 107 and path.name.startswith("ecom-run-pool-")
    assert path != socket_path(short)
