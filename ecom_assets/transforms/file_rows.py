"""From files to routed rows: the per-row work of a staging task, on Arrow.

Spark hands each task its share of a batch's file names (``event_reader.file_names``);
``FileRows`` reads those files a chunk at a time and turns each chunk into ``route.routed``
rows: parse and migrate (event_reader), validate, enrich, route. It is built on the driver and
pickled into the task with everything the rows need: each file's path, header and arrival, and
the run's contract, catalogue and clock, the same for every row of a batch. Why Arrow and not
Spark SQL: docs/decisions.md 37.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import pyarrow as pa

from ecom_assets.resources.event_reader import ReadableFile, latest_events
from ecom_assets.schema.catalogue import Catalogue
from ecom_assets.schema.contract import Contract
from ecom_assets.settings import QualitySettings
from ecom_assets.transforms.enrich import enrich_events
from ecom_assets.transforms.route import routed
from ecom_assets.transforms.validate import ValidationRules, validate_events

CHUNK_BYTES = 16 << 20
"""Bytes of files a task reads and routes at once: this bounds its worker's memory, and stays
large because a kernel's cost is per call (small chunks of small files would cost more).

A file is never split, so a chunk holds less than CHUNK_BYTES plus its largest file, and the
scan refuses a file above ``ECOM_INGEST_MAX_FILE_MB`` (schema/file_checks.size_problem). Routing
a chunk took about 20 times its size of memory (peak RSS of one process routing one v3 file:
8 MB +210 MB, 32 MB +666 MB, 128 MB +2,469 MB over a 180 MB base), so a worker's peak is
about 180 MB + 20 x (CHUNK_BYTES + ECOM_INGEST_MAX_FILE_MB): 1.8 GB at the default 64, per
task running at once (``local[2]``: two)."""


@dataclass(frozen=True)
class FileRows:
    """What a task needs to route the rows of a batch's files."""

    files: Mapping[str, ReadableFile]
    """The batch's files by name, with absolute paths: a task's working directory is Spark's."""
    rules: ValidationRules
    late_watermark_s: int

    @classmethod
    def of(
        cls,
        files: list[ReadableFile],
        contract: Contract,
        catalogue: Catalogue | None,
        quality: QualitySettings,
        now: datetime,
    ) -> FileRows:
        """The rows of ``files`` under the contract and catalogue in force, at ``now``."""
        rules = ValidationRules(now, contract, catalogue)
        by_name = {file.path.name: replace(file, path=file.path.absolute()) for file in files}
        return cls(by_name, rules, quality.late_watermark_s)

    def chunks(self, names: Iterable[str]) -> Iterator[list[ReadableFile]]:
        """The named files in chunks of about CHUNK_BYTES (a large file alone)."""
        chunk: list[ReadableFile] = []
        size = 0
        for name in names:
            file = self.files[name]
            chunk.append(file)
            size += file.path.stat().st_size
            if size >= CHUNK_BYTES:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk

    def routed(self, files: Iterable[ReadableFile]) -> pa.Table:
        """``route.routed`` rows of ``files`` (one of ``chunks``), read now."""
        events = latest_events((file, file.read()) for file in files)
        return routed(
            enrich_events(validate_events(events, self.rules), self.rules, self.late_watermark_s)
        )
