"""Numeric helpers shared by the curve detectors (numpy only, no state, inputs never modified).

Every function takes plain arrays (or a Series) and returns new values; raw values are never
overwritten by smoothed ones (the pytorch-lr-finder lesson). Non-finite values are ignored
wherever a statistic is computed, so a NaN in a crashed run cannot poison a noise estimate.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MAD_TO_SIGMA",
    "sig",
    "finite_xy",
    "mad",
    "diff_noise",
    "residual_noise",
    "noise_scale",
    "robust_z",
    "smooth",
    "rolling_median",
    "row_medians",
    "window_medians",
    "shared_medians",
    "ema",
    "improvement",
    "is_meaningful_improvement",
    "chance_loss",
    "classes_from_accuracy",
    "classes_from_hparams",
    "best_index",
    "linear_slope",
    "fmt",
    "xval",
    "smooth_window",
    "trailing_median",
    "robust_noise",
    "value_at",
    "lr_value_at",
    "accuracy_scale",
    "epoch_curve",
    "finite_or_skip",
]

# 1.4826 * MAD estimates the standard deviation of normally distributed data
# (Rousseeuw & Croux 1993, "Alternatives to the median absolute deviation").
MAD_TO_SIGMA = 1.4826


def sig(x: float, digits: int = 4) -> float:
    """Round to `digits` significant digits (what findings quote), keeping non-finite values."""
    x = float(x)
    if not math.isfinite(x) or x == 0.0:
        return x
    return float(f"{x:.{digits}g}")


def fmt(x: float, digits: int = 4) -> str:
    """The text form of `sig(x)`: use it in titles so they quote exactly the evidence value."""
    x = sig(x, digits)
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{digits}g}"


def xval(x: float) -> int | float:
    """A step or epoch number as findings quote it: an int when whole, else `sig(x)`."""
    x = float(x)
    return int(x) if math.isfinite(x) and x.is_integer() else sig(x)


def finite_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) pairs where both are finite, as new arrays."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def mad(values: np.ndarray) -> float:
    """Median absolute deviation from the median, scaled to a standard deviation (NaN if empty)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def diff_noise(values: np.ndarray) -> float:
    """Point-to-point noise of a curve from the MAD of its first differences.

    For y_t = trend_t + e_t with independent noise e, the difference of two neighbours has
    standard deviation sqrt(2)*sigma; removing the median difference removes a locally linear
    trend, so a smoothly decaying loss does not count as noise. Robust to isolated spikes.
    NaN with fewer than 3 finite points.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 3:
        return float("nan")
    return mad(np.diff(v)) / math.sqrt(2.0)


def rolling_median(values: np.ndarray, window: int, *, edges: str = "shrink") -> np.ndarray:
    """Centred rolling median; NaNs are skipped. A new array.

    Near the ends the window cannot be centred. edges="shrink": it is cut off (the median of
    the points that are there). edges="symmetric": it shrinks on both sides, so the first and
    last points are their own median; a loss that explodes right after step 0 keeps its start
    (what divergence, loss_spikes, lr_schedule and metric_disagreement measure against).
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    window = max(1, int(window))
    if n == 0 or window == 1 or window // 2 == 0:
        return v.copy()
    half = window // 2
    if n > _LONG and 2 * half + 1 >= 2 * _SAMPLES:  # a wide window on a long series: a sampled trend
        return _rolling_median_strided(v, half, symmetric=edges == "symmetric")
    if edges == "symmetric":
        return _rolling_median_symmetric(v, half)
    pad = np.pad(v, (half, half), mode="constant", constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1)
    if n <= 2 * half:
        return row_medians(windows)
    # the windows that do not reach past an end are the series' own sliding medians
    return np.concatenate([row_medians(windows[:half]), window_medians(v, 2 * half + 1),
                           row_medians(windows[n - half :])])


# Rows per block in row_medians: 65536 rows of a 51-point window is ~27 MB of scratch.
_BLOCK = 1 << 16


def row_medians(windows: np.ndarray) -> np.ndarray:
    """`np.nanmedian(windows, axis=1)`, the same numbers, without its cost on long series.

    nanmedian sorts a masked array (seconds on a million windows). Rows without a NaN take the
    median by np.partition, block by block (what np.median does, so the values are identical,
    the middle two averaged for an even width); only the rows holding a NaN (a crashed run's
    tail, the padded edges) go through nanmedian. All-NaN rows give NaN, on purpose.
    """
    import warnings

    rows, width = windows.shape
    out = np.empty(rows)
    k = width // 2
    kth = [k - 1, k] if width % 2 == 0 else [k]
    for lo in range(0, rows, _BLOCK):
        block = np.array(windows[lo : lo + _BLOCK], dtype=np.float64)  # a copy: partition sorts in place
        has_nan = np.isnan(block).any(axis=1)
        block.partition(kth, axis=1)
        med = block[:, k] if width % 2 else (block[:, k - 1] + block[:, k]) / 2.0
        if has_nan.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN
                med[has_nan] = np.nanmedian(windows[lo : lo + _BLOCK][has_nan], axis=1)
        out[lo : lo + med.size] = med
    return out


