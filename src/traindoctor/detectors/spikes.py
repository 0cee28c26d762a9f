"""loss_spikes: sudden jumps of the training loss far above its recent level.

A spike is a point whose excess over the median of the points just before it is many robust
z-scores (noise measured as 1.4826 * MAD around a running median) *and* a large fraction of that
level. Consecutive spiking points are one event; an event has recovered when the loss comes
back near its pre-spike level. This is the same idea as Lightning's SpikeDetection (a running
level and a relative tolerance), made robust to the heavy tail of minibatch losses.
"""

from __future__ import annotations

import numpy as np

from ..finding import Finding, Fix
from ..history import RunHistory
from ..registry import detector
from ._util import (
    finite_or_skip,
    fmt,
    robust_noise,
    rolling_median,
    sig,
    smooth_window,
    trailing_median,
    xval,
)


def find_spikes(values: np.ndarray, *, z_threshold: float, rel_threshold: float,
                recover_fraction: float, range_fraction: float = 0.0,
                window: int | None = None) -> tuple[list[dict], float]:
    """Spike events as dicts of indices and sizes, plus the noise scale used."""
    n = values.size
    window = window or smooth_window(n)
    level = trailing_median(values, window)
    noise = robust_noise(values, window)
    # A perfectly flat stretch has zero noise, and z against zero is meaningless (1e10): floor the
    # scale at 0.1% of the typical level, as _util.noise_scale does for every other threshold.
    finite = values[np.isfinite(values)]
    floor = 1e-3 * float(np.median(np.abs(finite))) if finite.size else 0.0
    scale = max(noise, floor, 1e-12)
    excess = values - level
    smooth = rolling_median(values, window, edges="symmetric")
    run_range = float(np.max(smooth) - np.min(smooth))
    with np.errstate(all="ignore"):
        z = excess / scale
        flagged = (z >= z_threshold) & (excess >= rel_threshold * np.abs(level))
        flagged &= excess >= range_fraction * run_range
    flagged[: max(3, window // 2)] = False  # no level to compare against yet
    events = []
    i = 0
    while i < n:
        if not flagged[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and flagged[j + 1]:
            j += 1
        peak = i + int(np.argmax(values[i : j + 1]))
        before = float(level[i])
        after = values[j + 1 : j + 1 + window]
        if after.size < 3:
            recovered = None  # the run ended (or crashed) right after it
        else:
            limit = before + recover_fraction * (float(values[peak]) - before)
            recovered = bool(np.median(after) <= limit)
        events.append({"start": i, "end": j, "peak": peak, "level": before,
                       "z": float(z[peak]), "after": float(np.median(after)) if after.size else None,
                       "recovered": recovered})
        i = j + 1
    return events, noise


@detector("loss_spikes", requires=("train_loss",))
def loss_spikes(
    history: RunHistory,
    *,
    # 8 robust z-scores: normal noise gives a point this far out about once in 1e15 draws, so
    # what crosses it is a real event even in heavy-tailed minibatch losses.
    z_threshold: float = 8.0,
    # ...and at least doubling the recent level (Lightning's SpikeDetection default rtol=2.0
    # flags a loss 2x its running mean).
    rel_threshold: float = 1.0,
    # ...and at least 10% of the run's whole (smoothed) range: a loss near 0 doubling from 0.02
    # to 0.05 is minibatch noise, not an event (Lightning's SpikeDetection has an atol for this).
    range_fraction: float = 0.1,
    # Recovered = the median after the spike is back within 25% of the way from level to peak.
    recover_fraction: float = 0.25,
    # Many recovered spikes are a warning too: 5 events and at least 1% of the points.
    many_spikes: int = 5,
    many_rate: float = 0.01,
    min_points: int = 20,
):
    """Sudden loss spikes: how many, where, how big (robust z), and whether the loss recovered."""
    raw = history.primary("train_loss")
    s, skip = finite_or_skip("loss_spikes", raw, min_points)
    if s is None or skip is not None:  # no series (a direct call): nothing; too short: say so
        yield from [skip] if skip else []
        return
    n = len(s)
    events, noise = find_spikes(s.values, z_threshold=z_threshold, rel_threshold=rel_threshold,
                                recover_fraction=recover_fraction, range_fraction=range_fraction)
    if not events:
        return
    x = s.x()
    unit = s.unit
    shown = events[:20]
    unrecovered = [e for e in events if e["recovered"] is False]
    rate = len(events) / n
    warn = bool(unrecovered) or (len(events) >= many_spikes and rate >= many_rate)
    biggest = max(events, key=lambda e: e["z"])
    ev = {
        "unit": unit,
        "count": len(events),
        "points": n,
        "rate": sig(rate),
        f"{unit}s": [xval(x[e["peak"]]) for e in shown],
        "peak_values": [sig(s.values[e["peak"]]) for e in shown],
        "levels_before": [sig(e["level"]) for e in shown],
        "z_scores": [sig(e["z"]) for e in shown],
        "recovered": [e["recovered"] for e in shown],
        "unrecovered_count": len(unrecovered),
        "largest_z": sig(biggest["z"]),
        f"largest_{unit}": xval(x[biggest["peak"]]),
        "largest_value": sig(s.values[biggest["peak"]]),
        "largest_level_before": sig(biggest["level"]),
        "noise": sig(noise),
        "min_ratio_to_level": sig(1 + rel_threshold),
        "thresholds": {"z_threshold": z_threshold, "rel_threshold": rel_threshold,
                       "recover_fraction": recover_fraction, "range_fraction": range_fraction,
                       "many_spikes": many_spikes,
                       "many_rate": many_rate},
    }
    b_x = xval(x[biggest["peak"]])
    title = (f"{len(events)} loss spike{'s' if len(events) != 1 else ''} in {raw.name}; the largest "
             f"at {unit} {b_x} jumped from {fmt(biggest['level'])} to {fmt(s.values[biggest['peak']])} "
             f"({fmt(biggest['z'])} robust z)")
    if unrecovered:
        first = unrecovered[0]
        ev["first_unrecovered"] = xval(x[first["start"]])
        ev["first_unrecovered_after"] = sig(first["after"])
        tail = (f" The loss did not come back after {len(unrecovered)} of them: after the spike at "
                f"{unit} {xval(x[first['start']])} it stayed at {fmt(first['after'])} "
                f"(before: {fmt(first['level'])}).")
    else:
        tail = " The loss came back to its earlier level after each spike that has data after it."
    explanation = (
        f"{len(events)} time{'s' if len(events) != 1 else ''} the loss jumped at least "
        f"{fmt(z_threshold)} robust z-scores (noise {fmt(noise)}) to at least "
        f"{fmt(1 + rel_threshold)}x the median of the points before it." + tail +
        " Spikes come from a learning rate at the edge of stability, rare batches with extreme "
        "inputs or labels, or fp16 overflow; a spike that does not recover costs the progress made "
        "before it."
    )
    fixes = [
        Fix("Clip the gradient norm", "it bounds the update a single extreme batch can make",
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"),
        Fix("Lower the learning rate or lengthen the warmup",
            "spikes cluster where the step size is at the edge of stability", None),
        Fix(f"Inspect the batches at the spike {unit}s",
            "a corrupt sample or a label outside the expected range often causes a one-off spike",
            None),
    ]
    first_x, last_x = xval(x[events[0]["start"]]), xval(x[events[-1]["end"]])
    yield Finding("loss_spikes", "warning" if warn else "info", title, raw.name, ev,
                  (first_x, last_x), explanation, fixes)
