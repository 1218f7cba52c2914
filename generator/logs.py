"""Logging of the generator process: a daily file in the log directory, and stderr.

Lines read `2026-01-29 10:30:20 | INFO     | message` (UTC, level padded to 8), the format the
pipeline's log files share. The file is `data_generator_YYYYMMDD.log` for the UTC date of each
line, so a process running past midnight continues in the next day's file.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

LOGGER_NAME = "generator"
LINE_FORMAT = "%(asctime)s | %(levelname)-8s | %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def log_file(log_dir: Path, epoch_s: float) -> Path:
    return log_dir / f"data_generator_{time.strftime('%Y%m%d', time.gmtime(epoch_s))}.log"


class DailyFileHandler(logging.FileHandler):
    """A FileHandler that moves to the next day's file when the UTC date changes."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        super().__init__(log_file(log_dir, time.time()), encoding="utf-8", delay=False)

    def emit(self, record: logging.LogRecord) -> None:
        path = os.path.abspath(log_file(self._log_dir, record.created))
        if path != self.baseFilename:
            self.baseFilename = path
            previous = self.setStream(self._open())
            if previous is not None:
                previous.close()
        super().emit(record)


def formatter() -> logging.Formatter:
    fmt = logging.Formatter(LINE_FORMAT, DATE_FORMAT)
    fmt.converter = time.gmtime
    return fmt


def setup_logging(log_dir: Path, level: int = logging.INFO) -> logging.Logger:
    """The generator's logger, writing to the daily file and to stderr (replacing old handlers).

    Raises OSError when the log directory or file cannot be created.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in (DailyFileHandler(log_dir), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(formatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
