"""plateau: no meaningful improvement since some point, measured against the curve's own noise.

"Meaningful" is k times the noise of the *smoothed* curve (a rolling median over w points has
roughly noise*1.25/sqrt(w), Hampel et al. 1986), so a slow real decline is not a plateau while a
flat line with noise is. A loss that flattened after falling most of the way is convergence
(info at most); a loss flat for most of the run, or flat at the chance-level loss ln C, is not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..finding import Finding, Fix, Skip
from ..history import RunHistory, Series
from ..registry import detector
from ._util import (
    accuracy_scale,
    chance_loss,
    classes_from_accuracy,
    classes_from_hparams,
    epoch_curve,
    fmt,
    noise_scale,
    rolling_median,
    sig,
    smooth,
    xval,
)

ROLES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def plateau_start(values: np.ndarray, noise: float, k: float = 3.0, higher_is_better: bool = False,
                  min_len: int = 9, grid: int = 100) -> int | None:
    """First index from which the curve stays flat: the median of the first third of the rest
    is within k * (standard error of a median of that many points) of the last third's; then
    moved to the first point that is already within k * noise of the flat level (so a drop
    in the first few batches is not counted as part of the plateau). None if never flat."""
    v = -values if higher_is_better else values
    n = v.size
    for i in sorted(set(np.linspace(0, max(0, n - min_len), min(grid, n)).astype(int))):
        seg = v[i:]
        third = seg.size // 3
        if third < 3:
            break
        end = float(np.median(seg[-third:]))
        gain = float(np.median(seg[:third])) - end
        # sd of a median of m normal points ~ 1.25 sigma / sqrt(m); of a difference: * sqrt(2)
        limit = k * noise * 1.25 * math.sqrt(2.0 / third)
        # Flat also means it was never meaningfully better inside the stretch than where it ends:
        # a curve that went down and back up (val loss around its best epoch, seed 000) or that
        # rises is overfitting/divergence, not a plateau, though its first and last thirds match.
        # Medians over windows of `third` points (the statistic `limit` is made for), a quarter
        # window apart: linear in the length, so 100k-point histories stay fast.
        stride = max(1, third // 4)
        inside = min(float(np.median(seg[j:j + third])) for j in range(0, seg.size - third + 1, stride))
        dip = end - inside
        if gain <= limit and dip <= limit:
            level = float(np.median(seg))
            near = np.flatnonzero(rolling_median(seg, 3) <= level + k * noise)
            return i + int(near[0]) if near.size else i
    return None


def class_count(history: RunHistory) -> tuple[int | None, str]:
    """Class count from hparams, else from an accuracy stuck at 1/C; with where it came from."""
    c = classes_from_hparams(history.hparams)
    if c:
        return c, "hparams"
    for role in ("train_accuracy", "val_accuracy"):
        s = history.primary(role)
        if s is not None and len(s.finite()) >= 5:
            level = float(np.median(s.finite().values[-max(3, len(s) // 5):]))
            c = classes_from_accuracy(level)
            if c:
                return c, f"{s.name} stuck near 1/{c}"
    return None, ""


@detector("plateau", requires=(ROLES,))
def plateau(
    history: RunHistory,
    *,
    min_points: int = 10,
    k_noise: float = 3.0,  # three-sigma rule on the smoothed curve's noise
    warn_share: float = 0.5,  # flat for half the run or more: the user should act
    info_share: float = 0.3,  # flat for the last 30%: context only
    converged_drop: float = 0.5,  # fell >= 50% of its starting level before flattening = converged
    chance_tol: float = 0.1,  # within 10% of ln C counts as "at the chance-level loss"
    const_rel: float = 5e-4,  # flatter than this is loss_constant's business
) -> Iterable[Finding | Skip]:
    """No meaningful improvement since a step (flat loss, accuracy stuck, loss at ln C)."""
    n_classes, c_source = class_count(history)
    seen = set()
    # every loss series (a stuck component hides inside a moving total, seed 001), then accuracies
    cands = [x for x in history.series.values() if x.role in ("train_loss", "val_loss")]
    cands += [history.primary(r) for r in ("train_accuracy", "val_accuracy")]
    for raw in cands:
        if raw is None or raw.name in seen:
            continue
        seen.add(raw.name)
        s = epoch_curve(raw, min_points)
        n = len(s)
        if n < min_points:
            yield Skip("plateau", f"{raw.name} has {n} finite points; needs {min_points}")
            continue
        v = s.values
        if np.ptp(v) <= const_rel * max(float(np.median(np.abs(v))), 1e-12):
            continue  # exactly constant: reported by loss_constant
        yield from _one(s, history, n_classes, c_source, min_points, k_noise, warn_share,
                        info_share, converged_drop, chance_tol)


def _one(s: Series, history, n_classes, c_source, min_points, k_noise, warn_share, info_share,
         converged_drop, chance_tol):
    unit = s.unit
    x, v = s.x(unit), s.values
    n = len(s)
    hib = s.higher_is_better
    w = max(3, (n // 20) | 1)
    sm = smooth(v, w)
    noise = noise_scale(v)
    start = plateau_start(v, noise, k_noise, hib)
    if start is None:
        return
    flat = n - start
    third = max(1, flat // 3)
    thr = k_noise * noise * 1.25 * math.sqrt(2.0 / third)
    share = flat / n
    if flat < min_points or share < info_share:
        return
    level = float(np.median(v[start:]))
    first = float(sm[0])
    gain_before = (float(sm[start]) - first) if hib else (first - float(sm[start]))
    # How much of the way it came: a loss relative to its first level; an accuracy relative to
    # its first *error* (1 - acc, or 100 - acc in %), so 0.84 -> 0.96 removes 75% of the errors.
    top = _top(v) if hib else None
    base = (top - first) if top is not None else abs(first)
    drop = gain_before / base if base > 0 else 0.0
    moved = float(np.ptp(sm[start:]))
    ev = {
        "unit": unit, f"since_{unit}": xval(x[start]), f"last_{unit}": xval(x[-1]),
        "flat_points": flat, "points": n, "flat_share": sig(share, 3),
        "level": sig(level), "moved_smoothed": sig(moved), "noise": sig(noise),
        "first_smoothed": sig(first),
        "improvement_before": sig(gain_before), "improvement_before_share": sig(drop, 3),
        "improvement_measured_against": (f"the first error {fmt(top - first)} (= {fmt(top)} - "
                                         f"{fmt(first)})" if top is not None else "the first level"),
        "smoothing_window": w, "compared_points": third,
        "thresholds": {"k_noise": k_noise, "meaningful_change": sig(thr), "warn_share": warn_share,
                       "info_share": info_share, "converged_drop": converged_drop,
                       "chance_tol": chance_tol, "min_points": min_points},
    }
    at_chance = majority = False
    if n_classes:
        ev["n_classes"] = n_classes
        ev["n_classes_from"] = c_source
        if s.kind == "loss":
            ln_c = chance_loss(n_classes)
            ev["chance_loss"] = sig(ln_c)
            at_chance = abs(level - ln_c) <= chance_tol * ln_c
        elif s.kind == "accuracy":
            ev["chance_accuracy"] = sig(1.0 / n_classes)
    # An accuracy is judged with its loss: if the loss of the same split fell most of the way,
    # the model learned, and a flat accuracy means it was already near its ceiling at the first
    # check (wine: 0.977 on 44 samples from epoch 0 while the val loss went 0.375 -> 0.05).
    partner = _partner_drop(history, s, n_classes, chance_tol) if s.kind == "accuracy" else None
    partner_converged = partner is not None and partner["drop"] >= converged_drop and not partner["at_chance"]
    if partner is not None:
        ev.update({"loss_partner": partner["name"], "loss_partner_first": sig(partner["first"]),
                   "loss_partner_end": sig(partner["end"]),
                   "loss_partner_drop_share": sig(partner["drop"], 3),
                   "loss_partner_drop_pct": sig(100 * partner["drop"], 3)})
    if s.kind == "accuracy" and start == 0 and not partner_converged:
        lvl = level / 100 if level > 1 else level
        if classes_from_accuracy(lvl) is None and 0 < lvl < 1:
            majority = True
            ev["majority_class_share_guess"] = sig(lvl, 3)
    converged = (drop >= converged_drop or partner_converged) and not at_chance
    warn = at_chance or majority or (share >= warn_share and not converged)
    severity = "warning" if warn else "info"
    what = f"{s.name} has not improved meaningfully since {unit} {xval(x[start])}"
    title = f"{what} ({flat} of {n} points, level {fmt(level)})"
    expl = (f"Since {unit} {xval(x[start])} the median of the first third of {s.name} and of the last "
            f"third differ by less than {fmt(thr)}, what counts as a real change for medians of "
            f"{third} points of a curve this noisy (noise {fmt(noise)}). ")
    fixes = []
    if at_chance:
        title = f"{s.name} is stuck at the chance-level loss ln {n_classes} = {fmt(ev['chance_loss'])}"
        expl += (f"A loss of ln {n_classes} = {fmt(ev['chance_loss'])} is what predicting every one of "
                 f"{n_classes} classes with equal probability gives: the model has learnt nothing. ")
        fixes.append(Fix("Check that labels match inputs and the loss gets logits (not softmax outputs)",
                         "a model that cannot beat uniform guessing usually sees broken data or targets",
                         None))
    elif majority:
        title = (f"{s.name} has been flat at {fmt(ev['majority_class_share_guess'], 3)} since {unit} "
                 f"{xval(x[start])}: not 1/C, so likely the majority-class share")
        expl += ("An accuracy that never moves from the start and is not 1/C is typically the share "
                 "of the most frequent class: the model predicts one class for every input. ")
        fixes.append(Fix("Weight the loss by class (weights n_samples / (n_classes * count_c)) "
                         "or resample to balance classes",
                         "so predicting the majority class is no longer a good minimum",
                         "torch.nn.CrossEntropyLoss(weight=class_weights)"))
    elif converged and drop >= converged_drop:
        expl += (f"Before that it improved by {fmt(gain_before)} ({fmt(100 * drop, 3)}% of "
                 f"{ev['improvement_measured_against']}), so this looks like convergence.")
    elif converged:
        expl += (f"Its loss {partner['name']} fell from {fmt(partner['first'])} to "
                 f"{fmt(partner['end'])} ({fmt(100 * partner['drop'], 3)}%), so the model learned: "
                 f"{s.name} was near its ceiling early, which looks like convergence.")
    else:
        if start == 0:
            expl += "It never improved: the model is not learning from the data at all. "
        else:
            expl += (f"It improved by only {fmt(gain_before)} ({fmt(100 * drop, 3)}% of "
                     f"{ev['improvement_measured_against']}) before flattening. ")
        expl += ("Typical causes: a learning rate too low (or too high, bouncing), a model that "
                 "predicts one constant output (mean or majority class), or a saturated loss.")
    if severity == "warning":
        fixes += [
            Fix("Run an LR range test and raise the learning rate if the loss allows it",
                "a too-low LR is the most common cause of a flat loss", None),
            Fix("Check whether predictions collapse to a constant (std of outputs across a batch)",
                "a collapsed model sits at the loss of the mean/majority prediction",
                "print(outputs.std(dim=0))  # or traindoctor.probe(model, batch, loss_fn=...)"),
        ]
    else:
        fixes.append(Fix("Stop earlier or lower the LR (ReduceLROnPlateau) if you want more",
                         "further epochs at this LR do not improve it", None))
    yield Finding("plateau", severity, title, metric=s.name, evidence=ev,
                  steps=(xval(x[start]), xval(x[-1])), explanation=expl.strip(), fixes=fixes)


def _top(values: np.ndarray) -> float | None:
    """The best value an accuracy-like score can take (1, or 100 in percent); None when the
    values are outside 0..1 and 0..100 (an R2 or a log-likelihood has no such ceiling)."""
    top = accuracy_scale(values)
    return top if 0.0 <= float(np.min(values)) and float(np.max(values)) <= top else None


def _partner_drop(history: RunHistory, s: Series, n_classes, chance_tol) -> dict | None:
    """How far the loss of the accuracy's split (else the training loss) fell: first smoothed
    value to the median of its last fifth, as a share of the first; None without one."""
    for role in (f"{s.split or 'train'}_loss", "val_loss", "train_loss"):
        p = history.primary(role)
        if p is None:
            continue
        p = epoch_curve(p, 3)
        if len(p) < 3:
            continue
        first = float(smooth(p.values)[0])
        end = float(np.median(p.values[-max(3, len(p) // 5):]))
        drop = (first - end) / first if first > 0 else 0.0
        at_chance = bool(n_classes) and abs(end - chance_loss(n_classes)) <= chance_tol * chance_loss(n_classes)
        return {"name": p.name, "first": first, "end": end, "drop": drop, "at_chance": at_chance}
    return None

