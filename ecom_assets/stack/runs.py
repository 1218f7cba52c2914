"""The stack's Dagster runs when it stops: ended as stopped, never as failed.

`ecom down` and Ctrl-C signal every part's process group, the run workers among them. A run
whose worker is interrupted without Dagster being told ends FAILURE ("interrupted unexpectedly").
So before signalling a group that holds run workers, the supervisor marks the active runs
CANCELING, as a terminate from the UI does. The ingest step then lets its batches in flight
commit and ends SUCCESS when nothing of its hour was left waiting, CANCELED otherwise
(docs/decisions.md 54). A run whose worker never got that far (still starting, or killed at the
timeout) is marked CANCELED once the groups are gone: its files wait for the next run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ecom_assets.settings import Settings
from ecom_assets.stack.dagster_home import STORAGE_URL_ENV
from ecom_assets.stack.local import dagster_storage_url

if TYPE_CHECKING:
    from dagster import DagsterInstance

RUN_WORKER_PARTS = ("dagster", "run pool")
"""The parts whose process groups hold run workers: Dagster's code server spawns them when the
run pool is off; the pool forks them otherwise."""
STOPPING = "The stack is stopping (ecom down, Ctrl-C or SIGTERM)."


class StackRuns:
    """The stack's Dagster instance, opened on first use; a fault is reported, never raised (a
    stop must go on whatever the run storage does)."""

    def __init__(self, settings: Settings, say: Callable[[str], None]) -> None:
        self.settings = settings
        self.say = say
        self._instance: DagsterInstance | None = None
        self._broken = False

    def _open(self) -> DagsterInstance | None:
        if self._instance is None and not self._broken:
            home = self.settings.paths.state / "dagster_home"
            try:
                from dagster import DagsterInstance

                if STORAGE_URL_ENV not in os.environ:  # dagster.yaml names it
                    with contextlib.suppress(OSError):  # no embedded server: not this storage
                        os.environ[STORAGE_URL_ENV] = dagster_storage_url(self.settings)
                self._instance = DagsterInstance.from_config(str(home))
            except Exception as exc:  # no home, storage down: the runs stay as they are
                self._broken = True
                self.say(f"[down] runs        not marked: {type(exc).__name__}: {exc}")
        return self._instance

    def _active(self, *statuses: str) -> list:
        from dagster import DagsterRunStatus, RunsFilter

        instance = self._open()
        if instance is None:
            return []
        wanted = [DagsterRunStatus(status) for status in statuses]
        try:
            return list(instance.get_runs(RunsFilter(statuses=wanted)))
        except Exception as exc:  # the storage went away meanwhile
            self.say(f"[down] runs        not read: {type(exc).__name__}: {exc}")
            return []

    def mark_stopping(self) -> None:
        """Mark the starting and started runs CANCELING, before their workers are signalled."""
        runs = self._active("STARTING", "STARTED")
        for run in runs:
            self._instance.report_run_canceling(run, message=STOPPING)
        if runs:
            self.say(f"[down] runs        {len(runs)} asked to stop: {_ids(runs)}")

    def cancel_leftovers(self) -> None:
        """Runs still unfinished once every worker is gone: CANCELED, with the reason."""
        runs = self._active("STARTING", "STARTED", "CANCELING")
        for run in runs:
            self._instance.report_run_canceled(
                run, message=f"{STOPPING} Its worker ended before it could report."
            )
        if runs:
            self.say(f"[down] runs        {len(runs)} marked CANCELED: {_ids(runs)}")

    def terminate_started(self, reason: str) -> list[str]:
        """Terminate the starting and started runs, as the UI's terminate does (the step
        finishes its batches in flight, the run ends CANCELED or SUCCESS): after the Spark
        Connect server was restarted their sessions are gone, and a lingering run would fail
        every new file. The next run opens a session on the new server. Their run ids."""
        runs = self._active("STARTING", "STARTED")
        for run in runs:
            try:
                self._instance.report_engine_event(reason, run)
                self._instance.run_launcher.terminate(run.run_id)
            except Exception as exc:  # the run ended meanwhile, or the storage is down
                self.say(f"[heal] runs        {run.run_id[:8]} not terminated: {exc}")
        return [run.run_id[:8] for run in runs]

    def close(self) -> None:
        if self._instance is not None:
            self._instance.dispose()


def _ids(runs: list) -> str:
    return ", ".join(run.run_id[:8] for run in runs)
