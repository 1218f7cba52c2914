"""Dagster's run queue for the local stack, launching a run at once when nothing waits.

Dagster's QueuedRunCoordinator only enqueues; its daemon dequeues on a tick of whole seconds
(`dequeue_interval_seconds`, at least 1), so every run spent 0.8-0.9 s queued even when nothing
else ran (docs/decisions.md 47). This coordinator launches a submitted run itself when no run
is queued and the run fits the queue's limits now (`max_concurrent_runs` and the tag limits),
and enqueues it otherwise, for the daemon to launch as before.

Two runs submitted in the same few milliseconds by different processes (the sensor daemon and
the webserver) may both find the slot free, as they may with Dagster's default coordinator; the
ingest's partition lock and file ledger keep that safe, it only costs the cores.
"""

from __future__ import annotations

from dagster._core.run_coordinator.base import SubmitRunContext
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import (
    IN_PROGRESS_RUN_STATUSES,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)


class ImmediateRunCoordinator(QueuedRunCoordinator):
    """A QueuedRunCoordinator that launches at submission when the queue is empty and the run
    fits its limits."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        if run.status == DagsterRunStatus.NOT_STARTED and self.fits_now(run):
            return self._instance.launch_run(run.run_id, context.workspace)
        return super().submit_run(context)

    def fits_now(self, run: DagsterRun) -> bool:
        """No run queued before it, and room under every limit of the queue.

        A limit on a tag's value (or on each value) that applies to the run is left to the
        daemon: the run is queued."""
        instance = self._instance
        if instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED])):
            return False
        in_progress = instance.get_runs(RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES))
        config = self.get_run_queue_config()
        if 0 <= config.max_concurrent_runs <= len(in_progress):
            return False
        for limit in config.tag_concurrency_limits:
            if limit["key"] not in run.tags:
                continue
            value = limit.get("value")
            if value is not None:
                if isinstance(value, dict) or value == run.tags[limit["key"]]:
                    return False
                continue
            if sum(limit["key"] in other.tags for other in in_progress) >= limit["limit"]:
                return False
        return True
