"""loss_spikes: sudden jumps of the training loss far above its recent level.

A spike is a point whose excess over the median of the points just before it is many robust
z-scores (noise measured as 1.4826 * MAD around a running median) *and* a large fraction of that
level. Consecutive spiking points are one event; an event has recovered when the loss comes
back near its pre-spike level. This is the same idea as Lightning's SpikeDetection (a running
level and a relative tolerance), made robust to the heavy tail of minibatch losses.
"""

from __future__ import annotations

import math

import numpy as np

from ..finding import Finding, Fix
from ..history import RunHistory
from ..registry import detector
from ._sources import PALM, PASCANU, ROUSSEEUW
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


def log_scale(values: np.ndarray, decades: float) -> bool:
    """True when a curve should be judged on a log scale: all its values are positive and they
    span at least `decades` orders of magnitude. On a linear scale the largest values set the
    noise and the range, so a blow-up by four orders of magnitude late in a loss that fell from
    1e8 to 1e-6 is invisible; on a log scale it is a jump of four decades."""
    f = values[np.isfinite(values)]
    return bool(f.size and f.min() > 0 and np.log10(f.max() / f.min()) >= decades)


def find_spikes(values: np.ndarray, *, z_threshold: float, rel_threshold: float,
                recover_fraction: float, range_fraction: float = 0.0,
                window: int | None = None, min_before: int = 3) -> tuple[list[dict], float]:
    """Spike events as dicts of indices and sizes, plus the noise scale used.

    `values` may be log10 of the loss (then `rel_threshold` is a ratio: log10(1 + rel)); the
    caller converts levels back for the evidence."""
    n = values.size
    window = window or smooth_window(n)
    level = trailing_median(values, window)  # fewer points near the start, at least min_before
    noise = robust_noise(values, window)
    # A perfectly flat stretch has zero noise, and z against zero is meaningless (1e10): floor the
    # scale at 0.1% of the typical level, as _util.noise_scale does for every other threshold.
    finite = values[np.isfinite(values)]
    floor = 1e-3 * float(np.median(np.abs(finite))) if finite.size else 0.0
    smooth = rolling_median(values, window, edges="symmetric")
    # Minibatch losses are right-skewed (a few hard batches), so a symmetric MAD understates
    # how far up the noise itself reaches. The scale of upward deviations is also read from
    # the upper tail: the 95th percentile of the residuals over 1.645 (that percentile of a
    # normal distribution), which equals the MAD scale for symmetric noise.
    resid = values - smooth
    resid = resid[np.isfinite(resid)]
    upper = float(np.percentile(resid, 95)) / 1.645 if resid.size >= 20 else 0.0
    scale = max(noise, upper, floor, 1e-12)
    excess = values - level
    run_range = float(np.max(smooth) - np.min(smooth))
    with np.errstate(all="ignore"):
        z = excess / scale
        flagged = (z >= z_threshold) & (excess >= rel_threshold * np.abs(level))
        flagged &= excess >= range_fraction * run_range
    flagged[: max(min_before, window // 2)] = False  # no level to compare against yet
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
    return events, scale


@detector("loss_spikes", requires=(("train_loss", "val_loss"),))
def loss_spikes(
    history: RunHistory,
    *,
    # 8 robust z-scores of the curve's own noise: normal noise gives a point this far out about
    # once in 1e15 draws, so what crosses it is a real event even in heavy-tailed minibatch losses.
    z_threshold: float = 8.0,
    # ...and at least 25% above the recent level. The jump is judged against the curve's own
    # scale (its noise and its range), not a fixed doubling: a +64% jump that decays over ~15
    # steps on a smooth LLM curve is a spike (Lightning's SpikeDetection, rtol=2.0, is tuned for
    # noisy per-batch losses, which the z-score handles here).
    rel_threshold: float = 0.25,
    # ...and at least 10% of the run's whole (smoothed) range: a loss near 0 doubling from 0.02
    # to 0.05 is minibatch noise, not an event (Lightning's SpikeDetection has an atol for this).
    range_fraction: float = 0.1,
    # Recovered = the median after the spike is back within 25% of the way from level to peak.
    recover_fraction: float = 0.25,
    # Many recovered spikes are a warning too: 5 events and at least 1% of the points.
    many_spikes: int = 5,
    many_rate: float = 0.01,
    # A jump to 10x the level or more is an explosion (Pascanu et al. 2013: exploding gradients
    # throw the weights far off): a warning even when the loss found its way back.
    explosion_factor: float = 10.0,
    # Curves spanning 3+ decades are judged on log10 of the loss.
    log_decades: float = 3.0,
    min_points: int = 20,
):
    """Sudden loss spikes: how many, where, how big (robust z), and whether the loss recovered."""
    p = dict(z_threshold=z_threshold, rel_threshold=rel_threshold, range_fraction=range_fraction,
             recover_fraction=recover_fraction, many_spikes=many_spikes, many_rate=many_rate,
             explosion_factor=explosion_factor, log_decades=log_decades)
    for raw in _loss_curves(history):
        s, skip = finite_or_skip("loss_spikes", raw, min_points)
        if s is None or skip is not None:  # too short: say so
            yield from [skip] if skip else []
            continue
        yield from _one(history, raw, s, p)


# Spikes that each came back to the level just before them can still cost progress, one step
# at a time (PaLM, Chowdhery et al. 2022, sec. 5.1, restarted ~100 steps before each spike):
# lost ground is the last tenth of the run sitting 3 noise units and 5% above the best the
# smoothed loss had reached before the first spike.
LOST_K, LOST_REL = 3.0, 0.05


def _progress_lost(vals, events, noise, log, p) -> dict | None:
    """Best (smoothed) before the first spike vs the median of the last tenth, when the tail
    is worse by more than LOST_K noise units (the symmetric point-to-point noise: both sides
    are medians of many points) and LOST_REL of the best; else None."""
    i0 = events[0]["start"]
    n = vals.size
    k = max(3, n // 10)
    if i0 < 3 or n - k <= events[-1]["end"]:
        return None  # no points before the spikes, or the tail is inside one (divergence's call)
    before = rolling_median(vals[:i0], min(smooth_window(n), i0) | 1, edges="symmetric")
    best = float(np.nanmin(before))
    tail = float(np.median(vals[-k:]))
    rel = math.log10(1 + LOST_REL) if log else LOST_REL * abs(best)
    if not (tail - best > LOST_K * noise and tail - best > rel):
        return None
    conv = (lambda y: float(10 ** y)) if log else float
    return {"best_before_spikes": sig(conv(best)), "tail_median": sig(conv(tail)), "tail_points": k}


def _early_blowup(values, vals, events, noise, p) -> list[dict]:
    """`events`, with the main training loss's climb to `explosion_factor` x its first value as
    one event in place of any event around the same peak (measured from the start, not from a
    level that was itself already blown up).

    find_spikes cannot see a blow-up in the first points (there is no level before them yet),
    and divergence says nothing once the loss has come back down. But a step should never take
    the loss far above where the untrained model started (about chance): 10x the first value
    means the weights were thrown far off, as by an LR far too high, whether or not the run
    recovered (Pascanu et al. 2013). Only the main training loss: an auxiliary term (a KL
    weight's warm-up) may rightly start near 0 and grow."""
    first = float(values[0])
    peak = int(np.argmax(values))
    if not (first > 0 and peak > 0 and values[peak] >= p["explosion_factor"] * first):
        return events
    if any(e["start"] <= peak <= e["end"] and e["level"] <= first for e in events):
        return events  # already an event measured from a level no higher than the start
    events = [e for e in events if not e["start"] <= peak <= e["end"]]
    window = smooth_window(values.size)
    after = vals[peak + 1: peak + 1 + window]
    if after.size < 3:
        recovered, after_level = None, None  # the run ends in it: divergence's call
    else:
        limit = vals[0] + p["recover_fraction"] * (vals[peak] - vals[0])
        recovered, after_level = bool(np.median(after) <= limit), float(np.median(after))
    if after_level is not None and vals is not values:  # on log10: back to the loss's units
        after_level = float(10 ** after_level)
    return [{"start": 1, "end": peak, "peak": peak, "level": first,
             "z": float((vals[peak] - vals[0]) / noise) if noise > 0 else math.inf,
             "after": after_level, "recovered": recovered}] + events


def _loss_curves(history: RunHistory) -> list:
    """The main training loss, then every other loss (components, validation: a validation
    loss is computed on fixed data, so its jumps are the weights' jumps), one per quantity."""
    from .plateau import candidates

    main = history.primary("train_loss")
    rest = [s for s in candidates(history) if s.kind == "loss" and (main is None or s.name != main.name)]
    return ([main] if main is not None else []) + rest


def _one(history, raw, s, p):
    n = len(s)
    log = log_scale(s.values, p["log_decades"])
    vals = np.log10(s.values) if log else s.values
    rel = math.log10(1 + p["rel_threshold"]) if log else p["rel_threshold"]
    # on a log scale the level is a log: compare the excess with the ratio, not with |level|
    events, noise = find_spikes(vals, z_threshold=p["z_threshold"],
                                rel_threshold=rel if not log else 0.0,
                                recover_fraction=p["recover_fraction"],
                                range_fraction=p["range_fraction"])
    if log:
        events = [e for e in events if vals[e["peak"]] - e["level"] >= rel]
        for e in events:
            e["level"] = float(10 ** e["level"])
            e["after"] = None if e["after"] is None else float(10 ** e["after"])
    if raw is history.primary("train_loss"):
        events = _early_blowup(s.values, vals, events, noise, p)
    if not events:
        return
    x = s.x()
    unit = s.unit
    shown = events[:20]
    unrecovered = [e for e in events if e["recovered"] is False]
    rate = len(events) / n
    ratios = [float(s.values[e["peak"]]) / e["level"] if e["level"] > 0 else math.inf for e in events]
    # An explosion with no data after it (the run ends inside it) cannot be told from a
    # divergence yet: that check judges a climb that goes on; this one waits for what follows.
    exploded = [e for e, r in zip(events, ratios)
                if r >= p["explosion_factor"] and e["recovered"] is not None]
    lost = _progress_lost(vals, events, robust_noise(vals), log, p)
    warn = bool(unrecovered) or bool(exploded) or lost is not None or (
        len(events) >= p["many_spikes"] and rate >= p["many_rate"])
    biggest = max(events, key=lambda e: e["z"])
    ev = {
        "unit": unit,
        "count": len(events),
        "points": n,
        "rate": sig(rate),
        "scale": "log10" if log else "linear",
        f"{unit}s": [xval(x[e["peak"]]) for e in shown],
        "peak_values": [sig(s.values[e["peak"]]) for e in shown],
        "levels_before": [sig(e["level"]) for e in shown],
        "peak_to_level": [sig(r, 3) for r in ratios[:20]],
        "z_scores": [sig(e["z"]) for e in shown],
        "recovered": [e["recovered"] for e in shown],
        "unrecovered_count": len(unrecovered),
        "explosions": len(exploded),
        "largest_z": sig(biggest["z"]),
        f"largest_{unit}": xval(x[biggest["peak"]]),
        "largest_step": xval(s.steps[biggest["peak"]]),
        "largest_value": sig(s.values[biggest["peak"]]),
        "largest_level_before": sig(biggest["level"]),
        "noise": sig(noise),
        "min_ratio_to_level": sig(1 + p["rel_threshold"]),
        "thresholds": {**p, "lost_k_noise": LOST_K, "lost_rel": LOST_REL},
    }
    b_x = xval(x[biggest["peak"]])
    title = (f"{len(events)} loss spike{'s' if len(events) != 1 else ''} in {raw.name}; the largest "
             f"at {unit} {b_x} jumped from {fmt(biggest['level'])} to {fmt(s.values[biggest['peak']])}"
             + (" (on a log scale)" if log else f" ({fmt(biggest['z'])} robust z)"))
    if unrecovered:
        first = unrecovered[0]
        ev["first_unrecovered"] = xval(x[first["start"]])
        ev["first_unrecovered_after"] = sig(first["after"])
        tail = (f" The loss did not come back after {len(unrecovered)} of them: after the spike at "
                f"{unit} {xval(x[first['start']])} it stayed at {fmt(first['after'])} "
                f"(before: {fmt(first['level'])}).")
    else:
        tail = " The loss came back to its earlier level after each spike that has data after it."
    if lost is not None:
        ev.update(lost)
        tail += (f" Across the spikes the loss lost ground: its best before the first one was "
                 f"{fmt(lost['best_before_spikes'])} (smoothed), its last {lost['tail_points']} "
                 f"points have median {fmt(lost['tail_median'])}.")
    if exploded:
        tail += (f" {len(exploded)} of them reached {fmt(p['explosion_factor'])}x the level before "
                 "or more: explosions, which throw the weights far from where training had taken them.")
    noise_txt = f"noise {fmt(noise)}" + (" in log10 units" if log else "")
    explanation = (
        f"{len(events)} time{'s' if len(events) != 1 else ''} the loss jumped at least "
        f"{fmt(p['z_threshold'])} robust z-scores ({noise_txt}) to at least "
        f"{fmt(1 + p['rel_threshold'])}x the median of the points before it"
        + (", measured on log10 of the loss because it spans "
           f"{fmt(p['log_decades'])}+ orders of magnitude." if log else ".") + tail +
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


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "loss_spikes": {
        "summary": "sudden short jumps in the loss",
        "meaning": "Isolated batches produce huge losses, or the weights jump: outliers or "
                   "mislabeled samples, a too-high LR that occasionally overshoots, fp16 overflow, "
                   "Adam's second-moment instability. A jump of 10x or more is an explosion.",
        "detection": "Every loss (training components and validation too): points above the median "
                     "of the points before them by 8 robust z-scores of the curve's own noise (its "
                     "upper tail for skewed minibatch noise), 25% of the level and 10% of the run's "
                     "range; on log10 of the loss when it spans 3+ decades. Warns when a spike did "
                     "not recover, was an explosion, cost progress, or spikes are many.",
        "fixes": ["Clip gradients", "Inspect the batches at the spike steps for bad data",
                  "Lower the LR or raise Adam's eps"],
        "sources": [ROUSSEEUW, PASCANU, PALM],
    },
}
