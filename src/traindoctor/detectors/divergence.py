"""divergence: the training loss climbs back up, far above its best, or explodes.

Overfitting (val rising while train falls) is a different finding; this one looks at the
*training* loss only, which an optimiser that works never lets rise for long.

Noise, smoothing and number formatting come from _util, shared with every other detector.
"""

from __future__ import annotations

import numpy as np

from ..finding import Finding, Fix
from ..history import RunHistory
from ..registry import detector
from ._sources import GOYAL, PASCANU, SMITH
from ._util import (
    finite_or_skip,
    fmt,
    lr_value_at,
    robust_noise,
    rolling_median,
    sig,
    smooth_window,
    xval,
)

# -- the detector ------------------------------------------------------------------------------


@detector("divergence", requires=("train_loss",))
def divergence(
    history: RunHistory,
    *,
    # The tail must sit this many noise units above the best smoothed value: 10 sigma is far
    # past anything minibatch noise produces (a 6-sigma event is ~1e-9 for normal noise).
    z_threshold: float = 10.0,
    # ...and have given back at least this fraction of what the run had gained (or of the
    # best value itself when the loss never fell): a loss that rises from 0.001 to 0.003 after
    # falling from 2.3 is not diverging. 0.5 = half the progress lost.
    rise_fraction: float = 0.5,
    # A tail 10x the minimum is an explosion by an order of magnitude.
    explosion_factor: float = 10.0,
    tail_fraction: float = 0.1,
    min_points: int = 6,
):
    """The training loss rose far above its best (a rising trend) or exploded."""
    raw = history.primary("train_loss")
    s, skip = finite_or_skip("divergence", raw, min_points)
    if s is None or skip is not None:  # no series (a direct call): nothing; too short: say so
        yield from [skip] if skip else []
        return
    n = len(s)
    x = s.x()
    v = s.values
    window = smooth_window(n)
    smooth = rolling_median(v, window, edges="symmetric")
    noise = robust_noise(v, window)
    n_tail = max(3, int(round(n * tail_fraction)))
    tail = v[-n_tail:]
    tail_level = float(np.median(tail))
    # The best point must come before the tail: a run whose minimum is in the tail is not rising.
    i_min = int(np.argmin(smooth[: n - n_tail])) if n - n_tail > 0 else 0
    best = float(smooth[i_min])
    rise = tail_level - best
    gained = float(np.max(smooth[: i_min + 1]) - best)
    reference = max(gained, abs(best))
    if reference == 0.0 or rise <= 0:
        return
    # Floor the noise so a perfectly smooth curve cannot turn a tiny rise into "infinite sigma".
    noise_used = max(noise, 1e-3 * reference)
    z = rise / noise_used
    growth = tail_level / best if best > 0 else None
    exploded = growth is not None and growth >= explosion_factor
    if not (z >= z_threshold and (rise >= rise_fraction * reference or exploded)):
        return

    unit = s.unit
    best_x, tail_first, last_x = xval(x[i_min]), xval(x[n - n_tail]), xval(x[-1])
    ev = {
        "unit": unit,
        "best_value": sig(best),
        f"best_{unit}": best_x,
        "tail_median": sig(tail_level),
        "tail_points": n_tail,
        f"tail_first_{unit}": tail_first,
        f"last_{unit}": last_x,
        "rise": sig(rise),
        "progress_before_best": sig(gained),
        "noise": sig(noise),
        "rise_in_noise_units": sig(z),
        "growth_factor": sig(growth) if growth is not None else None,
        "smoothing_window": window,
        "thresholds": {
            "z_threshold": z_threshold,
            "rise_fraction": rise_fraction,
            "explosion_factor": explosion_factor,
            "tail_fraction": tail_fraction,
        },
    }
    lr_at = lr_value_at(history, float(s.steps[i_min]))
    if lr_at is not None:
        ev["lr_at_best"] = sig(lr_at)
    how = (f"exploded to {fmt(growth)}x its best value" if exploded
           else f"rose {fmt(rise)} above its best ({fmt(z)} noise units)")
    title = (f"Training loss diverged: best {fmt(best)} at {unit} {best_x}, "
             f"but the last {n_tail} points have median {fmt(tail_level)}")
    explanation = (
        f"{raw.name} reached {fmt(best)} at {unit} {best_x} and then {how}; the last {n_tail} "
        f"points (from {unit} {tail_first} to {last_x}) have median {fmt(tail_level)}. "
        "A training loss that climbs back up means the optimiser is overshooting: the learning "
        "rate is too high for this model, or gradients blow up on some batches. This is not "
        "overfitting, which shows in the validation loss while the training loss keeps falling."
    )
    lr_txt = f" from {fmt(lr_at)}" if lr_at is not None else ""
    fixes = [
        Fix(f"Lower the learning rate{lr_txt} by 3-10x",
            "an update step too large for the loss surface makes the loss rise instead of fall",
            "optimizer = torch.optim.AdamW(model.parameters(), lr=lr / 10)"),
        Fix("Clip the gradient norm",
            "one bad batch with a huge gradient is enough to throw the weights off",
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"),
        Fix("Add a learning-rate warmup",
            "early steps with large, poorly-estimated gradients are the usual place a run explodes",
            "sched = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=500)"),
    ]
    yield Finding("divergence", "error", title, raw.name, ev, (best_x, last_x), explanation, fixes)


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "divergence": {
        "summary": "the loss trends upwards or explodes",
        "meaning": "Training is unstable: the steps are too large for the curvature of the loss, "
                   "so the loss grows instead of shrinking. Usually the learning rate is too high, "
                   "or there is no warmup or gradient clipping.",
        "detection": "The median of the last tenth of the training loss against its best smoothed "
                     "value before it: 10 noise units above, and half the progress lost or 10x the "
                     "best.",
        "fixes": ["Lower the learning rate (try 3-10x lower)", "Add LR warmup",
                  "Clip gradients: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)"],
        "sources": [SMITH, PASCANU, GOYAL],
    },
}
