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
from ._sources import DIOU, KARPATHY
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


def significant_digits(x: float) -> int:
    """Significant digits a logged value carries: 3.3540122509002686 -> 17, 10.3735 -> 6,
    1.0 -> 1, 0.0 -> 0. A value with many digits repeats by chance only if nothing moves."""
    text = f"{abs(float(x)):.17g}".split("e")[0].replace(".", "").lstrip("0").rstrip("0")
    return len(text)


def _task_metric_learned(history: RunHistory) -> bool:
    """True when an accuracy-like series of the run improved from its first value by more than
    10% of its first error (1 - acc): the model learned its task, whatever one loss term says."""
    from ._util import accuracy_scale

    for s in history.series.values():
        if s.kind != "accuracy":
            continue
        v = s.finite().values
        if v.size < 3:
            continue
        top = accuracy_scale(v)
        first, best = float(v[0]), float(np.max(v))
        if top - first > 0 and (best - first) > 0.1 * (top - first):
            return True
    return False


@detector("loss_constant", requires=((*LOSS_ROLES, "train_accuracy", "val_accuracy", "test_accuracy"),))
def loss_constant(
    history: RunHistory,
    *,
    min_points: int = 20,  # "many steps": fewer identical printed values can be a rounding artefact
    min_share: float = 0.2,  # and at least a fifth of the series
    # Bitwise-identical values carrying >= 4 significant digits (10.3735, 3.3540122509002686)
    # cannot repeat by chance while anything moves: 5 in a row is enough. A value printed with
    # fewer digits ("1.000") repeats whenever the noise is below the print resolution.
    min_exact: int = 5,
    exact_digits: int = 4,
    rel_tol: float = 5e-4,  # half of the last digit of a loss printed as "1.000"
    abs_tol: float = 1e-12,
    zero_level: float = 1e-6,  # a loss that fell to ~0 has converged (info), not a broken head
) -> Iterable[Finding | Skip]:
    """A loss or score that does not move over many steps (zero gradient, saturation, cut-off
    head, a loss never computed, a metric that never detects anything)."""
    learned = None
    for s in _loss_series(history) + _score_series(history):
        f = s.finite()
        v = f.values
        if v.size < min_exact:
            if len(s):
                yield Skip("loss_constant", f"{s.name} has {v.size} finite points; needs {min_exact}")
            continue
        a, b = longest_flat_run(v, rel_tol, abs_tol)
        length = b - a
        level = float(np.median(v[a:b]))
        spread = float(np.ptp(v[a:b]))
        exact = spread == 0.0 and (level == 0.0 or significant_digits(level) >= exact_digits)
        need = min_exact if exact else min_points
        if length < need or length < min_share * v.size:
            continue
        at_zero = abs(level) <= zero_level
        is_score = s.kind == "accuracy"
        if is_score and not (at_zero and a == 0 and b == v.size):
            continue  # a score flat at a non-zero level is plateau's to judge (majority class)
        from_start = a == 0
        if at_zero and from_start and learned is None:
            learned = _task_metric_learned(history)
        main = history.primary(s.role)
        is_main = main is not None and s.name == main.name
        if is_score:
            kind = "score_zero"
            severity = "warning"
        elif at_zero and from_start and learned:
            kind = "zero_by_design"  # e.g. the class loss of a single-class detector
            severity = "info"
        elif at_zero and from_start:
            kind = "zero_never_computed"
            severity = "error" if is_main and s.split == "train" else "warning"
        elif at_zero:
            kind = "zero_converged"
            severity = "info"
        else:
            kind = "stuck"
            # the main loss of a split not moving means the whole model does not change
            severity = "error" if is_main else "warning"
        yield _finding(history, s, f, a, b, level, spread, exact, is_main, kind, severity,
                       {"min_points": min_points, "min_share": min_share, "min_exact": min_exact,
                        "exact_digits": exact_digits, "rel_tol": rel_tol, "abs_tol": abs_tol,
                        "zero_level": zero_level}, rel_tol, abs_tol)


def _score_series(history: RunHistory) -> list[Series]:
    return [s for s in history.series.values() if s.kind == "accuracy" and len(s) > 0]


