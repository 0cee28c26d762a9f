"""underfitting and slow_convergence: the training loss stays high, or was still falling
steeply when the run ended.

Both are easy to over-report, so both are conservative: underfitting needs a known chance level
(ln C from hparams or an accuracy at 1/C) or an accuracy at chance; slow_convergence needs the
last 20% of the run to have improved by far more than the noise *and* by a large share of the
whole run's improvement (a converging exponential contributes almost nothing at the end).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..finding import Finding, Fix, Skip
from ..history import RunHistory, Series
from ..registry import detector
from ._sources import KARPATHY, SMITH, ZHANG
from ._util import chance_loss, fmt, linear_slope, noise_scale, sig, xval
from .plateau import class_count, median_at


@detector("underfitting", requires=(("train_loss", "train_accuracy"),))
def underfitting(
    history: RunHistory,
    *,
    min_points: int = 10,
    tail_share: float = 0.1,  # the final level is the median of the last 10% of points
    chance_frac: float = 0.9,  # final train loss >= 90% of ln C: barely better than guessing
    acc_margin: float = 0.05,  # final train accuracy within 5 points of 1/C
) -> Iterable[Finding | Skip]:
    """The training loss stays near the chance level (the model cannot fit its own data)."""
    n_classes, c_source = class_count(history)
    if not n_classes:
        yield Skip("underfitting", "class count unknown (no num_classes in hparams and no accuracy "
                                   "at 1/C), so there is no reference level to call a loss high")
        return
    for role in ("train_loss", "train_accuracy"):
        raw = history.primary(role)
        if raw is None:
            continue
        s = raw.finite()  # every logged point: an epoch is a label on a point, never a bin
        if len(s) < min_points:
            yield Skip("underfitting", f"{raw.name} has {len(s)} finite points; needs {min_points}")
            continue
        k = max(3, int(len(s) * tail_share))
        level = float(np.median(s.values[-k:]))
        unit = s.unit
        x = s.x(unit)
        if role == "train_loss":
            ref = chance_loss(n_classes)
            bad = level >= chance_frac * ref
            ev_ref = {"chance_loss": sig(ref)}
            what = f"{fmt(level)}, {fmt(100 * level / ref, 3)}% of the chance-level loss ln {n_classes} = {fmt(ref)}"
            ev_extra = {"pct_of_chance": sig(100 * level / ref, 3)}
        else:
            lvl = level / 100 if level > 1 else level
            ref = 1.0 / n_classes
            bad = lvl <= ref + acc_margin
            ev_ref = {"chance_accuracy": sig(ref)}
            what = f"{fmt(level)}, chance is 1/{n_classes} = {fmt(ref)}"
            ev_extra = {}
        if not bad:
            continue
        ev = {"unit": unit, "final_level": sig(level), "tail_points": k, "n_classes": n_classes,
              "n_classes_from": c_source, f"last_{unit}": xval(x[-1]), **ev_ref, **ev_extra,
              "thresholds": {"chance_frac": chance_frac, "acc_margin": acc_margin,
                             "tail_share": tail_share, "min_points": min_points}}
        yield Finding(
            "underfitting", "warning",
            f"{s.name} ends at {what}: the model does not fit even its training data",
            metric=s.name, evidence=ev, steps=(xval(x[-k]), xval(x[-1])),
            explanation=(f"Over its last {k} points {s.name} has a median of {fmt(level)}. A model "
                         "that cannot beat guessing on the data it trains on is not overfitting or "
                         "under-regularised: it is not learning. Check the data pipeline first "
                         "(labels shuffled separately from inputs, wrong targets), then capacity and LR."),
            fixes=[
                Fix("Try to overfit one small batch", "if even that fails the bug is in the model, "
                    "loss or data, not in the amount of training",
                    "traindoctor.probe(model, (x, y), loss_fn=loss_fn, optimizer=opt)"),
                Fix("Check that inputs and labels stay aligned after shuffling/augmentation",
                    "misaligned labels give exactly chance-level training loss", None),
                Fix("Raise the learning rate or the model's capacity",
                    "too small a step or model cannot fit the training data", None),
            ],
        )


@detector("slow_convergence", requires=(("train_loss", "val_loss"),))
def slow_convergence(
    history: RunHistory,
    *,
    min_points: int = 10,
    last_share: float = 0.2,  # "the last 20% of the run" (the definition)
    k_noise: float = 5.0,  # the late gain must be far past the noise, not a 3-sigma wiggle
    min_late_share: float = 0.15,  # and >= 15% of the whole run's gain (a straight line gives 20%)
    extend: float = 0.25,  # projected gain of training 25% longer at the late rate
) -> Iterable[Finding | Skip]:
    """The loss was still falling steeply when the run ended."""
    train, val = history.primary("train_loss"), history.primary("val_loss")
    checked = {}
    for raw in (train, val):
        if raw is None:
            continue
        s = raw.finite()  # every logged point: an epoch is a label on a point, never a bin
        if len(s) < min_points:
            yield Skip("slow_convergence", f"{raw.name} has {len(s)} finite points; needs {min_points}")
            continue
        checked[raw.role] = _late(s, last_share, k_noise, min_late_share)
    main = checked.get("train_loss") or checked.get("val_loss")
    if not main or not main["steep"]:
        return
    # Training loss still falling but validation not: more epochs would only overfit.
    if "val_loss" in checked and not checked["val_loss"]["steep"] and main is checked.get("train_loss"):
        if checked["val_loss"]["late_gain"] <= k_noise * checked["val_loss"]["noise_smoothed"]:
            return
    m = main
    s = m["series"]
    unit = s.unit
    x = s.x(unit)
    span = float(x[-1] - x[0])
    proj = m["slope"] * extend * span
    ev = {
        "unit": unit, f"late_from_{unit}": xval(x[m["i0"]]), f"last_{unit}": xval(x[-1]),
        "late_gain": sig(m["late_gain"]), "total_gain": sig(m["total_gain"]),
        "late_share_of_gain": sig(m["share"], 3), "noise": sig(m["noise"]),
        "noise_smoothed": sig(m["noise_smoothed"]), "late_slope_per_unit": sig(m["slope"]),
        "final_value": sig(m["final"]),
        "projected_extra_units": xval(sig(extend * span)), "projected_gain": sig(proj),
        "val_also_improving": bool(checked.get("val_loss", {}).get("steep", False)),
        "thresholds": {"last_share": last_share, "k_noise": k_noise,
                       "min_late_share": min_late_share, "extend": extend, "min_points": min_points},
    }
    yield Finding(
        "slow_convergence", "warning",
        (f"{s.name} was still falling when the run ended: {fmt(m['late_gain'])} in the last "
         f"{fmt(100 * last_share, 3)}% of {unit}s ({fmt(100 * m['share'], 3)}% of the whole run's gain)"),
        metric=s.name, evidence=ev, steps=(xval(x[m["i0"]]), xval(x[-1])),
        explanation=(f"From {unit} {xval(x[m['i0']])} to {xval(x[-1])} the smoothed {s.name} fell by "
                     f"{fmt(m['late_gain'])}, {fmt(m['late_gain'] / m['noise_smoothed'], 3)} times its "
                     f"noise, at {fmt(m['slope'])} per {unit}. At that rate, {fmt(sig(extend * span))} "
                     f"more {unit}s would lower it by about {fmt(abs(proj))} (a linear extrapolation, an "
                     "upper bound: curves flatten)."),
        fixes=[
            Fix(f"Train longer (about {fmt(sig(extend * span))} more {unit}s to start with)",
                "the run was stopped while it was still improving", None),
            Fix("Or raise the learning rate / shorten warmup if the budget is fixed",
                "a steep late slope with no sign of flattening often means steps are too small", None),
        ],
    )


def _late(s: Series, last_share, k_noise, min_late_share) -> dict:
    v = s.values
    n = v.size
    x = s.x(s.unit)
    w = max(3, (n // 20) | 1)
    i0 = max(0, min(n - 2, int(round(n * (1 - last_share)))))
    sign = -1.0 if s.higher_is_better else 1.0
    s0, s_i0, s_end = (median_at(v, i, w) for i in (0, i0, -1))  # running medians there
    late = sign * (s_i0 - s_end)
    total = sign * (s0 - s_end)
    noise = noise_scale(v)
    noise_sm = noise * 1.25 / math.sqrt(w)
    share = late / total if total > 0 else 0.0
    slope = -sign * linear_slope(x[i0:], v[i0:])
    steep = (late > k_noise * noise_sm and share >= min_late_share and total > 0
             and math.isfinite(slope) and slope > 0)
    return {"series": s, "i0": i0, "late_gain": late, "total_gain": total, "noise": noise,
            "noise_smoothed": noise_sm, "share": share, "slope": slope, "steep": steep,
            "final": float(v[-1])}


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "slow_convergence": {
        "summary": "still improving steeply when the run ended",
        "meaning": "Training was stopped while the loss was still going down fast: the run was too "
                   "short or the LR too low.",
        "detection": "The gain of the smoothed loss over the last 20% of the run against its noise "
                     "and against the whole run's gain.",
        "fixes": ["Train for more epochs", "Raise the LR (an LR range test tells how far)"],
        "sources": [SMITH, KARPATHY],
    },
    "underfitting": {
        "summary": "training loss stays high",
        "meaning": "The model cannot even fit its training data: it lacks capacity, the LR is "
                   "wrong, or the features/labels carry little signal (shuffled labels end here too).",
        "detection": "Final training loss against the chance-level loss ln C, or the final training "
                     "accuracy against 1/C, with C from hparams or a classification accuracy stuck "
                     "at 1/C.",
        "fixes": ["Check the model can overfit one batch (`traindoctor probe`)", "Add capacity",
                  "Tune the LR with an LR range test", "Check labels are aligned with inputs"],
        "sources": [KARPATHY, ZHANG],
    },
}
