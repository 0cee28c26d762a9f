"""loss_constant: a loss exactly or almost exactly constant over many steps while others move.

A loss that does not move at all is not "slow": no gradient reaches it (a head cut off from
the graph, a detached tensor), the loss is saturated (GIoU of non-overlapping boxes is stuck at
1, seed 001), or the optimizer never steps. Every loss series is checked, not only the main one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..finding import Finding, Fix, Skip
from ..history import RunHistory, Series
from ..registry import detector
from ._util import fmt, sig, xval

LOSS_ROLES = ("train_loss", "val_loss", "test_loss")


def longest_flat_run(values: np.ndarray, rel_tol: float, abs_tol: float) -> tuple[int, int]:
    """(start, end) indices, end exclusive, of the longest stretch whose values all stay within
    tol of the stretch's first value. O(n), anchored greedy scan."""
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    rel = rel_tol * np.abs(v)
    tol = np.where(rel > abs_tol, rel, abs_tol)  # max(abs_tol, rel), keeping abs_tol on a NaN
    # The scan is sequential, but on a noisy loss almost every stretch ends at the very next
    # point: find those anchors vectorised and jump over whole rows of them; scan the other
    # stretches on plain lists (numpy scalar indexing cost seconds per million points), and in
    # numpy chunks once a stretch runs long.
    with np.errstate(invalid="ignore"):
        ends_next = np.zeros(n, dtype=bool)
        ends_next[:-1] = np.abs(v[1:] - v[:-1]) > tol[:-1]
    longer = np.flatnonzero(~ends_next)  # always holds n - 1 when n > 0
    vl, tl, nl = v.tolist(), tol.tolist(), ends_next.tolist()
    best, start = (0, 0), 0
    while start < n:
        if nl[start]:  # a row of one-point stretches: only the first can be the best so far
            if best[1] - best[0] < 1:
                best = (start, start + 1)
            start = int(longer[np.searchsorted(longer, start)])
            continue
        anchor, t = vl[start], tl[start]
        end, stop = start + 1, min(n, start + 64)
        while end < stop and not abs(vl[end] - anchor) > t:
            end += 1
        if end == stop < n:
            end = _first_outside(v, start, t, stop)
        if end - start > best[1] - best[0]:
            best = (start, end)
        start = end
    return best


def _first_outside(v: np.ndarray, anchor: int, tol: float, lo: int) -> int:
    """The first index >= lo whose value leaves v[anchor] +- tol, or v.size."""
    size = 256
    with np.errstate(invalid="ignore"):
        while lo < v.size:
            out = np.abs(v[lo : lo + size] - v[anchor]) > tol
            if out.any():
                return lo + int(np.argmax(out))
            lo += size
            size *= 4
    return v.size


def _loss_series(history: RunHistory) -> list[Series]:
    return [s for s in history.series.values() if s.role in LOSS_ROLES]


@detector("loss_constant", requires=(LOSS_ROLES,))
def loss_constant(
    history: RunHistory,
    *,
    min_points: int = 20,  # "many steps": fewer identical values can be a printing artefact
    min_share: float = 0.2,  # and at least a fifth of the series
    rel_tol: float = 5e-4,  # half of the last digit of a loss printed as "1.000"
    abs_tol: float = 1e-12,
    zero_level: float = 1e-6,  # a loss stuck at ~0 has converged (info), not a broken head
) -> Iterable[Finding | Skip]:
    """A loss series that does not move over many steps (zero gradient, saturation, cut-off head)."""
    main = history.primary("train_loss")
    for s in _loss_series(history):
        f = s.finite()
        v = f.values
        if v.size < min_points:
            if len(s):
                yield Skip("loss_constant", f"{s.name} has {v.size} finite points; needs {min_points}")
            continue
        a, b = longest_flat_run(v, rel_tol, abs_tol)
        length = b - a
        if length < min_points or length < min_share * v.size:
            continue
        unit = f.unit
        x = f.x(unit)
        seg_steps = f.steps[a:b]
        level = float(np.median(v[a:b]))
        spread = float(np.ptp(v[a:b]))
        moving = _others_moving(history, s, seg_steps[0], seg_steps[-1], rel_tol, abs_tol)
        is_main = main is not None and s.name == main.name
        at_zero = abs(level) <= zero_level
        severity = "info" if at_zero else ("error" if is_main else "warning")
        ev = {
            "unit": unit,
            f"first_{unit}": xval(x[a]), f"last_{unit}": xval(x[b - 1]),
            "points": length, "series_points": int(v.size), "share": sig(length / v.size, 3),
            "value": sig(level), "spread": sig(spread), "main_loss": is_main,
            "others_moving": moving[:10],
            "thresholds": {"min_points": min_points, "min_share": min_share, "rel_tol": rel_tol,
                           "abs_tol": abs_tol, "zero_level": zero_level},
        }
        if at_zero:
            title = f"{s.name} sits at {fmt(level)} for {length} points: it has nothing left to learn"
            expl = (f"{s.name} stayed at {fmt(level)} (spread {fmt(spread)}) for {length} points. "
                    "A loss of zero gives no gradient; this is usually convergence on training data.")
            fixes = [Fix("Check the validation metrics rather than this loss",
                         "a zero training loss says nothing about generalisation", None)]
        else:
            others = (f" while {', '.join(moving[:3])} moved" if moving else "")
            title = (f"{s.name} is stuck at {fmt(level)} for {length} points "
                     f"({unit}s {xval(x[a])}-{xval(x[b - 1])}){others}")
            expl = (f"{s.name} stayed within {fmt(spread)} of {fmt(level)} for {length} of its "
                    f"{v.size} points{others}. A loss that does not move at all means no useful "
                    "gradient reaches what it measures: the loss is saturated (e.g. GIoU of boxes that "
                    "never overlap is stuck near 1), the head is cut off from the graph (detach, "
                    "no_grad, a parameter missing from the optimizer), or its output is clamped.")
            fixes = [
                Fix(f"Check that the parameters behind {s.name} get a non-zero gradient",
                    "a cut-off or saturated head gives exactly zero gradient",
                    "for n, p in model.named_parameters():\n"
                    "    print(n, None if p.grad is None else p.grad.norm().item())"),
                Fix("If the loss saturates (IoU-type loss on non-overlapping boxes, a clamped "
                    "output), switch to one with a gradient there (DIoU/CIoU, add an L1 term)",
                    "a flat loss surface gives the optimizer nothing to follow", None),
                Fix("Run traindoctor.probe(model, batch, loss_fn=...) to find dead parameters",
                    "it names modules with no or all-zero gradient", None),
            ]
        yield Finding("loss_constant", severity, title, metric=s.name, evidence=ev,
                      steps=(xval(x[a]), xval(x[b - 1])), explanation=expl, fixes=fixes)


def _others_moving(history: RunHistory, s: Series, lo: float, hi: float, rel_tol, abs_tol) -> list[str]:
    out = []
    for o in history.series.values():
        if o.name == s.name or o.role in ("epoch", "time", "lr") or len(o) == 0:
            continue
        m = (o.steps >= lo) & (o.steps <= hi) & np.isfinite(o.values)
        if m.sum() < 2:
            continue
        seg = o.values[m]
        if np.ptp(seg) > max(abs_tol, rel_tol * float(np.median(np.abs(seg)))):
            out.append(o.name)
    return sorted(out)