def _finding(history, s, f, a, b, level, spread, exact, is_main, kind, severity, thresholds,
             rel_tol, abs_tol):
    v = f.values
    length = b - a
    unit = f.unit
    x = f.x(unit)
    seg_steps = f.steps[a:b]
    moving = _others_moving(history, s, seg_steps[0], seg_steps[-1], rel_tol, abs_tol)
    ev = {
        "unit": unit,
        f"first_{unit}": xval(x[a]), f"last_{unit}": xval(x[b - 1]),
        "first_step": xval(f.steps[a]), "last_step": xval(f.steps[b - 1]),
        "points": length, "series_points": int(v.size), "share": sig(length / v.size, 3),
        "value": sig(level), "spread": sig(spread), "exact_repeats": exact, "main_loss": is_main,
        "kind": kind, "others_moving": moving[:10], "thresholds": thresholds,
    }
    others = (f" while {', '.join(moving[:3])} moved" if moving else "")
    span = f"{unit}s {xval(x[a])}-{xval(x[b - 1])}"
    if kind == "zero_converged":
        title = f"{s.name} sits at {fmt(level)} for {length} points: it has nothing left to learn"
        expl = (f"{s.name} stayed at {fmt(level)} (spread {fmt(spread)}) for {length} points after "
                "falling to it. A loss of zero gives no gradient; this is usually convergence on "
                "training data.")
        fixes = [Fix("Check the validation metrics rather than this loss",
                     "a zero training loss says nothing about generalisation", None)]
    elif kind == "zero_by_design":
        title = f"{s.name} is 0 at every one of its {length} points: this term is switched off"
        expl = (f"{s.name} was exactly {fmt(level)} from its first point to its last, while the "
                "run's task metrics improved, so the model learned without it: a term that is 0 by "
                "construction (the class loss of a single-class detector, an unused auxiliary "
                "loss).")
        fixes = [Fix(f"Nothing to do if {s.name} is meant to be off",
                     "a loss term that is always 0 contributes no gradient", None)]
    elif kind == "zero_never_computed":
        title = (f"{s.name} is exactly 0 at every one of its {length} points ({span}): it was never "
                 f"computed or has no targets{others}")
        expl = (f"{s.name} was exactly 0 from its first logged point to its last. A model cannot "
                "start converged: a loss that is 0 from the start measures nothing. Either it is "
                "never computed (an evaluation that skips the loss, a metric logged before it is "
                "set), or it has no targets (every label masked, e.g. -100 on all tokens; no box "
                "ever matched to a target, so the box loss sums over nothing). Nothing is learned "
                "from it.")
        fixes = [
            Fix("Check that the targets reach the loss: count the unmasked labels / matched boxes "
                "in one batch", "a loss over zero targets is exactly 0 and gives no gradient",
                "print((labels != -100).sum())  # detection: number of targets per image"),
            Fix(f"Check that {s.name} is computed and logged after it is set",
                "a logger that writes a default 0 looks like a perfect loss", None),
        ]
    elif kind == "score_zero":
        title = (f"{s.name} is exactly 0 at every one of its {length} checks ({span}): nothing was "
                 "ever predicted right")
        expl = (f"{s.name} was exactly 0 at all {length} checks. A score of exactly 0 throughout "
                "means no prediction ever matched a target: the evaluation sees no positives "
                "(labels empty or in the wrong format, class ids off by one) or the model outputs "
                "nothing above the detection threshold.")
        fixes = [
            Fix("Check the evaluation labels: are there targets, in the format and class ids the "
                "metric expects?", "an evaluation with no matching targets scores exactly 0", None),
            Fix("Check the predictions: any outputs above the confidence threshold?",
                "a model that outputs nothing scores exactly 0", None),
        ]
    else:
        title = (f"{s.name} is stuck at {fmt(level)} for {length} points ({span}){others}")
        how = "identical to the last digit" if exact else f"within {fmt(spread)} of {fmt(level)}"
        expl = (f"{s.name} stayed {how} for {length} of its {v.size} points{others}. A loss that "
                "does not move at all means no useful gradient reaches what it measures: the loss "
                "is saturated (e.g. GIoU of boxes that never overlap is stuck near 1), the head is "
                "cut off from the graph (detach, no_grad, a parameter missing from the optimizer), "
                "its output is clamped, or the weights no longer change (a learning rate of 0, "
                "dead units).")
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
    return Finding("loss_constant", severity, title, metric=s.name, evidence=ev,
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


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "loss_constant": {
        "summary": "a loss or score that does not move at all",
        "meaning": "A loss that does not move at all means nothing is being learned: zero "
                   "gradients (a detached graph, a saturated activation, a loss with no slope at "
                   "this point), an optimizer that is never stepped, a learning rate of zero, or "
                   "dead units. A loss exactly 0 from its first point was never computed or has no "
                   "targets (labels all masked, no box matched); a score exactly 0 at every check "
                   "means nothing was ever predicted right.",
        "detection": "The longest stretch within half the last printed digit of its first value: "
                     "20 points (and a fifth of the series), or 5 when the values are bitwise "
                     "identical and carry 4+ significant digits (they cannot repeat by chance). "
                     "The main loss of a split is an error. A loss 0 from the start is info only "
                     "when a task score of the run learned (a term off by design).",
        "fixes": ["Check that optimizer.step() is called and the LR is not zero",
                  "Check gradients reach the parameters (run `traindoctor probe`)",
                  "Check the loss has a slope at this operating point (e.g. GIoU on non-overlapping boxes)",
                  "For a loss or score exactly 0: count the targets that reach the loss and the metric"],
        "sources": [KARPATHY, DIOU],
    },
}
