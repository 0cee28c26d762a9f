"""metric_disagreement: the loss and the accuracy of the same split tell different stories.

Two patterns:
- validation loss rising while validation accuracy keeps rising: the model grows overconfident
  on the examples it gets wrong (the loss punishes confident mistakes), it is not yet overfitting
  in accuracy terms (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, Fig. 3);
- a loss near 0 while accuracy sits at chance: the loss is not measuring the task (wrong targets,
  a loss computed on the wrong tensor, labels leaking into the input of the loss only).
"""

from __future__ import annotations

import numpy as np

from ..finding import Finding, Fix, Skip
from ..history import RunHistory, Series
from ..registry import detector
from ._sources import CE_DOCS, GOODFELLOW, GUO
from ._util import (
    accuracy_scale,
    classes_from_hparams,
    fmt,
    robust_noise,
    rolling_median,
    sig,
    smooth_window,
    value_at,
    xval,
)


def num_classes_of(history: RunHistory, num_classes) -> int | None:
    return int(num_classes) if num_classes else classes_from_hparams(history.hparams)


@detector("metric_disagreement", requires=(("val_loss", "train_loss"), ("val_accuracy", "train_accuracy")))
def metric_disagreement(
    history: RunHistory,
    *,
    # Loss rise past its best that counts: 10% of the best value and 3 noise units.
    rise_fraction: float = 0.1,
    rise_z: float = 3.0,
    # ...while accuracy still gained at least 1 point (0.01) after the loss's best.
    acc_gain: float = 0.01,
    # "Near 0": the loss ended below 0.05 and below 5% of where it started.
    near_zero: float = 0.05,
    # "At chance": accuracy within 5 points of 1/num_classes (or, classes unknown, no gain
    # above 2 points from its first value).
    chance_margin: float = 0.05,
    no_gain: float = 0.02,
    num_classes: int | None = None,
    min_points: int = 5,
):
    """Val loss rising while val accuracy rises (overconfidence); a loss near 0 at chance accuracy."""
    checked = False
    for split in ("val", "train"):
        loss_raw, acc_raw = history.primary(f"{split}_loss"), history.primary(f"{split}_accuracy")
        if loss_raw is None or acc_raw is None:
            continue
        loss, acc = loss_raw.finite(), acc_raw.finite()
        if len(loss) < min_points or len(acc) < min_points:
            continue
        checked = True
        scale = accuracy_scale(acc.values)
        yield from _near_zero_at_chance(history, loss_raw.name, acc_raw.name, loss, acc, scale,
                                        near_zero=near_zero, chance_margin=chance_margin,
                                        no_gain=no_gain, num_classes=num_classes)
        if split == "val":
            yield from _overconfidence(loss_raw.name, acc_raw.name, loss, acc, scale,
                                       rise_fraction=rise_fraction, rise_z=rise_z, acc_gain=acc_gain)
    if not checked:
        yield Skip("metric_disagreement",
                   f"no split has both a loss and an accuracy with at least {min_points} finite points")


