"""LiveDiagnosis: the curve detectors on a growing run, at a bounded cost, each finding said once.

Both ways of watching a run (the in-process recorder and `traindoctor watch PATH`) hold a
RunHistory that grows, and want to hear about a new finding soon after it appears, without
paying for a full diagnose on every step. Two budgets decide when the detectors run again:

- growth: a re-run is worth it once the run has grown by a share `growth` of what was last
  diagnosed (or by `min_points` points while it is short). The work of re-running on n points
  is O(n), so re-running at geometric sizes costs O(n / growth) in all: with growth = 0.05,
  about 20 full diagnoses over a whole run, however long it is.
- duty: the detectors may take at most a share `duty` of wall time. After a run that took t
  seconds the next waits at least t / duty seconds (1 % by default: 10 ms of detectors buys a
  second of training untouched). That is what keeps the recorder's overhead near zero on a
  fast loop, where growth alone would re-run every few steps.

A finding is "new" when its (code, metric) pair has not been reported, or when its severity
rose above what was reported for that pair. Findings explained by another (`explained_by`) are
reported with their cause, not on their own.

Some checks speak of how a run *ended* (`slow_convergence`: "still falling steeply when the run
ended"); on a run that is still going they would fire on every healthy run's early steps, so
they run only on the final update (`update(history, final=True)`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .finding import Finding, Report
from .history import RunHistory

__all__ = ["LiveDiagnosis", "END_OF_RUN_CODES"]

# Checks whose question is "how did the run end?": not asked of a run that is still going.
END_OF_RUN_CODES = ("slow_convergence",)


class LiveDiagnosis:
    """Re-runs the curve detectors on a growing RunHistory at bounded cost; each finding reported once.

    >>> live = LiveDiagnosis()
    >>> for new in live.update(history):        # call as often as you like: cheap when not due
    ...     print(new.title)
    """

    def __init__(
        self,
        *,
        only: Iterable[str] | None = None,
        ignore: Iterable[str] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        duty: float = 0.01,
        growth: float = 0.05,
        min_points: int = 1,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] | None = None,
    ) -> None:
        if not 0 < duty <= 1:
            raise ValueError(f"duty must be in (0, 1]; got {duty}")
        if growth < 0:
            raise ValueError(f"growth must be >= 0; got {growth}")
        self.only = tuple(only or ())
        self.ignore = tuple(ignore or ())
        self.params = dict(params or {})
        self.duty = duty
        self.growth = growth
        self.min_points = max(1, int(min_points))
        self.clock = clock
        # what a pass costs, by this clock (default: `clock`); `traindoctor watch`, a process of
        # its own, passes time.process_time so that a busy machine's wall time does not count
        self.cpu = cpu or clock
        self.seen: list[Finding] = []
        self.report: Report | None = None  # the latest full report
        self.runs = 0  # how many times the detectors ran
        self.seconds = 0.0  # and how long they took in all
        self._reported: dict[tuple[str, str | None], int] = {}  # (code, metric) -> severity rank
        self._points_at_last = 0
        self._next_time = float("-inf")

    # -- when ---------------------------------------------------------------------------------
    def due(self, points: int | None = None) -> bool:
        """Cheap: would `update` re-run the detectors now? `points`: the run's point count, if known."""
        if self.clock() < self._next_time:
            return False
        if points is None:
            return True
        grown = points - self._points_at_last
        return grown >= max(self.min_points, self.growth * self._points_at_last)

    # -- what ---------------------------------------------------------------------------------
    def update(self, history: RunHistory, *, force: bool = False, final: bool = False) -> list[Finding]:
        """Findings that are new since the last call (empty when it is not due yet).

        `final=True`: the run has ended; the detectors run whatever the budgets say, end-of-run
        checks included, and `self.report` is the run's whole report.
        """
        if not (force or final) and not self.due(_points(history)):
            return []
        from .engine import diagnose

        ignore = set(self.ignore) | (set() if final else set(END_OF_RUN_CODES))
        c0 = self.cpu()
        report = diagnose(history, only=self.only or None, ignore=ignore or None,
                          params=self.params or None)
        spent = max(self.cpu() - c0, 0.0)
        self.runs += 1
        self.seconds += spent
        self.report = report
        self._points_at_last = _points(history)
        self._next_time = self.clock() + spent / self.duty
        return self._new(report.findings)

    def _new(self, findings: Iterable[Finding]) -> list[Finding]:
        new = []
        for f in findings:
            if getattr(f, "explained_by", None):
                continue  # said with its cause
            key = (f.code, f.metric)
            if self._reported.get(key, -1) >= f.severity.rank:
                continue
            self._reported[key] = f.severity.rank
            new.append(f)
        self.seen.extend(new)
        return new


def _points(history: RunHistory) -> int:
    return sum(len(s) for s in history.series.values())
