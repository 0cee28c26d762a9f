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
from ._sources import KARPATHY, PLATEAU_DOCS, ROUSSEEUW, SMITH
from ._util import (
    accuracy_scale,
    chance_loss,
    classes_from_accuracy,
    classes_from_hparams,
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
        if gain > limit:
            continue  # cheapest test first: most candidates on a falling curve stop here
        # ...and no trend: a least-squares line through the whole stretch changes by less than
        # k standard errors of such a change (sigma * sqrt(12 / m) for m points with independent
        # noise). The thirds' medians miss a steady decline buried in large minibatch noise;
        # the line uses every point and catches it.
        m = seg.size
        xs = np.arange(m) - (m - 1) / 2.0
        trend = abs(float(np.dot(xs, seg - seg.mean()) / np.dot(xs, xs))) * (m - 1)
        if trend > k * noise * math.sqrt(12.0 / m):
            continue
        # Flat also means it was never meaningfully better inside the stretch than where it ends:
        # a curve that went down and back up (val loss around its best epoch, seed 000) or that
        # rises is overfitting/divergence, not a plateau, though its first and last thirds match.
        # Medians over windows of `third` points (the statistic `limit` is made for), a quarter
        # window apart: linear in the length, so 100k-point histories stay fast.
        stride = max(1, third // 4)
        inside = min(float(np.median(seg[j:j + third])) for j in range(0, seg.size - third + 1, stride))
        if end - inside <= limit:
            level = float(np.median(seg))
            near = np.flatnonzero(rolling_median(seg, 3) <= level + k * noise)
            return i + int(near[0]) if near.size else i
    return None


def median_at(values: np.ndarray, i: int, window: int) -> float:
    """The centred running median at index i, its window cut off at the ends (what
    `smooth(values, window)[i]` is), without smoothing the whole series for one point."""
    h = window // 2
    n = values.size
    i = i if i >= 0 else n + i
    return float(np.median(values[max(0, i - h): min(n, i + h + 1)]))


def strided_range(values: np.ndarray, window: int) -> float:
    """The range (max - min) of the running median over `window` points, sampled every quarter
    window: linear in the length, what the evidence's "moved" needs."""
    n = values.size
    if n <= window:
        return float(np.ptp([median_at(values, i, window) for i in range(n)])) if n else 0.0
    stride = max(1, window // 4)
    meds = [float(np.median(values[j:j + window])) for j in range(0, n - window + 1, stride)]
    return float(np.ptp(meds))


def class_count(history: RunHistory) -> tuple[int | None, str]:
    """Class count from hparams, else from an accuracy stuck at 1/C; with where it came from."""
    c = classes_from_hparams(history.hparams)
    if c:
        return c, "hparams"
    from ..history import _tokens

    # Chance is 1/C for a classification accuracy only: an mAP, F1, IoU or BLEU of 0.2 says
    # nothing about a class count (a DETR's bbox_mAP of 0.186 is not "stuck at 1/5").
    accs = [s for s in history.series.values()
            if s.kind == "accuracy" and {"acc", "accuracy", "top1"} & set(_tokens(s.name))]
    for s in sorted(accs, key=lambda s: (s.split != "train", s.name)):
        if len(s.finite()) >= 5:
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
    warn_share: float = 0.5,  # flat for half the run or more: long enough to act on
    info_share: float = 0.3,  # flat for the last 30%: context only
    # A training curve that fell >= 50% of its start (an accuracy: removed >= 50% of its first
    # errors) before flattening has converged; a smaller fall, flat for half the run, is an
    # optimiser that stopped making progress far from its floor.
    converged_drop: float = 0.5,
    # A validation curve "did not learn" when it improved by less than 10% of its start (of its
    # first error for an accuracy); more than that is learning, and a stall after it is
    # convergence or a generalisation gap, never a reason to raise the LR.
    learn_share: float = 0.1,
    chance_tol: float = 0.1,  # within 10% of ln C counts as "at the chance-level loss"
    const_rel: float = 5e-4,  # flatter than this is loss_constant's business
) -> Iterable[Finding | Skip]:
    """No meaningful improvement since a step, judged by whether the run learned at all."""
    n_classes, c_source = class_count(history)
    p = dict(min_points=min_points, k_noise=k_noise, warn_share=warn_share, info_share=info_share,
             converged_drop=converged_drop, learn_share=learn_share, chance_tol=chance_tol,
             n_classes=n_classes)
    memo: dict = {}
    for raw in candidates(history):
        s = raw.finite()
        if len(s) < min_points:
            yield Skip("plateau", f"{raw.name} has {len(s)} finite points; needs {min_points}")
            continue
        v = s.values
        if s.kind == "loss" and np.ptp(v) <= const_rel * max(float(np.median(np.abs(v))), 1e-12):
            continue  # a loss that does not move at all: reported by loss_constant
        j = _judge(s, history, memo, p)
        if j is not None:
            yield _finding(s, history, j, c_source, p)


def candidates(history: RunHistory) -> list[Series]:
    """Every loss (a stuck component hides inside a moving total, seed 001), then the main
    accuracies. One quantity gets one judgement: a loss logged both per step and as an epoch
    mean (Lightning's train_loss_step / train_loss_epoch) is judged on the epoch mean, the same
    numbers with less noise."""
    from .overfitting import metric_key

    groups: dict = {}
    for s in history.series.values():
        if s.role in ("train_loss", "val_loss") and len(s) > 0:
            groups.setdefault((s.role, metric_key(s.name)), []).append(s)
    out = []
    for group in groups.values():
        def rank(s):
            toks = s.name.lower()
            return ("epoch" not in toks, "step" in toks, -len(s), s.name)
        out.append(sorted(group, key=rank)[0])
    for role in ("train_accuracy", "val_accuracy"):
        s = history.primary(role)
        if s is not None and len(s) > 0:
            out.append(s)
    return out


def _judge(s: Series, history: RunHistory, memo: dict, p: dict) -> dict | None:
    """Where the flat stretch starts and what it means; None when the curve is not flat."""
    if s.name in memo:
        return memo[s.name]
    memo[s.name] = None  # no recursion through a train/val pair
    v = s.values
    n = len(s)
    hib = s.higher_is_better
    w = max(3, (n // 20) | 1)
    noise = noise_scale(v)
    start = plateau_start(v, noise, p["k_noise"], hib)
    if start is None:
        return None
    flat = n - start
    share = flat / n
    if flat < p["min_points"] or share < p["info_share"]:
        return None
    third = max(1, flat // 3)
    level = float(np.median(v[start:]))
    # Where it started: the smoothed first point, a median over the first ~2.5% of the run.
    # A drop inside those first points (fitting the output bias, the mean target: Karpathy,
    # "A Recipe for Training Neural Networks", 2019) is not learning the task.
    first = median_at(v, 0, w)
    gain = (level - first) if hib else (first - level)
    # How much of the way it came: a loss relative to its first level; an accuracy relative to
    # its first *error* (1 - acc, or 100 - acc in %), so 0.84 -> 0.96 removes 75% of the errors.
    top = _top(v) if hib else None
    base = (top - first) if top is not None else abs(first)
    learned = gain / base if base > 0 else 0.0
    sm_noise = noise * 1.25 / math.sqrt(w)  # the noise of a median of w points
    real_gain = gain > p["k_noise"] * sm_noise
    rose = gain < -p["k_noise"] * sm_noise
    j = {"start": start, "flat": flat, "share": share, "third": third, "level": level,
         "first": first, "gain": gain, "learned": learned, "top": top, "noise": noise, "w": w,
         "moved": strided_range(v[start:], w), "rose": rose,
         "thr": p["k_noise"] * noise * 1.25 * math.sqrt(2.0 / third)}
    n_classes, tol = p["n_classes"], p["chance_tol"]
    j["at_chance"] = False
    if n_classes and s.kind == "loss":
        j["chance"] = chance_loss(n_classes)
        j["at_chance"] = abs(level - j["chance"]) <= tol * j["chance"]
    elif n_classes and s.kind == "accuracy":
        j["chance"] = 1.0 / n_classes
        lvl = level / 100 if level > 1 else level
        j["at_chance"] = abs(lvl - j["chance"]) <= tol * j["chance"] + 0.01  # a point of slack
    # An accuracy is judged with its loss: if the loss of the same split fell most of the way,
    # the model learned, and a flat accuracy means it was already near its ceiling at the first
    # check (wine: 0.977 on 44 samples from epoch 0 while the val loss went 0.375 -> 0.05).
    partner = _partner_drop(history, s, n_classes, tol) if s.kind == "accuracy" else None
    j["partner"] = partner
    partner_learned = (partner is not None and partner["drop"] >= p["converged_drop"]
                       and not partner["at_chance"])
    j["majority"] = False
    if s.kind == "accuracy" and start == 0 and not partner_learned:
        lvl = level / 100 if level > 1 else level
        if classes_from_accuracy(lvl) is None and 0 < lvl < 1:
            # flat from the first check at a level that is not 1/C: the share of the most
            # frequent class (or token), what predicting it for every input scores
            j["majority"] = True
    learned_enough = partner_learned or (real_gain and learned >= p["converged_drop"])
    if s.split == "val":
        # A validation curve did not learn when it moved less than learn_share of its start.
        # Whether that is the optimiser's fault depends on training: if the training loss kept
        # improving, validation stalling is a generalisation gap (overfitting's finding, with
        # the fix that matters: more LR would be the wrong advice); if it is stuck too, or was
        # not logged, nothing in the run learned.
        from .overfitting import train_twin

        own_stuck = not partner_learned and not (real_gain and learned >= p["learn_share"])
        twin = train_twin(history, s) if s.kind == "loss" else history.primary("train_loss")
        tj = None
        if twin is not None and len(twin.finite()) >= p["min_points"]:
            tj = _judge(twin.finite(), history, memo, p) or {"stuck": False}
            j["train_series"] = twin.name
            j["train_stuck"] = tj["stuck"]
        own_stuck = own_stuck and share >= p["warn_share"] and not rose
        bad = j["at_chance"] or j["majority"] or own_stuck
        j["gap"] = bad and tj is not None and not tj["stuck"]
        j["stuck"] = own_stuck and not j["gap"]
        j["warn"] = bad and not j["gap"]
    else:
        # A training curve is stuck when it fell less than converged_drop before flattening for
        # half the run, unless the run's task score says the model learned anyway (one noisy
        # component of a detector's loss flattening while its precision climbs is convergence).
        # A curve that rose and stayed is a divergence, not a plateau.
        if "__task__" not in memo:
            memo["__task__"] = task_learned(history, p["converged_drop"])
        j["task_learned"] = memo["__task__"]
        learned_enough = learned_enough or (s.kind == "loss" and memo["__task__"] is not None)
        j["stuck"] = share >= p["warn_share"] and not learned_enough and not rose
        j["gap"] = False
        j["warn"] = j["at_chance"] or j["majority"] or j["stuck"]
    j["converged"] = not j["stuck"] and not j["at_chance"] and not j["majority"] and not j["gap"]
    memo[s.name] = j
    return j


def _finding(s: Series, history: RunHistory, j: dict, c_source: str, p: dict) -> Finding:
    unit = s.unit
    x = s.x(unit)
    n = len(s)
    start, flat, level, first, gain, learned = (j[k] for k in ("start", "flat", "level", "first",
                                                               "gain", "learned"))
    top, noise, thr, third = j["top"], j["noise"], j["thr"], j["third"]
    since = xval(x[start])
    ev = {
        "unit": unit, f"since_{unit}": since, f"last_{unit}": xval(x[-1]),
        "since_step": xval(s.steps[start]),
        "flat_points": flat, "points": n, "flat_share": sig(j["share"], 3),
        "level": sig(level), "moved_smoothed": sig(j["moved"]), "noise": sig(noise),
        "first_smoothed": sig(first),
        "improvement_before": sig(gain), "improvement_before_share": sig(learned, 3),
        "improvement_measured_against": (f"the first error {fmt(top - first)} (= {fmt(top)} - "
                                         f"{fmt(first)})" if top is not None else "the first level"),
        "smoothing_window": j["w"], "compared_points": third,
        "thresholds": {"k_noise": p["k_noise"], "meaningful_change": sig(thr),
                       "warn_share": p["warn_share"], "info_share": p["info_share"],
                       "converged_drop": p["converged_drop"], "learn_share": p["learn_share"],
                       "chance_tol": p["chance_tol"], "min_points": p["min_points"]},
    }
    n_classes = p["n_classes"]
    if n_classes:
        ev["n_classes"] = n_classes
        ev["n_classes_from"] = c_source
        if "chance" in j:
            ev["chance_loss" if s.kind == "loss" else "chance_accuracy"] = sig(j["chance"])
    partner = j["partner"]
    if partner is not None:
        ev.update({"loss_partner": partner["name"], "loss_partner_first": sig(partner["first"]),
                   "loss_partner_end": sig(partner["end"]),
                   "loss_partner_drop_share": sig(partner["drop"], 3),
                   "loss_partner_drop_pct": sig(100 * partner["drop"], 3)})
    if "train_series" in j:
        ev["train_series"] = j["train_series"]
        ev["train_stuck"] = j["train_stuck"]
    if j["majority"]:
        ev["majority_class_share_guess"] = sig(level / 100 if level > 1 else level, 3)
    severity = "warning" if j["warn"] else "info"
    title = f"{s.name} has not improved meaningfully since {unit} {since} ({flat} of {n} points, level {fmt(level)})"
    expl = (f"Since {unit} {since} the median of the first third of {s.name} and of the last "
            f"third differ by less than {fmt(thr)}, what counts as a real change for medians of "
            f"{third} points of a curve this noisy (noise {fmt(noise)}). ")
    how = (f"{fmt(gain)} ({fmt(100 * learned, 3)}% of {ev['improvement_measured_against']})")
    fixes = []
    if j["gap"]:
        what = ("at chance" if j["at_chance"] else "at the majority-class share" if j["majority"]
                else f"after improving by only {how}")
        expl += (f"{s.name} sits {what}, while the training loss {j['train_series']} kept "
                 "improving: validation that stalls while training improves is a generalisation "
                 "gap (see overfitting: memorising, or train and validation data that differ), "
                 "not a learning rate too low.")
    elif j["at_chance"] and s.kind == "accuracy":
        title = (f"{s.name} is stuck at the chance level 1/{n_classes} = {fmt(ev['chance_accuracy'])} "
                 f"(level {fmt(level)})")
        expl += (f"An accuracy of 1/{n_classes} is what guessing among {n_classes} classes scores: "
                 "the model has learnt nothing. ")
        fixes.append(Fix("Check that labels match inputs (shuffled separately? wrong column?)",
                         "a model that cannot beat guessing usually sees broken data or targets",
                         None))
    elif j["at_chance"]:
        title = f"{s.name} is stuck at the chance-level loss ln {n_classes} = {fmt(ev['chance_loss'])}"
        expl += (f"A loss of ln {n_classes} = {fmt(ev['chance_loss'])} is what predicting every one of "
                 f"{n_classes} classes with equal probability gives: the model has learnt nothing. ")
        fixes.append(Fix("Check that labels match inputs and the loss gets logits (not softmax outputs)",
                         "a model that cannot beat uniform guessing usually sees broken data or targets",
                         None))
    elif j["majority"]:
        title = (f"{s.name} has been flat at {fmt(ev['majority_class_share_guess'], 3)} since {unit} "
                 f"{since}: not 1/C, so likely the majority-class share")
        expl += ("An accuracy that never moves from the start and is not 1/C is typically the share "
                 "of the most frequent class (or token): the model predicts one class for every input. ")
        fixes.append(Fix("Weight the loss by class (weights n_samples / (n_classes * count_c)) "
                         "or resample to balance classes",
                         "so predicting the majority class is no longer a good minimum",
                         "torch.nn.CrossEntropyLoss(weight=class_weights)"))
    elif j["rose"]:
        expl += (f"Before that it got worse by {fmt(-gain)} from its start ({fmt(first)} smoothed): a "
                 "curve that rose and then stayed is a divergence or overfitting, reported by those "
                 "checks, not a plateau.")
    elif j["converged"] and partner is not None and partner["drop"] >= p["converged_drop"]:
        expl += (f"Its loss {partner['name']} fell from {fmt(partner['first'])} to "
                 f"{fmt(partner['end'])} ({fmt(100 * partner['drop'], 3)}%), so the model learned: "
                 f"{s.name} was near its ceiling early, which looks like convergence.")
    elif j["converged"] and j.get("task_learned") and learned < p["converged_drop"]:
        tl = j["task_learned"]
        ev["task_score"] = tl["name"]
        ev["task_score_first"] = sig(tl["first"])
        ev["task_score_best"] = sig(tl["best"])
        expl += (f"It improved by {how}, but {tl['name']} rose from {fmt(tl['first'])} to "
                 f"{fmt(tl['best'])} (smoothed best): the model learned its task, so this term "
                 "flattening is convergence.")
    elif j["converged"]:
        expl += f"Before that it improved by {how}, so this looks like convergence."
    else:
        if start == 0:
            expl += "It never improved: the model is not learning from the data at all. "
        else:
            expl += f"It improved by only {how} before flattening. "
        if "train_series" in j:
            expl += f"The training loss {j['train_series']} is stuck too. "
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
    return Finding("plateau", severity, title, metric=s.name, evidence=ev,
                   steps=(since, xval(x[-1])), explanation=expl.strip(), fixes=fixes)


def task_learned(history: RunHistory, share: float) -> dict | None:
    """The first accuracy-like score of the run (validation first) whose best smoothed value
    removed at least `share` of its first error (1 - acc), as {name, first, best, share};
    None when no score shows that the model learned its task."""
    scores = sorted((s for s in history.series.values() if s.kind == "accuracy"),
                    key=lambda s: (s.split != "val", s.name))
    for s in scores:
        v = s.finite().values
        if v.size < 5:
            continue
        top = _top(v)
        if top is None:
            continue
        first = float(np.median(v[:3]))
        best = float(np.max(rolling_median(v, 3)))
        if top - first > 0 and (best - first) >= share * (top - first):
            return {"name": s.name, "first": first, "best": best,
                    "share": (best - first) / (top - first)}
    return None


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
        p = p.finite()
        if len(p) < 3:
            continue
        first = float(smooth(p.values)[0])
        end = float(np.median(p.values[-max(3, len(p) // 5):]))
        drop = (first - end) / first if first > 0 else 0.0
        at_chance = bool(n_classes) and abs(end - chance_loss(n_classes)) <= chance_tol * chance_loss(n_classes)
        return {"name": p.name, "first": first, "end": end, "drop": drop, "at_chance": at_chance}
    return None


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "plateau": {
        "summary": "no meaningful improvement since a step",
        "meaning": "The curve has stopped going down. After a real improvement that is "
                   "convergence (info). It needs action when the run did not learn: the level is "
                   "near its start or at chance, or an accuracy sits at the majority-class share. "
                   "A validation curve that stalls while training keeps improving is a "
                   "generalisation gap (overfitting), not a learning rate that is too low.",
        "detection": "Finds the first point from which the medians of the first and last thirds "
                     "agree within 3 noise units (as standard errors of medians), nothing inside "
                     "was better, and a least-squares line shows no trend. Every logged point counts "
                     "(no epoch means). A training curve warns when flat for half the run after "
                     "falling less than 50% of its start (an accuracy: of its first error 1 - acc), "
                     "unless a task score of the run removed half its errors; a validation curve "
                     "warns when it moved less than 10% and training is stuck too or not logged.",
        "fixes": ["If nothing learned: check data and labels, then run an LR range test",
                  "If training improves but validation does not: see overfitting",
                  "If converged: stop earlier or lower the LR (ReduceLROnPlateau) for more"],
        "sources": [SMITH, PLATEAU_DOCS, ROUSSEEUW, KARPATHY],
    },
}