def _overconfidence(loss_name, acc_name, loss: Series, acc: Series, scale, *, rise_fraction,
                    rise_z, acc_gain):
    n = len(loss)
    v = loss.values
    smooth = rolling_median(v, smooth_window(n) if n >= 30 else 3, edges="symmetric")
    n_tail = max(3, n // 10)
    if n - n_tail < 2:
        return
    i_best = int(np.argmin(smooth[: n - n_tail]))
    best = float(smooth[i_best])
    tail_loss = float(np.median(v[-n_tail:]))
    noise = robust_noise(v)
    rise = tail_loss - best
    if rise < max(rise_fraction * abs(best), rise_z * noise) or rise <= 0:
        return
    best_step = float(loss.steps[i_best])
    acc_best = value_at(acc, best_step) / scale
    acc_tail = float(np.median(acc.values[acc.steps > best_step][-n_tail:])) / scale \
        if (acc.steps > best_step).any() else acc_best
    gain = acc_tail - acc_best
    if gain < acc_gain:
        return
    unit = loss.unit
    x = loss.x()
    bx, lx = xval(x[i_best]), xval(x[-1])
    ev = {"unit": unit, f"loss_best_{unit}": bx, "loss_best": sig(best), "loss_final": sig(tail_loss),
          "loss_rise": sig(rise), "loss_noise": sig(noise), "accuracy_at_loss_best": sig(acc_best),
          "accuracy_final": sig(acc_tail), "accuracy_gain": sig(gain), "tail_points": n_tail,
          "accuracy_scale": scale,
          "thresholds": {"rise_fraction": rise_fraction, "rise_z": rise_z, "acc_gain": acc_gain}}
    title = (f"{loss_name} rose from {fmt(best)} to {fmt(tail_loss)} after {unit} {bx} while "
             f"{acc_name} still rose from {fmt(acc_best)} to {fmt(acc_tail)}: overconfidence")
    explanation = (
        f"After its best at {unit} {bx}, {loss_name} went from {fmt(best)} to {fmt(tail_loss)} "
        f"(median of the last {n_tail} points), yet {acc_name} went from {fmt(acc_best)} to "
        f"{fmt(acc_tail)}{' (read as a fraction of 100)' if scale == 100 else ''}. "
        "The model keeps getting more examples right, but becomes very confident on the ones it "
        "gets wrong, and cross-entropy punishes confident mistakes heavily. That is miscalibration, "
        "not (yet) overfitting: stopping or picking checkpoints on the loss would throw away "
        "accuracy."
    )
    fixes = [
        Fix(f"Select checkpoints and early-stop on {acc_name}, not {loss_name}",
            "accuracy is what kept improving", "ModelCheckpoint(monitor='val_acc', mode='max')"),
        Fix("Add label smoothing", "it caps how confident the model can get on any example",
            "loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)"),
        Fix("Calibrate afterwards with temperature scaling",
            "one scalar fitted on validation data fixes the confidence without changing accuracy",
            None),
    ]
    yield Finding("metric_disagreement", "info", title, loss_name, ev, (bx, lx), explanation, fixes)


def _near_zero_at_chance(history, loss_name, acc_name, loss: Series, acc: Series, scale, *,
                         near_zero, chance_margin, no_gain, num_classes):
    k = max(3, len(loss) // 10)
    start, end = float(np.median(loss.values[:k])), float(np.median(loss.values[-k:]))
    if not (end <= near_zero and end <= 0.05 * abs(start) and end >= 0):
        return
    ka = max(3, len(acc) // 10)
    acc_start = float(np.median(acc.values[:ka])) / scale
    acc_end = float(np.median(acc.values[-ka:])) / scale
    classes = num_classes_of(history, num_classes)
    ev = {"unit": loss.unit, "loss_start": sig(start), "loss_final": sig(end),
          "accuracy_start": sig(acc_start), "accuracy_final": sig(acc_end), "accuracy_scale": scale,
          "points_averaged": k,
          "thresholds": {"near_zero": near_zero, "near_zero_fraction_of_start": 0.05,
                         "chance_margin": chance_margin, "no_gain": no_gain}}
    if classes:
        chance = 1.0 / classes
        if acc_end > chance + chance_margin:
            return
        ev.update({"num_classes": classes, "chance_accuracy": sig(chance)})
        why = f"at chance: {fmt(acc_end)} against 1/{classes} = {fmt(chance)}"
    else:
        if acc_end - acc_start > no_gain:
            return
        why = f"no better than where it started ({fmt(acc_start)} -> {fmt(acc_end)})"
    x = loss.x()
    title = f"{loss_name} fell to {fmt(end)} but {acc_name} stayed {why}"
    explanation = (
        f"{loss_name} went from {fmt(start)} to {fmt(end)} (medians of the first and last {k} "
        f"points), while {acc_name} stayed {why}. A loss that is almost perfect while predictions "
        "are no better than guessing is measuring something other than the task: the targets fed "
        "to the loss are not the labels the accuracy uses, the loss is computed on the wrong "
        "tensor, or the labels leak into what the loss sees."
    )
    fixes = [
        Fix("Check that the loss and the accuracy get the same targets and the same predictions",
            "a loss near 0 with chance accuracy means they disagree about what is being predicted",
            "assert preds.argmax(-1).shape == y.shape; print(loss_fn(logits, y), (logits.argmax(-1) == y).float().mean())"),
        Fix("Check the loss input: logits for CrossEntropyLoss, log-probabilities for NLLLoss",
            "NLLLoss on raw outputs or a loss on an already-detached constant can be driven to 0 "
            "without learning the task", None),
    ]
    yield Finding("metric_disagreement", "warning", title, loss_name, ev,
                  (xval(x[0]), xval(x[-1])), explanation, fixes)


# -- impossible_value --------------------------------------------------------------------------

# Losses/errors that are >= 0 by definition (a squared or absolute difference, or -log of a
# probability, which is <= 1). Token match on the metric name.
_NONNEG_TOKENS = {"ce", "nll", "mse", "bce", "mae", "rmse", "cross_entropy", "crossentropy",
                  "l1", "l2", "huber", "smooth_l1", "kl", "kld", "logloss", "log_loss"}
# Scores bounded to [0, 1] (or 0..100 as a percentage). MCC/kappa (-1..1), R^2 (can be < 0),
# BLEU/ROUGE (often 0..100) and generic "score" are deliberately not here.
_UNIT_INTERVAL_TOKENS = {"acc", "accuracy", "top1", "top5", "f1", "f1score", "auc", "auroc",
                         "precision", "recall", "iou", "miou", "dice", "map", "map50", "jaccard",
                         "ap", "em"}
_FRACTION_OVERFLOW = 1.5
# float32 rounding can leave a clamped loss at -1e-7; do not call that impossible.
_TOL = 1e-6


def _name_tokens(name: str) -> set[str]:
    from ..history import _tokens

    toks = _tokens(name)
    joined = "_".join(toks)
    out = set(toks)
    for multi in ("cross_entropy", "smooth_l1", "log_loss"):
        if multi in joined:
            out.add(multi)
    return out


def _bad(s: Series, mask: np.ndarray) -> dict:
    x = s.x()
    idx = np.flatnonzero(mask)
    vals = s.values[idx]
    return {"unit": s.unit, "count": int(idx.size), "points": len(s),
            f"first_{s.unit}": xval(x[idx[0]]), "first_value": sig(vals[0]),
            "min": sig(np.min(s.values)), "max": sig(np.max(s.values)),
            "window": (xval(x[idx[0]]), xval(x[idx[-1]]))}


@detector("impossible_value")
def impossible_value(history: RunHistory, *, tolerance: float = _TOL):
    """A value its metric cannot take: negative CE/NLL/MSE, accuracy outside [0, 1], negative LR."""
    for raw in history.series.values():
        s = raw.finite()
        if len(s) == 0:
            continue
        toks = _name_tokens(raw.name)
        kind = raw.kind
        thresholds = {"tolerance": tolerance}
        if kind in ("loss", "error"):
            named = sorted(toks & _NONNEG_TOKENS)
            is_ppl = bool(toks & {"perplexity", "ppl"})
            if is_ppl:
                mask = s.values < 1 - tolerance
                if mask.any():
                    yield _finding(raw, s, mask, "warning", "perplexity is exp(loss) >= 1",
                                   "below 1", 1.0, thresholds, _ppl_fixes())
                continue
            mask = s.values < -tolerance
            if not mask.any():
                continue
            if named:
                yield _finding(raw, s, mask, "warning",
                               f"a {'/'.join(named)} loss is never negative", "below 0", 0.0,
                               thresholds, _negative_loss_fixes(named))
            elif kind == "loss":
                yield _finding(raw, s, mask, "info",
                               "a loss whose name does not say which loss it is may be negative "
                               "legitimately (ELBO, contrastive, log-likelihood terms), so this "
                               "is context only", "below 0", 0.0, thresholds, ())
        elif kind == "accuracy" and toks & _UNIT_INTERVAL_TOKENS:
            vals = s.values
            if vals.min() >= -tolerance and vals.max() <= 1 + tolerance:
                continue
            # An overflowing fraction is off by an averaging or epsilon bug (a few %), not by a
            # factor: most values inside [0, 1] and none above 1.5 (a Keras F1 of 1.09 among
            # 0.90-0.99) is a fraction above 1; larger values (detectron2's AP of 0.5-3.2 in %)
            # are a percentage.
            fraction = np.median(vals) <= 1 and vals.max() <= _FRACTION_OVERFLOW
            if vals.min() >= -tolerance and vals.max() <= 100 + tolerance and not fraction:
                ev = {"unit": s.unit, "points": len(s), "min": sig(vals.min()), "max": sig(vals.max()),
                      "scale": 100, "thresholds": {**thresholds, "percent_range": [0, 100]}}
                yield Finding(
                    "impossible_value", "info",
                    f"{raw.name} is on a 0-100 scale (max {fmt(vals.max())}); read as a percentage",
                    raw.name, ev, None,
                    f"All {len(s)} values of {raw.name} lie in 0..100 and some exceed 1 "
                    f"(min {fmt(vals.min())}, max {fmt(vals.max())}), so they are read as percentages. "
                    "Nothing is wrong if that is how you log it.", ())
                continue
            if fraction:  # above 1 is impossible
                mask = (vals < -tolerance) | (vals > 1 + tolerance)
                where = "outside [0, 1]"
            else:
                mask = (vals < -tolerance) | (vals > 100 + tolerance)
                where = "outside [0, 1] and 0..100"
            yield _finding(raw, s, mask, "warning", "an accuracy-type score lies in [0, 1] "
                           "(or 0..100 as a percentage)", where, None,
                           {**thresholds, "percent_range": [0, 100]}, _accuracy_fixes())
        elif kind == "lr":
            mask = s.values < -tolerance
            if mask.any():
                yield _finding(raw, s, mask, "warning", "a learning rate is never negative",
                               "below 0", 0.0, thresholds, _lr_fixes())


def _finding(raw: Series, s: Series, mask, severity, rule, where, bound, thresholds, fixes):
    ev = _bad(s, mask)
    window = ev.pop("window")
    ev["rule"] = rule
    if bound is not None:
        ev["bound"] = bound
    ev["thresholds"] = thresholds
    unit = s.unit
    title = (f"{raw.name} has {ev['count']} of {ev['points']} values {where} "
             f"(first at {unit} {ev[f'first_{unit}']}: {fmt(ev['first_value'])}; "
             f"min {fmt(ev['min'])}, max {fmt(ev['max'])})")
    explanation = (f"{rule[0].upper() + rule[1:]}, but {raw.name} went {where} {ev['count']} times, "
                   f"first at {unit} {ev[f'first_{unit}']} ({fmt(ev['first_value'])}).")
    if severity == "warning":
        explanation += (" A value the metric cannot take means the computation is wrong, not the "
                        "model: the wrong loss for these targets, targets outside the range the "
                        "loss expects, or a metric aggregated incorrectly.")
    return Finding("impossible_value", severity, title, raw.name, ev, window, explanation, fixes)


def _negative_loss_fixes(named):
    return [
        Fix("NLLLoss expects log-probabilities: apply log_softmax first, or use CrossEntropyLoss "
            "on raw logits", "NLLLoss only negates its input, so probabilities or logits make it "
            "negative", "loss = F.cross_entropy(logits, y)  # not F.nll_loss(logits, y)"),
        Fix("For BCE, check the targets lie in [0, 1]",
            "targets outside [0, 1] make binary cross-entropy negative",
            "assert ((y >= 0) & (y <= 1)).all()"),
        Fix("Check for a term subtracted from the loss (a regulariser with the wrong sign)",
            "a squared or absolute error cannot go below 0 on its own", None),
    ]


def _ppl_fixes():
    return [Fix("Compute perplexity as exp(mean token cross-entropy)",
                "exp of a non-negative loss is at least 1", "ppl = math.exp(mean_ce)")]


def _accuracy_fixes():
    return [Fix("Divide the number correct by the number of examples, once",
                "summed counts or a mean over the wrong dimension give values above 1",
                "acc = (logits.argmax(-1) == y).float().mean().item()")]


def _lr_fixes():
    return [Fix("Check the schedule's formula and its end point",
                "a linear decay run past its last step, or a cosine with a wrong period, goes "
                "below 0 and turns descent into ascent", None)]


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "metric_disagreement": {
        "summary": "validation loss and accuracy tell different stories",
        "meaning": "Loss rising while accuracy rises means growing over-confidence on the "
                   "mistakes; a loss near 0 with accuracy at chance means the loss is not measuring "
                   "the task (wrong targets, leak).",
        "detection": "Compares the trends of val loss and val accuracy, and accuracy with chance level.",
        "fixes": ["Pick the checkpoint on the metric you care about",
                  "Check the loss and the metric use the same targets"],
        "sources": [GOODFELLOW, GUO],
    },
    "impossible_value": {
        "summary": "a value its metric cannot take",
        "meaning": "A negative cross-entropy or MSE, or an accuracy/F1 outside [0, 1], means the "
                   "loss, the targets or the metric's aggregation are wrong (e.g. NLLLoss on "
                   "probabilities, an F1 averaged over batches with an epsilon bug).",
        "detection": "Compares each series with the range its name allows; a score with values "
                     "above 1 is read as a percentage unless most values lie in [0, 1] and none "
                     "exceeds 1.5 (a fraction that overflows).",
        "fixes": ["Check the loss function matches the model's outputs (logits vs probabilities)",
                  "Check the metric's normalisation"],
        "sources": [CE_DOCS],
    },
}
