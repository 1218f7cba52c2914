"""A staging task's files: read by the task itself, a chunk of bytes at a time."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pytest

from ecom_assets.resources.event_reader import readable_in
from ecom_assets.schema.versions import version_by_name
from ecom_assets.settings import QualitySettings
from ecom_assets.transforms import file_rows
from ecom_assets.transforms.file_rows import FileRows
from ecom_assets_tests.test_transforms_support import DEFAULT_CONTRACT, NOW, event

V3 = version_by_name("v3").column_names


def write(path: Path, events: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, V3)
        writer.writeheader()
        writer.writerows({name: row.get(name, "") for name in V3} for row in events)


def test_files_are_read_in_chunks_of_bytes_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number, name in enumerate(("a.csv", "b.csv", "c.csv")):
        write(tmp_path / name, [event(3 * number + k) for k in range(3)])
    monkeypatch.chdir(tmp_path)
    rows = FileRows.of(readable_in(Path(".")), DEFAULT_CONTRACT, None, QualitySettings(), NOW)
    monkeypatch.chdir(tmp_path.parent)  # a Spark task's working directory is not the driver's
    sizes = {name: (tmp_path / name).stat().st_size for name in ("a.csv", "c.csv")}
    monkeypatch.setattr(file_rows, "CHUNK_BYTES", sum(sizes.values()))

    chunks = list(rows.chunks(["c.csv", "a.csv", "b.csv"]))

    assert [[file.path.name for file in chunk] for chunk in chunks] == [
        ["c.csv", "a.csv"],
        ["b.csv"],
    ]
    table = pa.concat_tables(rows.routed(chunk) for chunk in chunks)
    assert (
        sorted(table.column("source_file").to_pylist())
        == ["a.csv"] * 3 + ["b.csv"] * 3 + ["c.csv"] * 3
    )
    assert table.column("error_codes").to_pylist() == [[]] * 9  # every row valid
