"""divergence: the training loss climbs back up, far above its best, or explodes.

Overfitting (val rising while train falls) is a different finding; this one looks at the
*training* loss only, which an optimiser that works never lets rise for long.

The small numeric helpers at the top are shared by the other part-2 detectors (spikes,
oscillation, lr, metrics, throughput) so that they measure noise the same way.
"""

from __future__ import annotations

import math

import numpy as np

from ..finding import Finding, Fix, Skip
from ..history import RunHistory, Series
from ..registry import detector

# -- shared helpers (plain functions, numpy only) ----------------------------------------------

# 1.4826 * MAD estimates the standard deviation of normal noise (Rousseeuw & Croux 1993).
_MAD_TO_SIGMA = 1.4826


def r4(x) -> float:
    """Round to 4 significant digits: the precision every number in a finding is quoted at."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return x
    return float(f"{x:.4g}")


def fmt(x) -> str:
    """Format a number the way r4 stores it, so text and evidence always agree."""
    x = float(x)
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{r4(x):g}"


def xval(x) -> float | int:
    """A step or epoch number for evidence: an int when it is whole."""
    x = float(x)
    return int(x) if math.isfinite(x) and x == int(x) else r4(x)


def rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median; near the edges the window shrinks symmetrically, so the first
    and last points are their own median (a loss that explodes after step 0 keeps its start)."""
    n = values.size
    half = max(window // 2, 0)
    values = values.astype(float)
    if n == 0 or half == 0:
        return values.copy()
    out = np.empty(n)
    if n > 2 * half:
        windows = np.lib.stride_tricks.sliding_window_view(values, 2 * half + 1)
        out[half : n - half] = np.median(windows, axis=1)
    for i in list(range(min(half, n))) + list(range(max(n - half, half), n)):
        h = min(i, n - 1 - i)
        out[i] = np.median(values[i - h : i + h + 1])
    return out


def trailing_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the `window` points *before* each point (NaN for the first one)."""
    n = values.size
    out = np.full(n, np.nan)
    if n < 2:
        return out
    padded = np.concatenate([np.full(window, np.nan), values.astype(float)])
    windows = np.lib.stride_tricks.sliding_window_view(padded[:-1], window)[:n]
    with np.errstate(all="ignore"):
        valid = np.isfinite(windows).any(axis=1)
        out[valid] = np.nanmedian(windows[valid], axis=1)
    return out


def smooth_window(n: int) -> int:
    """An odd window about a tenth of the run, 3..51 points."""
    w = int(min(51, max(3, n // 10)))
    return w if w % 2 else w + 1


def robust_noise(values: np.ndarray, window: int | None = None) -> float:
    """Point-to-point noise: 1.4826 * MAD of the residual around a running median."""
    if values.size < 3:
        return 0.0
    window = window or smooth_window(values.size)
    resid = values - rolling_median(values, window)
    mad = np.median(np.abs(resid - np.median(resid)))
    return float(_MAD_TO_SIGMA * mad)


def unit_of(s: Series) -> str:
    return s.unit


def loss_series(history: RunHistory, roles=("train_loss",)) -> Series | None:
    for role in roles:
        s = history.primary(role)
        if s is not None:
            return s
    return None


def lr_value_at(history: RunHistory, step: float) -> float | None:
    """The learning rate logged at or just before `step`, when an lr series exists."""
    lr = history.primary("lr")
    if lr is None:
        return None
    lr = lr.finite()
    if len(lr) == 0:
        return None
    i = int(np.searchsorted(lr.steps, step, side="right")) - 1
    return float(lr.values[max(i, 0)])


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
    if raw is None:  # the engine skips this via `requires`; a direct call must not crash
        return
    s = raw.finite()
    n = len(s)
    if n < min_points:
        yield Skip("divergence", f"{raw.name} has {n} finite points; need at least {min_points}")
        return
    x = s.x()
    v = s.values
    window = smooth_window(n)
    smooth = rolling_median(v, window)
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

    unit = unit_of(s)
    best_x, tail_first, last_x = xval(x[i_min]), xval(x[n - n_tail]), xval(x[-1])
    ev = {
        "unit": unit,
        "best_value": r4(best),
        f"best_{unit}": best_x,
        "tail_median": r4(tail_level),
        "tail_points": n_tail,
        f"tail_first_{unit}": tail_first,
        f"last_{unit}": last_x,
        "rise": r4(rise),
        "progress_before_best": r4(gained),
        "noise": r4(noise),
        "rise_in_noise_units": r4(z),
        "growth_factor": r4(growth) if growth is not None else None,
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
        ev["lr_at_best"] = r4(lr_at)
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
