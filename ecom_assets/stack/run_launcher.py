"""Dagster's run launcher for the local stack: each run is a fork of the warm run pool.

`run_pool.py` says why. When the pool cannot take a run (not started, reloading, another
interpreter), the launcher starts `dagster api execute_run` in a new interpreter instead, the
command Dagster's own process-based launchers run, so a run never waits for the pool. Either way
the worker is recorded on the run (pid and start time), which lets Dagster terminate it and lets
run monitoring fail a run whose worker died.

This module is imported by Dagster's daemon and webserver: it must stay light.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

from dagster import Field, StringSource
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from ecom_assets.stack.run_pool import request

WORKER_TAG = "ecom/run_worker"
"""The run's worker process, as "<pid>/<start time in clock ticks>": a pid alone may be reused."""

POOL_TIMEOUT_S = 10.0


class PoolUnavailable(Exception):
    """The pool did not take the run; the message says why."""


def ask_pool(path: str, payload: str, timeout_s: float = POOL_TIMEOUT_S) -> int:
    """Hand a run to the pool; the pid of the worker it forked."""
    try:
        reply = request(path, payload.encode(), timeout_s)
    except (OSError, ValueError) as exc:
        raise PoolUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if "pid" not in reply:
        raise PoolUnavailable(reply.get("refused", "no answer"))
    return int(reply["pid"])


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (None: no such process, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def worker_alive(tag: str) -> bool:
    """Is the worker recorded as ``WORKER_TAG`` still running?"""
    pid, started = tag.split("/")
    return start_time(int(pid)) == int(started)


class PooledRunLauncher(RunLauncher, ConfigurableClass):
    """Launches runs in the warm run pool at ``socket``, or in a new interpreter."""

    def __init__(self, socket_path: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._socket_path = socket_path
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {"socket": Field(StringSource, description="The run pool's Unix socket.")}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> PooledRunLauncher:
        return cls(socket_path=config_value["socket"], inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if run.job_code_origin is None:
            raise ValueError(f"run {run.run_id} has no code origin to execute")
        args = ExecuteRunArgs(
            job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        )
        payload = serialize_value(args)
        try:
            pid = ask_pool(self._socket_path, payload)
            how = f"Run worker forked by the warm run pool (pid {pid})."
        except PoolUnavailable as exc:
            pid = self._start_process(run.job_code_origin.executable_path, payload)
            how = f"Run pool unavailable ({exc}); started a new interpreter (pid {pid})."
        started = start_time(pid)
        if started is not None:
            self._instance.add_run_tags(run.run_id, {WORKER_TAG: f"{pid}/{started}"})
        self._instance.report_engine_event(how, run, cls=self.__class__)

    def _start_process(self, python: str, payload: str) -> int:
        """`dagster api execute_run` in a new interpreter: the run's own, as Dagster would."""
        argv = [python, "-m", "dagster", "api", "execute_run", payload]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        threading.Thread(target=process.wait, daemon=True).start()  # reaped when it exits
        return process.pid

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        tag = run.tags.get(WORKER_TAG)
        if tag is None or not worker_alive(tag):
            self._instance.report_engine_event(
                "No live run worker to terminate.", run, cls=self.__class__
            )
            return False
        os.kill(int(tag.split("/")[0]), signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        tag = run.tags.get(WORKER_TAG)
        if tag is None or worker_alive(tag):  # untagged: launched by another launcher, not known
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker {tag} is gone")