def _rolling_median_symmetric(v: np.ndarray, half: int) -> np.ndarray:
    import warnings

    n = v.size
    out = np.empty(n)
    if n > 2 * half:
        out[half : n - half] = window_medians(v, 2 * half + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows -> NaN, on purpose
        for i in list(range(min(half, n))) + list(range(max(n - half, half), n)):
            h = min(i, n - 1 - i)
            out[i] = np.nanmedian(v[i - h : i + h + 1])
    return out


def trailing_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the `window` points *before* each point (NaN for the first one)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    out = np.full(n, np.nan)
    if n < 2:
        return out
    padded = np.concatenate([np.full(window, np.nan), v])
    head = min(window, n)  # the first points see fewer than `window` points before them
    out[:head] = row_medians(np.lib.stride_tricks.sliding_window_view(padded[: head + window - 1], window))
    if n > window:  # the window before point i is v[i - window : i]
        out[window:] = window_medians(v, window)[: n - window]
    # a window with no finite value (only NaN/inf) has no level: NaN, not inf
    finite = np.concatenate([[0], np.cumsum(np.isfinite(padded[:-1]))])
    out[(finite[window : window + n] - finite[:n]) == 0] = np.nan
    return out


# Sliding medians already computed in this `shared_medians()` block, by (series digest, width).
# divergence, loss_spikes, oscillation, lr_schedule and metric_disagreement each smooth the same
# training loss with the same window; on a million points each pass costs ~0.2 s.
_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("traindoctor_medians", default=None)


@contextlib.contextmanager
def shared_medians():
    """Within this block, `window_medians` of the same values and width is computed once.

    The memo lives only as long as the block (diagnose opens one per run), is private to the
    thread/context that opened it, and is keyed by a digest of the values: it never changes a
    result, only how often it is computed.
    """
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def window_medians(values: np.ndarray, width: int) -> np.ndarray:
    """The median of every `width` consecutive points (NaNs skipped): n - width + 1 values,
    the first one for values[0:width]. Read-only when shared (see `shared_medians`)."""
    return _shared(("window", width), values,
                   lambda v: row_medians(np.lib.stride_tricks.sliding_window_view(v, width)))


def _shared(what: tuple, values: np.ndarray, compute) -> np.ndarray:
    """compute(values), once per `shared_medians` block for the same values and `what`."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    memo = _SHARED.get()
    if memo is None or v.size < 10_000:  # short series are cheap: no memo
        return compute(v)
    key = (*what, v.size, hashlib.blake2b(memoryview(v).cast("B"), digest_size=16).digest())
    if key not in memo:
        out = compute(v)
        out.flags.writeable = False  # callers share it: a write would corrupt the others
        memo[key] = out
    return memo[key]


def smooth_window(n: int) -> int:
    """An odd window about a tenth of the run, 3..51 points (the step-level detectors' choice;
    `smooth` uses ~5%)."""
    w = int(min(51, max(3, n // 10)))
    return w if w % 2 else w + 1


# How many points of a wide window the trend median samples, and from what length a series is
# long enough for it (below that the exact sliding median is cheap).
_SAMPLES = 31
_LONG = 20000


def _rolling_median_strided(v: np.ndarray, half: int, *, symmetric: bool = False) -> np.ndarray:
    # A trend, not a filter: the median over a centred window sampled at ~31 points, taken at
    # anchor points `step` apart (the samples' own spacing) and joined linearly. Between two
    # anchors the window moves by less than its sampling interval, so the anchors carry all the
    # trend the samples can see; evaluating every row instead was a (n x 31) partition, and
    # with symmetric edges an exact (n x window) one: 17 s and gigabytes of scratch for 100k
    # points and a 5,000-point window.
    # Edges: "shrink" clips the window's indices to the series (edge padding); "symmetric"
    # shrinks it on both sides, so the first and last points are their own median. Anchors are
    # dense where the symmetric window is short, so a loss that explodes right after step 0
    # keeps its start.
    def compute(v):
        n = v.size
        step = max(1, (2 * half + 1) // _SAMPLES)
        grid = np.arange(0, n, step)
        if symmetric:
            dense = np.r_[np.arange(min(n, 2 * _SAMPLES)), np.arange(max(0, n - 2 * _SAMPLES), n)]
            grid = np.r_[grid, dense]
        anchors = np.unique(np.r_[grid, n - 1])
        med = np.empty(anchors.size)
        if symmetric:
            inner = (anchors >= half) & (anchors < n - half)
            windows = np.lib.stride_tricks.sliding_window_view(v, 2 * half + 1)
            med[inner] = row_medians(windows[anchors[inner] - half, ::step])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows -> NaN, on purpose
                for j in np.flatnonzero(~inner):
                    i = int(anchors[j])
                    h = min(i, n - 1 - i)
                    med[j] = np.nanmedian(v[i - h: i + h + 1: max(1, (2 * h + 1) // _SAMPLES)])
        else:
            padded = np.pad(v, (half, half), mode="edge")
            windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
            med = row_medians(windows[anchors, ::step])
        ok = np.isfinite(med)
        if not ok.any():
            return np.full(n, np.nan)
        if anchors.size == n:
            return med
        out = np.interp(np.arange(n), anchors[ok], med[ok])
        if not ok.all():  # a window with nothing finite has no level: NaN, as an exact median says
            nearest = np.minimum(np.searchsorted(anchors, np.arange(n)), anchors.size - 1)
            out[~ok[nearest]] = np.nan
        return out

    return _shared(("strided", half, symmetric), v, compute).copy()


def ema(values: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Exponential moving average (TensorBoard-style, debiased like Adam); NaNs carry forward."""
    v = np.asarray(values, dtype=np.float64)
    out = np.empty_like(v)
    acc, weight = 0.0, 0.0
    for i, x in enumerate(v):
        if math.isfinite(x):
            acc = (1 - alpha) * acc + alpha * x
            weight = (1 - alpha) * weight + alpha
        out[i] = acc / weight if weight > 0 else np.nan
    return out


def smooth(values: np.ndarray, window: int | None = None, *, edges: str = "shrink") -> np.ndarray:
    """A smoothed copy: centred rolling median over ~5% of the points (at least 3, odd)."""
    v = np.asarray(values, dtype=np.float64)
    if window is None:
        window = max(3, (v.size // 20) | 1)
    return rolling_median(v, window, edges=edges)


def residual_noise(values: np.ndarray, window: int | None = None, *, edges: str = "shrink") -> float:
    """Noise as the MAD of the residuals from `smooth(values)` (NaN with < 3 finite points).

    Better than `diff_noise` for curves with strong serial correlation (epoch-level val loss).
    """
    v = np.asarray(values, dtype=np.float64)
    if np.isfinite(v).sum() < 3:
        return float("nan")
    return mad(v - smooth(v, window, edges=edges))


def robust_noise(values: np.ndarray, window: int | None = None) -> float:
    """`residual_noise` around a symmetric-edged running median over `smooth_window(n)`
    points, 0.0 (not NaN) below 3 points: the noise the step-level detectors compare with."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 3:
        return 0.0
    return residual_noise(v, window or smooth_window(v.size), edges="symmetric")


def noise_scale(values: np.ndarray, floor_rel: float = 1e-3) -> float:
    """One robust noise level for thresholds: the larger of `diff_noise` and `residual_noise`,
    floored at `floor_rel` times the median absolute value (so a perfectly smooth synthetic
    curve does not make every wiggle "many sigmas"). NaN with fewer than 3 finite points.
    """
    v = np.asarray(values, dtype=np.float64)
    f = v[np.isfinite(v)]
    if f.size < 3:
        return float("nan")
    candidates = [diff_noise(f), residual_noise(f)]
    level = max((c for c in candidates if math.isfinite(c)), default=0.0)
    floor = floor_rel * float(np.median(np.abs(f)))
    return float(max(level, floor, 1e-12))


def robust_z(values: np.ndarray, center: float | None = None, scale: float | None = None) -> np.ndarray:
    """(values - median) / (1.4826 * MAD), a new array; NaN where values are not finite.

    Pass `center`/`scale` to measure against a reference (e.g. the noise of a quiet window).
    """
    v = np.asarray(values, dtype=np.float64)
    f = v[np.isfinite(v)]
    c = float(np.median(f)) if center is None and f.size else (center if center is not None else 0.0)
    s = mad(f) if scale is None else float(scale)
    if not math.isfinite(s) or s <= 0:
        s = 1e-12
    with np.errstate(all="ignore"):
        return (v - c) / s


def improvement(before: float, after: float, higher_is_better: bool = False) -> float:
    """How much `after` is better than `before` (positive = better), in the metric's units."""
    return (after - before) if higher_is_better else (before - after)


def is_meaningful_improvement(
    before: float,
    after: float,
    noise: float,
    *,
    k: float = 3.0,
    higher_is_better: bool = False,
    rel: float = 0.0,
) -> bool:
    """True when `after` beats `before` by more than `k` noise levels and by more than `rel`
    of |before|. k=3 is the usual three-sigma rule; both thresholds belong in the evidence.
    """
    gain = improvement(before, after, higher_is_better)
    if not (math.isfinite(gain) and math.isfinite(noise)):
        return False
    return gain > k * noise and gain > rel * abs(before)


def chance_loss(n_classes: int) -> float:
    """Cross-entropy of a uniform guess over C classes: ln C (ln 2 = 0.6931 for binary)."""
    if n_classes < 2:
        raise ValueError(f"chance-level loss needs at least 2 classes, got {n_classes}")
    return math.log(n_classes)


def classes_from_accuracy(acc: float, *, tol: float = 0.02, max_classes: int = 1000) -> int | None:
    """The class count C for which an accuracy sits at chance 1/C (within `tol` absolute,
    relative for small 1/C), or None. 0.1 -> 10, 0.5 -> 2. Accuracies may be in [0, 1] or %.
    """
    if not math.isfinite(acc) or acc <= 0:
        return None
    a = acc / 100.0 if acc > 1.0 else acc
    if a >= 1.0:
        return None
    c = int(round(1.0 / a))
    if c < 2 or c > max_classes:
        return None
    chance = 1.0 / c
    # absolute tolerance, tightened for many classes so 0.012 counts as 1/100 but 0.02 does not
    return c if abs(a - chance) <= min(tol, 0.2 * chance) else None


def accuracy_scale(values: np.ndarray) -> float:
    """100 when an accuracy is logged in percent (some values above 1, all within 0..100), else 1."""
    v = np.asarray(values, dtype=np.float64)
    f = v[np.isfinite(v)]
    return 100.0 if f.size and f.max() > 1.0 and f.min() >= 0 and f.max() <= 100 else 1.0


def classes_from_hparams(hparams) -> int | None:
    """A class count named in the run's hparams (num_classes, n_classes, num_labels...)."""
    for key in ("num_classes", "n_classes", "num_labels", "nclasses", "classes", "n_class"):
        val = (hparams or {}).get(key)
        try:
            c = int(val)
        except (TypeError, ValueError):
            continue
        if c >= 2:
            return c
    return None


def best_index(values: np.ndarray, higher_is_better: bool = False) -> int | None:
    """Index of the best finite value (the first one on ties, like EarlyStopping), or None."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    if not ok.any():
        return None
    w = np.where(ok, v if higher_is_better else -v, -np.inf)
    return int(np.argmax(w))


def linear_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of y over x on finite pairs (NaN with < 2 distinct x)."""
    xx, yy = finite_xy(np.asarray(x), np.asarray(y))
    if xx.size < 2 or np.ptp(xx) == 0:
        return float("nan")
    xm = xx - xx.mean()
    return float((xm * (yy - yy.mean())).sum() / (xm * xm).sum())


def value_at(s, step: float) -> float:
    """The value of Series `s` logged at or just before `step` (the first one if none is before)."""
    i = int(np.searchsorted(s.steps, step, side="right")) - 1
    return float(s.values[max(i, 0)])


def lr_value_at(history, step: float) -> float | None:
    """The learning rate logged at or just before `step` (the first one if none is before),
    when the run has an lr series with a finite value."""
    lr = history.primary("lr")
    if lr is None or len(lr.finite()) == 0:
        return None
    return value_at(lr.finite(), step)


def epoch_curve(s, min_points: int):
    """Series `s` with finite values only, averaged per epoch when it was logged several times
    an epoch and that still leaves `min_points` points (one point per epoch or validation)."""
    f = s.finite()
    if f.has_epochs and not f.is_per_epoch:
        pe = f.per_epoch()
        if len(pe) >= min_points:
            return pe
    return f


def finite_or_skip(code: str, raw, min_points: int, verb: str = "need at least"):
    """(finite copy of `raw`, None), or (it, a Skip saying it is too short): the usual first
    lines of a detector. `raw` may be None (a direct call on a run without the series): then
    (None, None) and the detector yields nothing."""
    from ..finding import Skip

    if raw is None:
        return None, None
    s = raw.finite()
    if len(s) < min_points:
        return s, Skip(code, f"{raw.name} has {len(s)} finite points; {verb} {min_points}")
    return s, None
