"""From files' bytes to routed rows: the per-row work of a staging task, on Arrow.

Spark hands each task its share of a batch's files as Arrow record batches of (source_file,
content); ``FileRows`` turns one such batch into ``route.routed`` rows: read and migrate
(event_reader), validate, enrich, route. It is built on the driver and pickled into the task
with everything the rows need: each file's header and arrival, and the run's rules and clock,
the same for every row of a batch. Why Arrow and not Spark SQL: docs/decisions.md 37.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from ecom_assets.resources.event_reader import ReadableFile, latest_events
from ecom_assets.settings import QualitySettings
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import routed
from ecom_assets.transforms.validate import ValidationRules, validate_events


@dataclass(frozen=True)
class FileRows:
    """What a task needs to route the rows of a batch's files."""

    files: Mapping[str, ReadableFile]
    """The batch's files by name, as ``file_contents`` names them."""
    rules: ValidationRules
    late_watermark_s: int

    @classmethod
    def of(cls, files: list[ReadableFile], quality: QualitySettings, now: datetime) -> FileRows:
        """The rows of ``files`` under the run's quality settings, at ``now`` for every row."""
        rules = ValidationRules.from_settings(quality, now)
        return cls({file.path.name: file for file in files}, rules, quality.late_watermark_s)

    def routed(self, contents: pa.RecordBatch) -> pa.Table:
        """``route.routed`` rows of the files in ``contents`` (source_file, content)."""
        names = contents.column("source_file").to_pylist()
        data = contents.column("content").to_pylist()
        files = [self.files[name] for name in names]
        events = latest_events(zip(files, data, strict=True))
        return routed(
            enrich_events(
                validate_events(events, self.rules),
                late_watermark_s=self.late_watermark_s,
                processed_at=self.rules.now,
            )
        )
