"""Transient faults of PostgreSQL and Spark: retried with backoff and jitter, cut off by breakers.

Each call is retried once, by the layer that owns it: a batch's PostgreSQL work (its connection,
the ledger, the executors' COPY, the commit) by tenacity, since the batch is idempotent as a
whole; Spark Connect RPCs by the Connect client's own retry policy, set from the same settings
(its default retries for ten minutes). Bad data and SQL bugs are not transient: they fail at once.

A circuit breaker per dependency (pybreaker) counts consecutive transient failures: OPEN after
ECOM_BREAKER_FAILURE_THRESHOLD, calls then fail at once until ECOM_BREAKER_RESET_TIMEOUT_S has
passed (HALF_OPEN), and one success closes it. Breakers live as long as the process, so a step
retry of the same run finds them as the previous attempt left them.
"""

from __future__ import annotations

import errno
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
import pybreaker
import tenacity
from pyspark.errors import PySparkException
from pyspark.errors.exceptions.connect import SparkConnectGrpcException
from pyspark.sql import SparkSession

from ecom_assets.monitoring.logs import LogSink
from ecom_assets.redaction import redact
from ecom_assets.settings import ReliabilitySettings

T = TypeVar("T")

POSTGRES = "postgres"
SPARK = "spark"
# how a PostgreSQL failure inside a Spark task (the executors' COPY) reaches the driver
_EXECUTOR_PG_ERROR = "psycopg.OperationalError"
_GRPC_DETAILS = re.compile(r'status = StatusCode\.(?P<status>\w+)\s+details = "(?P<details>[^"]*)"')
# the line of a Python worker's traceback that names its exception, e.g.
# "pyarrow.lib.ArrowInvalid: CSV parse error: ..." or "...event_reader.FileChangedError: ..."
_WORKER_ERROR = re.compile(
    r"^(?:[\w.]+\.)?(?P<type>\w*(?:Error|Exception|Invalid|Exit))\b:?(?P<rest>.*)$"
)


class DependencyUnavailableError(RuntimeError):
    """PostgreSQL or Spark stayed unreachable through the retries, or its breaker is OPEN.

    Transient by nature: nothing of the batch was committed and its files stay in the input
    directory, so a later attempt (step retry, or the next run) ingests them exactly once.
    """


def is_transient_postgres(exc: BaseException) -> bool:
    """Connection-level failures (server down, restarting, network) in the driver or executors."""
    if isinstance(exc, psycopg.OperationalError):
        return True
    return isinstance(exc, SparkConnectGrpcException) and _EXECUTOR_PG_ERROR in str(exc)


SESSION_LOST = ("NO_ACTIVE_SESSION", "INVALID_HANDLE", "server side session identifier")
"""How a Spark Connect client says its session is gone: the server restarted (a new server-side
session id closes the client) or expired it. A new session (resources/spark.py) cures it."""


def is_transient_spark(exc: BaseException) -> bool:
    """The Spark Connect server could not be reached (already retried by the Connect client),
    or the session died with the server it lived on."""
    if isinstance(exc, SparkConnectGrpcException) and "UNAVAILABLE" in str(exc):
        return True
    return is_session_lost(exc)


def is_session_lost(exc: BaseException) -> bool:
    return isinstance(exc, PySparkException) and any(mark in str(exc) for mark in SESSION_LOST)


_ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM}
)
_SHUTTING_DOWN = "after interpreter shutdown"


def is_platform_fault(exc: BaseException) -> bool:
    """A failure that is the platform's, never one file's: Spark failing outside our tasks (a
    task's own Python exception is the data's: it comes with the worker's traceback), a full or
    read-only disk, exhausted memory or descriptors, the process shutting down."""
    if isinstance(exc, PySparkException):
        return "exception was thrown from the Python worker" not in str(exc)
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        return True
    return isinstance(exc, RuntimeError) and _SHUTTING_DOWN in str(exc)


def configure_spark_retries(spark: SparkSession, settings: ReliabilitySettings) -> None:
    """Give a Spark Connect session our backoff instead of its ten-minute default."""
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    if not isinstance(spark, ConnectSession):
        return  # a classic local session has no RPCs to retry
    spark.client.set_retry_policies(
        [
            DefaultPolicy(
                max_retries=settings.retry_attempts - 1,
                initial_backoff=int(settings.retry_initial_delay_s * 1000),
                backoff_multiplier=settings.retry_multiplier,
                max_backoff=int(settings.retry_max_delay_s * 1000),
            )
        ]
    )


@dataclass(frozen=True)
class Transition:
    """A breaker changing state, for logs and run metadata."""

    breaker: str
    old: str
    new: str
    at: float


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = _state_name(old_state.name) if old_state else "NONE"
        self._guard.changed(Transition(cb.name, old, _state_name(new_state.name), time.time()))


