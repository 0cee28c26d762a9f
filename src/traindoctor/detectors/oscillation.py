"""oscillation: the loss swings from point to point by more than the run ever gained.

Healthy minibatch noise is small next to the trend: a loss that falls from 2.3 to 0.1 moves by a
few hundredths between steps. When the typical step-to-step swing is a large part of the whole
net progress, and a large part of the loss itself, the optimiser is bouncing across a valley
instead of descending it: the classic sign of a learning rate too high (Goodfellow et al.,
Deep Learning, 2016, sec. 8.5; LeCun et al., Efficient BackProp, 1998, sec. 4.6).
"""

from __future__ import annotations

import numpy as np

from ..finding import Finding, Fix
from ..history import RunHistory
from ..registry import detector
from ._sources import GOYAL, ROUSSEEUW
from ._util import finite_or_skip, fmt, lr_value_at, rolling_median, sig, smooth_window, xval


@detector("oscillation", requires=(("train_loss", "val_loss"),))
def oscillation(
    history: RunHistory,
    *,
    # swing / net progress: noise half as large as everything the run gained drowns the trend.
    ratio_threshold: float = 0.5,
    # swing / loss level: minibatch noise around a plateau is a few % of the loss; 15% is not noise.
    level_fraction: float = 0.15,
    # Up-and-down, not a trend: independent noise flips the direction of 2/3 of the steps; a
    # curve that only rises or only falls flips almost none.
    min_alternation: float = 0.4,
    min_points: int = 20,
):
    """The loss swings from point to point by more than its net progress (LR too high)."""
    raw = history.primary("train_loss") or history.primary("val_loss")
    s, skip = finite_or_skip("oscillation", raw, min_points)
    if s is None or skip is not None:  # no series (a direct call): nothing; too short: say so
        yield from [skip] if skip else []
        return
    n = len(s)
    v = s.values
    diffs = np.diff(v)
    swing = float(np.median(np.abs(diffs)))
    if swing == 0.0:
        return
    window = smooth_window(n)
    smooth = rolling_median(v, window, edges="symmetric")
    start = float(smooth[0])
    i_best = int(np.argmin(smooth))
    # Where it started: the median of the first half-window of points, not the first point
    # alone, so one low first value (a resumed run logging its first step) does not make a real
    # descent look like no progress.
    start = float(np.median(v[: window // 2 + 1]))
    progress = max(start - float(smooth[i_best]), 0.0)
    level = abs(float(np.median(v[n // 2 :])))
    ratio = swing / progress if progress > 0 else float("inf")
    rel = swing / level if level > 0 else float("inf")
    nz = np.sign(diffs[diffs != 0])
    alternation = float(np.mean(nz[1:] != nz[:-1])) if nz.size > 1 else 0.0
    if not (ratio >= ratio_threshold and rel >= level_fraction and alternation >= min_alternation):
        return
    unit = s.unit
    x = s.x()
    first_x, last_x = xval(x[0]), xval(x[-1])
    ev = {
        "unit": unit,
        "points": n,
        "median_swing": sig(swing),
        "net_progress": sig(progress),
        "start_level": sig(start),
        "best_smoothed": sig(smooth[i_best]),
        "swing_to_progress": sig(ratio) if np.isfinite(ratio) else "inf",
        "late_level": sig(level),
        "swing_to_level": sig(rel) if np.isfinite(rel) else "inf",
        "sign_alternation": sig(alternation),
        "smoothing_window": window,
        "thresholds": {"ratio_threshold": ratio_threshold, "level_fraction": level_fraction,
                       "min_alternation": min_alternation, "min_points": min_points},
    }
    lr_now = lr_value_at(history, float(s.steps[-1]))
    if lr_now is not None:
        ev["lr_final"] = sig(lr_now)
    prog_txt = (f"the whole net progress of the smoothed curve was {fmt(progress)} "
                f"(from {fmt(start)} to {fmt(smooth[i_best])})" if progress > 0
                else f"the smoothed curve never went below its start ({fmt(start)})")
    title = (f"{raw.name} oscillates: a typical step-to-step swing of {fmt(swing)} against a net "
             f"progress of {fmt(progress)}")
    explanation = (
        f"Between consecutive points {raw.name} moves by {fmt(swing)} (median), while {prog_txt}; "
        f"the swing is {fmt(rel)}x of the loss level in the second half ({fmt(level)}). "
        "Noise this large against the trend means the updates overshoot: the optimiser bounces "
        "between the walls of the loss valley instead of going down it, which is what a learning "
        "rate that is too high (or a batch that is too small for it) looks like."
    )
    lr_txt = f" (now {fmt(lr_now)})" if lr_now is not None else ""
    fixes = [
        Fix(f"Lower the learning rate{lr_txt} by 3-10x",
            "smaller steps stop the overshoot; the trend then dominates the noise",
            "optimizer = torch.optim.SGD(model.parameters(), lr=lr / 5, momentum=0.9)"),
        Fix("Use a larger batch (or gradient accumulation)",
            "gradient noise shrinks with the square root of the batch size", None),
        Fix("Decay the learning rate over the run",
            "a cosine or step schedule keeps early speed and removes late bouncing",
            "torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)"),
    ]
    yield Finding("oscillation", "warning", title, raw.name, ev, (first_x, last_x),
                  explanation, fixes)


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "oscillation": {
        "summary": "step-to-step noise large against the trend",
        "meaning": "The loss moves up and down far more than it moves down overall: the LR is high "
                   "for the batch size, or the batch is too small for a stable gradient estimate.",
        "detection": "The median step-to-step swing against the net progress of the smoothed curve "
                     "(from the median of its first points to its best) and against the loss level, "
                     "with the swings alternating in sign.",
        "fixes": ["Lower the LR or raise the batch size", "Use LR decay"],
        "sources": [ROUSSEEUW, GOYAL],
    },
}
