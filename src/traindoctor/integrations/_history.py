"""The run so far, in memory: growing numpy columns that become a RunHistory on demand.

Appending is amortised O(1) (capacity doubles); building the RunHistory copies the filled part,
which LiveDiagnosis asks for only as often as its growth and duty budgets allow.
"""

from __future__ import annotations

import math

import numpy as np

from ..history import RunHistory, Series
from ..readers.traindoctor_run import AXES, FORMAT, role_for

__all__ = ["Columns"]


class _Column:
    __slots__ = ("data", "n")

    def __init__(self) -> None:
        self.data = np.empty((4, 16), dtype=np.float64)  # step, value, epoch, wall time
        self.n = 0

    def add(self, step: float, value: float, epoch: float, wall: float) -> None:
        if self.n == self.data.shape[1]:
            self.data = np.concatenate([self.data, np.empty_like(self.data)], axis=1)
        self.data[:, self.n] = (step, value, epoch, wall)
        self.n += 1


class Columns:
    def __init__(self) -> None:
        self._cols: dict[str, _Column] = {}
        self.points = 0
        self.records = 0

    def __len__(self) -> int:
        """Records (lines) so far."""
        return self.records

    def add(self, record: dict) -> None:
        self.records += 1
        step = float(record["step"])
        epoch = record.get("epoch")
        epoch = math.nan if epoch is None else float(epoch)
        wall = float(record.get("time", math.nan))
        cols = self._cols
        for k, v in record.items():
            if k in AXES or v is None:
                continue
            col = cols.get(k)
            if col is None:
                col = cols[k] = _Column()
            col.add(step, v, epoch, wall)
            self.points += 1

    def last(self, name: str) -> float | None:
        col = self._cols.get(name)
        return None if col is None or col.n == 0 else float(col.data[1, col.n - 1])

    def values(self, name: str) -> np.ndarray:
        col = self._cols.get(name)
        return np.empty(0) if col is None else col.data[1, :col.n]

    def history(self, *, path: str = "", hparams: dict | None = None, notes=()) -> RunHistory:
        series = {}
        for name, col in self._cols.items():
            d = col.data[:, :col.n]
            series[name] = Series(name, d[0].copy(), d[1].copy(), d[2].copy(), d[3].copy(), role_for(name))
        return RunHistory(series, path=path, format=FORMAT, hparams=dict(hparams or {}), notes=tuple(notes))
