"""lr_schedule: what the learning-rate schedule was, and what the loss did after each change.

A piecewise-constant schedule (step decay, ReduceLROnPlateau, a manual change) is read as a list
of changes; for each one the loss just before is compared with the loss just after, over the same
number of points on both sides. A continuous schedule (cosine, linear, one-cycle) is summarised
by its start, peak, end and warmup. A learning rate that never changes while the loss has stopped
improving is reported as context (the plateau detector owns the plateau itself).
"""

from __future__ import annotations

import numpy as np

from ..finding import Finding, Fix, Skip
from ..history import RunHistory, Series
from ..registry import detector
from ._sources import GOYAL, PLATEAU_DOCS, SMITH
from ._util import fmt, robust_noise, rolling_median, sig, smooth_window, xval


def constant_segments(values: np.ndarray, rtol: float = 1e-6) -> list[tuple[int, int]]:
    """[(first, last)] index ranges over which the LR does not change (relative tolerance)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return [(0, -1)]
    prev, cur = v[:-1], v[1:]
    with np.errstate(invalid="ignore"):  # inf - inf and NaN compare False: no change, as before
        scale = np.maximum(np.maximum(np.abs(prev), np.abs(cur)), 1e-30)
        changed = np.abs(cur - prev) > rtol * scale
    cuts = np.flatnonzero(changed) + 1  # vectorised: a per-point loop took seconds on 1M steps
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts - 1, [v.size - 1]])
    return list(zip(starts.tolist(), ends.tolist()))


def loss_effect(loss: Series, step: float, lo: float, hi: float, *, max_points: int,
                noise: float, rel_change: float, z: float) -> dict | None:
    """Median loss over the same number of points before and after `step` (within lo..hi)."""
    before = loss.values[(loss.steps < step) & (loss.steps >= lo)]
    after = loss.values[(loss.steps >= step) & (loss.steps <= hi)]
    m = min(before.size, after.size, max_points)
    if m < 2:
        return None
    b, a = float(np.median(before[-m:])), float(np.median(after[:m]))
    # Noise of a median of m points ~ noise * sqrt(pi/2) / sqrt(m); 1.25 ~ sqrt(pi/2).
    margin = max(z * 1.25 * noise * np.sqrt(2.0 / m), rel_change * abs(b))
    effect = "improved" if a < b - margin else "got worse" if a > b + margin else "no change"
    return {"loss_before": b, "loss_after": a, "points": m, "margin": margin, "effect": effect}


@detector("lr_schedule", requires=("lr", ("train_loss", "val_loss")))
def lr_schedule(
    history: RunHistory,
    *,
    # A change is judged beyond noise when the medians differ by 3 standard errors...
    z: float = 3.0,
    # ...and by at least 2% of the loss (smaller moves do not matter in practice).
    rel_change: float = 0.02,
    # A change after which the loss got worse by this fraction is a warning.
    worse_warn: float = 0.1,
    # More constant segments than this is a continuous schedule logged with rounding.
    max_changes: int = 20,
    # Warmup: the LR starts at or below this fraction of its peak and climbs to it.
    warmup_fraction: float = 0.5,
    # "Stopped improving": the smoothed loss gained less than this fraction in the last half.
    plateau_fraction: float = 0.01,
    window_points: int = 50,
):
    """Each learning-rate change and what the loss did after it; warmup; a never-changing LR."""
    lr_raw = history.primary("lr")
    loss_raw = history.primary("train_loss") or history.primary("val_loss")
    if lr_raw is None or loss_raw is None:  # the engine skips this via `requires`
        return
    lr, loss = lr_raw.finite(), loss_raw.finite()
    if len(lr) < 2 or len(loss) < 4:
        yield Skip("lr_schedule", f"{lr_raw.name} has {len(lr)} and {loss_raw.name} {len(loss)} "
                                  "finite points; need at least 2 and 4")
        return
    v, steps = lr.values, lr.steps
    unit = "step"  # LR and loss are aligned on the logger's step axis
    thresholds = {"z": z, "rel_change": rel_change, "worse_warn": worse_warn,
                  "max_changes": max_changes, "warmup_fraction": warmup_fraction,
                  "plateau_fraction": plateau_fraction, "window_points": window_points}
    noise = robust_noise(loss.values)
    segs = constant_segments(v)
    peak_i = int(np.argmax(v))
    peak = float(v[peak_i])
    ev = {"unit": unit, "lr_start": sig(v[0]), "lr_peak": sig(peak), "lr_final": sig(v[-1]),
          "lr_points": len(lr), "loss_metric": loss_raw.name, "loss_noise": sig(noise),
          "thresholds": thresholds}
    warmup_end = None
    if peak_i > 0 and peak > 0 and v[0] <= warmup_fraction * peak:
        warmup_end = xval(steps[int(np.argmax(v >= 0.99 * peak))])
        ev["warmup_end_step"] = warmup_end

    if len(segs) == 1:
        # Constant LR: only worth saying when the loss has stopped improving.
        n = len(loss)
        smooth = rolling_median(loss.values, smooth_window(n), edges="symmetric")
        mid, end = float(smooth[n // 2]), float(smooth[-1])
        gain = mid - end
        if n < 10 or gain > plateau_fraction * abs(mid) or gain > 3 * noise:
            return
        ev.update({"schedule": "constant", "loss_mid": sig(mid), "loss_end": sig(end),
                   "loss_gain_last_half": sig(gain), "mid_step": xval(loss.steps[n // 2]),
                   "last_step": xval(loss.steps[-1])})
        title = (f"The learning rate stayed at {fmt(v[0])} while {loss_raw.name} stopped improving "
                 f"(from {fmt(mid)} to {fmt(end)} over the second half)")
        explanation = (
            f"{lr_raw.name} never changed from {fmt(v[0])}. Over the second half of the run "
            f"(step {xval(loss.steps[n // 2])} to {xval(loss.steps[-1])}) the smoothed "
            f"{loss_raw.name} went from {fmt(mid)} to {fmt(end)}. At a fixed step size SGD-type "
            "optimisers settle into a noise floor set by the learning rate; decaying it usually "
            "buys a further drop (the step-decay drops in He et al., 2016, ResNet training curves)."
        )
        fixes = [Fix("Decay the learning rate when the loss stops improving",
                     "a smaller step size lowers the noise floor the loss is stuck at",
                     "sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=5)"),
                 Fix("Or use a cosine schedule over the whole run", "it decays smoothly to near 0",
                     "torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)")]
        yield Finding("lr_schedule", "info", title, lr_raw.name, ev,
                      (xval(loss.steps[n // 2]), xval(loss.steps[-1])), explanation, fixes)
        return

    if len(segs) - 1 > max_changes:
        ev["schedule"] = "warmup then continuous" if warmup_end is not None else "continuous"
        title = (f"Learning rate: {ev['schedule']} schedule from {fmt(v[0])} (peak {fmt(peak)}) "
                 f"to {fmt(v[-1])}")
        explanation = (f"{lr_raw.name} changed at almost every logged point: it started at "
                       f"{fmt(v[0])}, peaked at {fmt(peak)} and ended at {fmt(v[-1])}.")
        if warmup_end is not None:
            explanation += f" The warmup reached the peak at step {warmup_end}."
        yield Finding("lr_schedule", "info", title, lr_raw.name, ev,
                      (xval(steps[0]), xval(steps[-1])), explanation, ())
        return

    # Piecewise constant: each boundary is a change; judge the loss on both sides of it.
    changes = []
    bounds = [(segs[k][1], segs[k + 1][0]) for k in range(len(segs) - 1)]
    for k, (i_prev, i_new) in enumerate(bounds):
        step = float(steps[i_new])
        # Only loss points logged under the LR before (segment k) and after (segment k+1).
        lo = float(steps[segs[k][0]]) - 1e-9
        hi = float(steps[segs[k + 2][0]]) - 1e-9 if k + 2 < len(segs) else float("inf")
        eff = loss_effect(loss, step, lo, hi, max_points=window_points, noise=noise,
                          rel_change=rel_change, z=z)
        item = {"step": xval(step), "lr_before": sig(v[i_prev]), "lr_after": sig(v[i_new])}
        if eff is None:
            item["effect"] = "not enough loss points"
        else:
            item.update({"loss_before": sig(eff["loss_before"]), "loss_after": sig(eff["loss_after"]),
                         "points": eff["points"], "effect": eff["effect"],
                         "worse_by": sig((eff["loss_after"] - eff["loss_before"])
                                        / max(abs(eff["loss_before"]), 1e-12))})
        changes.append(item)
    ev["schedule"] = "piecewise constant"
    ev["changes"] = changes
    ev["change_count"] = len(changes)

    def describe(c: dict) -> str:
        head = f"at step {c['step']} ({fmt(c['lr_before'])} -> {fmt(c['lr_after'])})"
        if "loss_before" not in c:
            return f"{head}: too few loss points around it to judge"
        return (f"{head}: {loss_raw.name} {c['effect']}, median {fmt(c['loss_before'])} before, "
                f"{fmt(c['loss_after'])} after ({c['points']} points each side)")

    bad = [c for c in changes if c.get("effect") == "got worse" and c["worse_by"] >= worse_warn]
    title = (f"Learning rate changed {len(changes)} time{'s' if len(changes) != 1 else ''}; "
             + describe(changes[0]))
    explanation = ("Each change, with the loss over the same number of points before and after it: "
                   + "; ".join(describe(c) for c in changes) + ".")
    if warmup_end is not None:
        explanation += f" The LR warmed up to its peak {fmt(peak)} by step {warmup_end}."
    yield Finding("lr_schedule", "info", title, lr_raw.name, ev,
                  (xval(steps[0]), xval(steps[-1])), explanation, ())
    for c in bad:
        bev = {"unit": unit, **c, "loss_metric": loss_raw.name, "loss_noise": sig(noise),
               "thresholds": thresholds}
        up = c["lr_after"] > c["lr_before"]
        title = (f"The loss got worse after the learning-rate change at step {c['step']} "
                 f"({fmt(c['lr_before'])} -> {fmt(c['lr_after'])}): {fmt(c['loss_before'])} -> "
                 f"{fmt(c['loss_after'])}")
        explanation = (
            f"Over {c['points']} points on each side, the median {loss_raw.name} rose from "
            f"{fmt(c['loss_before'])} to {fmt(c['loss_after'])} ({fmt(c['worse_by'])} of its level, "
            f"warning at {fmt(worse_warn)}) when the learning rate went from {fmt(c['lr_before'])} "
            f"to {fmt(c['lr_after'])}. "
            + ("A larger step size than the loss surface tolerates makes the loss rise."
               if up else "A lower LR rarely raises the loss by itself: check whether something "
                          "else changed at that step (unfrozen layers, a new data stage, a restart).")
        )
        fixes = ([Fix(f"Keep the learning rate at or below {fmt(c['lr_before'])}",
                      "the loss was improving at that value", None)] if up else
                 [Fix(f"Check what else changed at step {c['step']}",
                      "the LR drop alone does not explain a rising loss", None)])
        yield Finding("lr_schedule", "warning", title, lr_raw.name, bev,
                      (c["step"], c["step"]), explanation, fixes)


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "lr_schedule": {
        "summary": "what the learning-rate changes did to the loss",
        "meaning": "Relates each LR change (decay, warmup end, restart) to how the loss responded, "
                   "e.g. the loss only improves after the LR was cut, so the initial LR was too high.",
        "detection": "Detects steps where the logged LR changes and compares the loss medians "
                     "before and after over the same number of points.",
        "fixes": ["Start from the LR that worked", "Use warmup or a schedule that decays earlier"],
        "sources": [SMITH, PLATEAU_DOCS, GOYAL],
    },
}
