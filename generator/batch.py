"""One file's rows and their ground truth: valid events, late events and injected anomalies.

Each row is, independently, an anomaly with probability anomaly_rate, a late (otherwise valid)
event with probability late_rate, else a valid on-time event; both rates are shares of all
rows (if they add up to more than 1, late events get what is left). Anomaly kinds are drawn
uniformly from the kinds the file's schema version can carry (and, for copies, that have a row
to copy).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from generator.anomalies import KINDS, AnomalyKind, Defect, Limits
from generator.clock import US, EventTimeFormat
from generator.model import EventModel

HISTORY_SIZE = 1000
"""Valid rows of earlier files kept as candidates for replays."""
HISTORY_PER_FILE = 20
"""Rows of each file added to that history."""
LATE_EXTRA_S = (60, 3 * 3600)
"""Late events are this many seconds older than the late watermark (uniform)."""


@dataclass
class Batch:
    """Rows (full v3 width) and the truth about every row that is not a valid on-time event."""

    rows: list[list[str]]
    lines: list[dict[str, Any]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    late: int = 0

    def truth(self) -> dict[str, Any]:
        """Counts and per-line entries; lines not listed are valid, on time, new and clean.

        A line's ``codes`` are its errors (a dead letter), its ``warnings`` what a stored row
        carries, as the contract in force judges the code; warnings on catalogue rules assume
        the demo catalogue is loaded (as `ecom up` does when it starts the generator).
        """
        codes = Counter(code for line in self.lines for code in line["codes"])
        warnings = Counter(code for line in self.lines for code in line["warnings"])
        invalid = sum(1 for line in self.lines if line["codes"])
        replayed = self.kinds["replayed"]
        return {
            "rows": len(self.rows),
            "invalid": invalid,
            "warned": sum(1 for line in self.lines if line["warnings"]),
            "replayed": replayed,
            "late": self.late,
            "valid_new": len(self.rows) - invalid - replayed,
            "codes": dict(sorted(codes.items())),
            "warnings": dict(sorted(warnings.items())),
            "lines": self.lines,
        }


class BatchBuilder:
    """Builds successive files; remembers rows of written files so later files can replay them."""

    def __init__(
        self,
        model: EventModel,
        rng: random.Random,
        limits: Limits,
        anomaly_rate: float,
        late_rate: float,
    ) -> None:
        self._model = model
        self._rng = rng
        self._limits = limits
        self._anomaly_rate = anomaly_rate
        self._late_bound = anomaly_rate + late_rate
        self._history: list[tuple[list[str], int]] = []
        self._pending: list[tuple[list[str], int]] = []
        self._format_time = EventTimeFormat()

    def build(self, count: int, width: int, start_us: int, now_us: int) -> Batch:
        """`count` rows for a file stamped `now_us`; on-time events fall in (start_us, now_us]."""
        rng = self._rng
        random_ = rng.random
        model_row = self._model.row
        kinds = [kind for kind in KINDS if width >= kind.min_width]
        defect = Defect(rng, self._limits, now_us, self._format_time, width)
        span = max(now_us - start_us, 0)
        step = max(span // count, 1)
        originals: list[tuple[list[str], int]] = []
        batch = Batch(rows=[])
        rows = batch.rows
        for index in range(count):
            at_us = now_us - span + (index * span) // count + int(random_() * step)
            at_us = min(at_us, now_us)
            draw = random_()
            if draw >= self._late_bound:
                row = model_row(at_us)
                originals.append((row, at_us))
            elif draw < self._anomaly_rate:
                row = self._anomaly(kinds, originals, at_us, defect, batch, index + 1)
            else:
                row = self._late(now_us)
                batch.late += 1
                batch.lines.append(_line(index + 1, "late", None, "off", late=True))
            rows.append(row)
        self._pending = originals
        return batch

    def _late(self, now_us: int) -> list[str]:
        extra_s = self._rng.uniform(*LATE_EXTRA_S)
        return self._model.late_row(now_us - int((self._limits.late_watermark_s + extra_s) * US))

    def _anomaly(
        self,
        kinds: list[AnomalyKind],
        originals: list[tuple[list[str], int]],
        at_us: int,
        defect: Defect,
        batch: Batch,
        line: int,
    ) -> list[str]:
        rng = self._rng
        usable = [
            kind
            for kind in kinds
            if (kind.copies != "file" or originals) and (kind.copies != "history" or self._history)
        ]
        kind = rng.choice(usable)
        late = False
        if kind.copies == "file":
            original, _ = originals.pop(rng.randrange(len(originals)))
            row = list(original)
        elif kind.copies == "history":
            original, original_us = self._history.pop(rng.randrange(len(self._history)))
            row = list(original)
            late = defect.now_us - original_us > self._limits.late_watermark_s * US
            batch.late += late
        elif kind.apply is not None:
            row = self._model.row(at_us, rng.choice(kind.base_types))
            kind.apply(row, defect)
        else:
            raise ValueError(f"anomaly kind {kind.name} neither copies a row nor has a defect")
        batch.kinds[kind.name] += 1
        severity = self._limits.severity(kind.code) if kind.code else "off"
        batch.lines.append(_line(line, kind.name, kind.code, severity, late=late))
        return row

    def remember(self) -> None:
        """Call once the last built file is written: its rows may now be replayed."""
        pending = self._pending
        history = self._history
        for row, at_us in pending[-HISTORY_PER_FILE:]:
            if len(history) < HISTORY_SIZE:
                history.append((row, at_us))
            else:
                history[self._rng.randrange(HISTORY_SIZE)] = (row, at_us)
        self._pending = []


def _line(line: int, kind: str, code: str | None, severity: str, late: bool) -> dict[str, Any]:
    return {
        "line": line,
        "kind": kind,
        "codes": [str(code)] if code and severity == "error" else [],
        "warnings": [str(code)] if code and severity == "warn" else [],
        "replayed": kind == "replayed",
        "late": late,
    }
