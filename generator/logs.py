"""Logging of the generator process: `data_generator_YYYYMMDD.log` in the log directory, and
stderr, in the line format the pipeline's log files share (ecom_assets.monitoring.logs)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ecom_assets.monitoring.logs import file_logger

LOGGER_NAME = "generator"
LOG_PREFIX = "data_generator"


def setup_logging(log_dir: Path, level: int = logging.INFO) -> logging.Logger:
    """The generator's logger, writing to the daily file and to stderr (replacing old handlers).

    Raises OSError when the log directory or file cannot be created.
    """
    return file_logger(
        LOGGER_NAME, log_dir, LOG_PREFIX, logging.StreamHandler(sys.stderr), level=level
    )
