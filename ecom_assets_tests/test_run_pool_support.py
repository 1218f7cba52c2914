"""A job for the run pool's tests: it records which process ran it, then waits if asked to."""

import json
import os
import time
from pathlib import Path

import dagster as dg


@dg.op(config_schema={"out": str, "wait_s": dg.Field(float, default_value=0.0)})
def record_worker(context: dg.OpExecutionContext) -> None:
    out = Path(context.op_config["out"])
    out.write_text(json.dumps({"pid": os.getpid(), "parent": os.getppid()}))
    time.sleep(context.op_config["wait_s"])


@dg.job(executor_def=dg.in_process_executor)
def worker_job() -> None:
    record_worker()


def worker_run_config(out: Path, wait_s: float = 0.0) -> dict:
    return {"ops": {"record_worker": {"config": {"out": str(out), "wait_s": wait_s}}}}


def worker_of(out: Path) -> dict[str, int]:
    """The pid and parent pid the run recorded."""
    return json.loads(out.read_text())
