"""Daily log files in one line format, shared by the generator and the pipeline.

Lines read `2026-01-29 10:30:20 | INFO     | message` (UTC, level padded to 8). Each process
writes `<prefix>_YYYYMMDD.log` for the UTC date of each line, so a process running past
midnight continues in the next day's file. `Tee` sends the same lines to the Dagster run log,
so the UI and the files tell the same story. Both redact every line (ecom_assets/redaction.py).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Protocol

from ecom_assets.redaction import redact

LINE_FORMAT = "%(asctime)s | %(levelname)-8s | %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
INGEST_LOG_PREFIX = "ingest"


class LogSink(Protocol):
    """What the pipeline logs to: a logging.Logger, Dagster's context.log, or a Tee of them."""

    def info(self, msg: str) -> object: ...
    def warning(self, msg: str) -> object: ...
    def error(self, msg: str) -> object: ...


def log_file(log_dir: Path, prefix: str, epoch_s: float) -> Path:
    return log_dir / f"{prefix}_{time.strftime('%Y%m%d', time.gmtime(epoch_s))}.log"


class DailyFileHandler(logging.FileHandler):
    """A FileHandler that moves to the next day's file when the UTC date changes."""

    def __init__(self, log_dir: Path, prefix: str) -> None:
        self._log_dir = log_dir
        self._prefix = prefix
        super().__init__(log_file(log_dir, prefix, time.time()), encoding="utf-8", delay=False)

    def emit(self, record: logging.LogRecord) -> None:
        path = os.path.abspath(log_file(self._log_dir, self._prefix, record.created))
        if path != self.baseFilename:
            self.baseFilename = path
            previous = self.setStream(self._open())
            if previous is not None:
                previous.close()
        super().emit(record)


class RedactingFormatter(logging.Formatter):
    """Formats a record, then redacts the whole line: the message, its arguments and any
    traceback. Files are the last stop of a log line, so no caller's care is relied on."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def formatter() -> logging.Formatter:
    fmt = RedactingFormatter(LINE_FORMAT, DATE_FORMAT)
    fmt.converter = time.gmtime
    return fmt


def file_logger(
    name: str,
    log_dir: Path,
    prefix: str,
    *extra: logging.Handler,
    level: int = logging.INFO,
) -> logging.Logger:
    """Logger `name` writing to the daily file (and extra handlers), replacing old handlers.

    Raises OSError when the log directory or file cannot be created.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in (DailyFileHandler(log_dir, prefix), *extra):
        handler.setFormatter(formatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def ingest_logger(log_dir: Path) -> logging.Logger:
    """The pipeline's logger: `ingest_YYYYMMDD.log` in the log directory."""
    return file_logger("ecom.ingest", log_dir, INGEST_LOG_PREFIX)


class Tee:
    """Sends every line, redacted, to several sinks, e.g. the ingest log file and the Dagster
    run log (which the UI shows and no formatter of ours touches)."""

    def __init__(self, *sinks: LogSink) -> None:
        self._sinks = sinks

    def info(self, msg: str) -> None:
        for sink in self._sinks:
            sink.info(redact(msg))

    def warning(self, msg: str) -> None:
        for sink in self._sinks:
            sink.warning(redact(msg))

    def error(self, msg: str) -> None:
        for sink in self._sinks:
            sink.error(redact(msg))