@dataclass
class Guard:
    """Retries and breakers for one process; `attach` a run's log before using it."""

    settings: ReliabilitySettings
    transitions: list[Transition] = field(default_factory=list)
    retries: int = 0
    _log: LogSink | None = None

    def __post_init__(self) -> None:
        self.breakers = {
            name: pybreaker.CircuitBreaker(
                fail_max=self.settings.breaker_failure_threshold,
                reset_timeout=self.settings.breaker_reset_timeout_s,
                # only this dependency's transient failures count; bad data is not an outage
                exclude=[functools.partial(_is_not, counts)],
                listeners=[_Listener(self)],
                name=name,
            )
            for name, counts in ((POSTGRES, is_transient_postgres), (SPARK, is_transient_spark))
        }

    def attach(self, log: LogSink) -> None:
        self._log = log

    def changed(self, transition: Transition) -> None:
        self.transitions.append(transition)
        if self._log is not None:
            line = f"circuit breaker {transition.breaker}: {transition.old} -> {transition.new}"
            (self._log.info if transition.new == "CLOSED" else self._log.warning)(line)

    def states(self) -> dict[str, str]:
        return {name: _state_name(breaker.current_state) for name, breaker in self.breakers.items()}

    def call(self, attempt: Callable[[], T], what: str) -> T:
        """attempt() with retries on transient PostgreSQL failures, through both breakers.

        Raises DependencyUnavailableError when retries run out or a breaker is OPEN; any other
        error is raised unchanged after the first attempt.
        """
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.retry_attempts),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.settings.retry_initial_delay_s,
                exp_base=self.settings.retry_multiplier,
                max=self.settings.retry_max_delay_s,
                jitter=self.settings.retry_initial_delay_s,
            ),
            # a lost Spark session is renewed by the next attempt (ingest.py: live_session)
            retry=tenacity.retry_if_exception(
                lambda exc: is_transient_postgres(exc) or is_session_lost(exc)
            ),
            before_sleep=functools.partial(self._before_sleep, what),
            reraise=True,
        )
        postgres, spark = self.breakers[POSTGRES], self.breakers[SPARK]
        try:
            return retrying(postgres.call, spark.call, attempt)
        except pybreaker.CircuitBreakerError as exc:
            # the call that trips the breaker carries the outage's error; later ones do not
            cause = exc.__context__
            last = f"; last error: {describe_error(cause)}" if cause is not None else ""
            raise DependencyUnavailableError(
                f"{what}: circuit breaker OPEN ({self._open_names()}), failing fast for up to "
                f"{self.settings.breaker_reset_timeout_s:g} s{last}"
            ) from exc
        except Exception as exc:
            if is_transient_postgres(exc):
                raise DependencyUnavailableError(
                    f"{what}: PostgreSQL unreachable after {self.settings.retry_attempts} "
                    f"attempt(s): {describe_error(exc)}"
                ) from exc
            if is_transient_spark(exc):
                raise DependencyUnavailableError(
                    f"{what}: Spark Connect server unreachable: {describe_error(exc)}"
                ) from exc
            raise

    def _before_sleep(self, what: str, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        if self._log is not None and state.outcome is not None and state.next_action is not None:
            self._log.warning(
                f"{what}: attempt {state.attempt_number} failed "
                f"({describe_error(state.outcome.exception())}); retrying in "
                f"{state.next_action.sleep:.2f} s"
            )

    def _open_names(self) -> str:
        return ", ".join(name for name, state in self.states().items() if state != "CLOSED")


def _state_name(state: str) -> str:
    """pybreaker's "half-open" as the issue and the UI spell it: HALF_OPEN."""
    return state.upper().replace("-", "_")


def _is_not(predicate: Callable[[BaseException], bool], exc: BaseException) -> bool:
    return not predicate(exc)


def describe_error(exc: BaseException | None) -> str:
    """`Type: first line of the message`, short enough for a log line or a ledger column.

    Redacted before it is cut: psycopg quotes a malformed URL whole, and a cut through its
    userinfo would leave a password that no longer looks like one. Every error the pipeline
    logs, stores in the ledger or shows in the UI is worded here.
    """
    text = redact(str(exc)).strip() or type(exc).__name__
    grpc = _GRPC_DETAILS.search(text)  # gRPC errors start with a line that says nothing
    line = f"{grpc['status']}: {grpc['details']}" if grpc else text.splitlines()[0]
    worker = _worker_error(text)
    if worker is not None:  # a task's exception: the traceback's last error line says what
        line = worker
    return f"{type(exc).__name__}: {line[:300]}"


def _worker_error(text: str) -> str | None:
    """The last exception line of a Python worker's traceback inside a Spark error, if any."""
    if "exception was thrown from the Python worker" not in text:
        return None
    found = None
    for line in text.splitlines()[1:]:
        match = _WORKER_ERROR.match(line.strip())
        if match:
            found = f"{match['type']}:{match['rest']}".rstrip(":")
    return found


_GUARDS: dict[str, Guard] = {}


def guard_for(settings: ReliabilitySettings) -> Guard:
    """The process's guard for these settings: breakers must outlive one batch and one attempt."""
    key = settings.model_dump_json()
    if key not in _GUARDS:
        _GUARDS[key] = Guard(settings)
    return _GUARDS[key]
