"""Pieces shared by the renderers: formatting evidence values and picking what to plot.

Renderers never compute new numbers about the run: they print evidence values as they are
(detectors round them) and draw the raw series.
"""

from __future__ import annotations

import math
from typing import Any

SEVERITY_ICON = {"error": "❌", "warning": "⚠️", "info": "ℹ️"}
# evidence keys that are structure, not measurements to list under "key numbers"
_NOT_KEY = {"thresholds", "unit"}


def fmt_value(v: Any) -> str:
    """An evidence value as text, without re-rounding (detectors already rounded it)."""
    if isinstance(v, bool) or v is None:
        return str(v).lower() if isinstance(v, bool) else "null"
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    if isinstance(v, (list, tuple)):
        inner = ", ".join(fmt_value(x) for x in v[:12])
        return f"[{inner}{', …' if len(v) > 12 else ''}]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {fmt_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def key_numbers(finding) -> list[tuple[str, Any]]:
    """Scalar evidence items (the numbers a reader wants first), in the detector's order."""
    return [(k, v) for k, v in finding.evidence.items()
            if k not in _NOT_KEY and not isinstance(v, (list, dict))]


def structured_evidence(finding) -> list[tuple[str, Any]]:
    """Evidence items that are lists or dicts (windows, counterfactual tables, checkpoints)."""
    return [(k, v) for k, v in finding.evidence.items()
            if k not in _NOT_KEY and isinstance(v, (list, dict))]


def thresholds(finding) -> dict:
    t = finding.evidence.get("thresholds")
    return dict(t) if isinstance(t, dict) else {}


def unit_of(finding, series=None) -> str:
    u = finding.evidence.get("unit")
    if u in ("epoch", "step"):
        return u
    return series.unit if series is not None else "step"


def run_name(report) -> str:
    src = report.source or {}
    return str(src.get("run") or src.get("path") or src.get("model") or report.kind)


def plot_series(report, finding):
    """The series to draw for a finding: its metric plus the same kind's other splits
    (train and val together). [] when the report has no history or no such metric."""
    hist = report.history
    if hist is None or not finding.metric or finding.metric not in getattr(hist, "series", {}):
        return []
    main = hist.series[finding.metric]
    out = [main]
    if main.split is not None:
        for split in ("train", "val", "test"):
            if split == main.split:
                continue
            other = hist.primary(f"{split}_{main.kind}")
            if other is not None and other.name != main.name:
                out.append(other)
    return out


def best_point(finding, unit: str) -> tuple[float, float] | None:
    """(x, value) of the best epoch/step, in `unit`, when the evidence names one."""
    ev = finding.evidence
    x = ev.get("best_epoch" if unit == "epoch" else "best_step")
    y = ev.get("best_value")
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return float(x), float(y)
    return None


def severity_counts(reports) -> dict[str, int]:
    counts = {"error": 0, "warning": 0, "info": 0}
    for r in reports:
        for f in r.findings:
            counts[f.severity.value] += 1
    return counts


def sig_text(v: float) -> str:
    """A raw logged value at 4 significant digits, the precision findings quote."""
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}"


def over_time(report, finding, max_rows: int = 9) -> list[tuple[str, str, str]]:
    """A few raw points of the finding's metric, like the seeds' "validation loss over time":
    (x, value, note) for the first and last points, the best point, the window's edges and
    evenly spaced points between. Values are the logged ones; nothing is smoothed."""
    import numpy as np

    hist = report.history
    if hist is None or not finding.metric or finding.metric not in getattr(hist, "series", {}):
        return []
    s = hist.series[finding.metric].normalized()
    unit = unit_of(finding, s)
    if len(s) < 2 or (unit == "epoch" and s.epochs is None):
        return []
    x = np.asarray(s.x(unit), dtype=float)
    v = s.values
    notes: dict[int, list[str]] = {}

    def near(target) -> int:
        return int(np.argmin(np.abs(x - float(target))))

    bp = best_point(finding, unit)
    if bp is not None:
        notes.setdefault(near(bp[0]), []).append("best")
    if finding.steps and all(isinstance(t, (int, float)) for t in finding.steps):
        notes.setdefault(near(finding.steps[0]), []).append("window starts")
        notes.setdefault(near(finding.steps[1]), []).append("window ends")
    picks = set(notes) | {0, len(s) - 1}
    spare = max_rows - len(picks)
    if spare > 0:
        picks |= {int(i) for i in np.linspace(0, len(s) - 1, spare + 2).round()}
    rows = []
    for i in sorted(picks)[: max_rows + 3]:
        xi = x[i]
        xs = str(int(xi)) if float(xi).is_integer() else f"{xi:.4g}"
        rows.append((xs, sig_text(float(v[i])), ", ".join(notes.get(i, []))))
    return rows


def first_thing_to_do(report):
    """(finding, fix): the first fix of the root cause the report leads with (the first
    finding above info that no other finding explains and that has a fix), or None."""
    for f in report.findings:
        if f.explained_by is None and f.severity.value != "info" and f.fixes:
            return f, f.fixes[0]
    return None


def depth_of(report, finding) -> int:
    """0 for a root cause, 1 for what it explains, 2 for what that explains..."""
    from ..finding import cause_of

    depth, f, seen = 0, finding, {id(finding)}
    while True:
        cause = cause_of(f, report.findings)
        if cause is None or id(cause) in seen:
            return depth
        seen.add(id(cause))
        depth, f = depth + 1, cause
