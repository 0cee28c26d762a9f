"""Checks on the batch, the predictions and the loss at the current point (no optimizer steps).

nan_inputs, unnormalized_inputs, class_imbalance, init_loss_mismatch, prediction_collapse,
input_independent_output, output_range_mismatch, double_softmax.
"""

from __future__ import annotations

import math

from ..finding import Finding, Fix, Skip
from ..registry import probe
from ._context import batch_size, input_tensors, map_inputs, need_loss, r4
from .labels import attention_mask, class_view, close, distribution, ignore_index_of, integer_labels


def loss_kind(ctx) -> str | None:
    """'ce', 'bce_logits', 'bce', 'mse', 'nll' from the loss_fn (module or functional), else None."""
    fn = ctx.loss_fn
    if fn is None:
        # HF-style models compute cross-entropy when given integer labels
        t, p = ctx.targets, ctx.base.pred
        if ctx.base.loss_source == "model" and t is not None and p is not None and not t.is_floating_point():
            return "ce"
        return None
    import torch.nn as nn
    import torch.nn.functional as F

    table = [(nn.CrossEntropyLoss, F.cross_entropy, "ce"), (nn.BCEWithLogitsLoss, F.binary_cross_entropy_with_logits,
             "bce_logits"), (nn.BCELoss, F.binary_cross_entropy, "bce"), (nn.MSELoss, F.mse_loss, "mse"),
             (nn.NLLLoss, F.nll_loss, "nll")]
    for cls, func, kind in table:
        if isinstance(fn, cls) or fn is func:
            return kind
    return None


def class_labels(ctx):
    """Integer class labels (the loss's ignore_index dropped) when the task is classification, else None."""
    t = ctx.targets
    if not integer_labels(t):
        return None
    labels = t.reshape(-1)
    return labels[labels != ignore_index_of(ctx.loss_fn)]


# -- inputs ----------------------------------------------------------------------------------

@probe("nan_inputs")
def nan_inputs(ctx):
    """NaN or Inf values in the inputs or targets (the other checks are then skipped)."""
    import torch

    parts = [("inputs", t) for t in input_tensors(ctx.inputs)]
    if isinstance(ctx.targets, torch.Tensor):
        parts.append(("targets", ctx.targets))
    rows = []
    for where, t in parts:
        if t.is_floating_point() or t.is_complex():
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            if nan or inf:
                rows.append({"tensor": where, "nan": nan, "inf": inf, "numel": t.numel()})
    if not rows:
        return
    what = ", ".join(f"{r['tensor']}: {r['nan']} NaN, {r['inf']} Inf of {r['numel']}" for r in rows)
    ctx.cache["blocked"] = ("nan_inputs", f"the batch has non-finite values ({what})")
    yield Finding(
        "nan_inputs", "error", f"The batch contains non-finite values ({what})", metric=rows[0]["tensor"],
        evidence={"tensors": rows, "thresholds": {"allowed_non_finite": 0}},
        explanation=("A single NaN in the inputs or targets makes the loss and every gradient NaN, and the "
                     "weights NaN after one step. The other probe checks were skipped because their "
                     "numbers would be meaningless."),
        fixes=(Fix("Find and clean the source rows (missing values, division by zero in preprocessing)",
                   "the model cannot recover from NaN weights",
                   "assert torch.isfinite(x).all(), 'NaN in inputs'\nx = torch.nan_to_num(x, nan=0.0)"),),
    )


@probe("unnormalized_inputs")
def unnormalized_inputs(ctx, *, max_scale: float = 10.0, max_feature_spread: float = 1000.0):
    """Float inputs with mean or std beyond 10 (e.g. 0..255 pixels), or feature scales 1000x apart.

    Networks are initialised for inputs of roughly unit scale (LeCun et al. 1998, "Efficient
    BackProp": standardise each input); 10 and 1000 leave a wide margin for healthy data.
    """
    rows = []
    for t in input_tensors(ctx.inputs):
        if not t.is_floating_point() or t.numel() < 2:
            continue
        x = t.detach().double()
        mean, std = float(x.mean()), float(x.std())
        spread = None
        if x.dim() == 2 and x.shape[0] >= 2:
            stds = x.std(dim=0)
            nz = stds[stds > 0]
            if nz.numel() >= 2:
                spread = float(nz.max() / nz.min())
        row = {"shape": list(t.shape), "mean": r4(mean), "std": r4(std), "min": r4(float(x.min())),
               "max": r4(float(x.max())), "feature_std_spread": r4(spread)}
        if abs(mean) > max_scale or std > max_scale or (spread is not None and spread > max_feature_spread):
            rows.append(row)
    if not rows:
        return
    r = rows[0]
    scale = abs(r["mean"]) > max_scale or r["std"] > max_scale
    title = (f"Inputs are not normalised: mean {r['mean']}, std {r['std']}, range {r['min']}..{r['max']}" if scale
             else f"Input features differ in scale by {r['feature_std_spread']}x (std of the widest / narrowest)")
    yield Finding(
        "unnormalized_inputs", "warning", title, metric="inputs",
        evidence={"tensors": rows, "thresholds": {"max_scale": max_scale, "max_feature_spread": max_feature_spread}},
        explanation=("Default initialisations assume inputs of about unit scale. Large inputs saturate "
                     "activations and give huge gradients to the first layer; features on very different "
                     "scales make the loss surface badly conditioned, so one LR is too big for some "
                     "weights and too small for others."),
        fixes=(Fix("Standardise the inputs with statistics from the training set",
                   "zero mean and unit variance per feature or channel",
                   "x = (x - mean) / std   # e.g. pixels: x / 255 then torchvision Normalize"),),
    )


# -- labels and the loss at the current point ---------------------------------------------------

@probe("class_imbalance")
def class_imbalance(ctx, *, min_ratio: float = 1.5, warn_ratio: float = 4.0, z: float = 3.0):
    """Label shares in the batch and the weights to use: w_c = N / (C * n_c), mean 1 over samples.

    Flagged only when the largest/smallest class ratio is at least 1.5 and the smallest class is more
    than 3 binomial standard deviations below an even share (so a random balanced batch does not fire);
    a warning from a ratio of 4.
    """
    import torch

    labels = class_labels(ctx)
    if labels is not None and ctx.targets.dim() > 1:
        yield from _token_imbalance(ctx, labels)
        return
    if labels is None:
        t = ctx.targets
        kind = loss_kind(ctx) if t is not None else None
        if kind in ("bce", "bce_logits") and t is not None and bool(((t == 0) | (t == 1)).all()):
            labels = t.reshape(-1).long()
        else:
            yield Skip("class_imbalance", "needs class labels (integer targets or 0/1 targets with BCE)")
            return
    if labels.numel() < 2:
        yield Skip("class_imbalance", f"only {labels.numel()} label(s) in the batch")
        return
    classes, counts = torch.unique(labels, return_counts=True)
    n, c = int(labels.numel()), int(classes.numel())
    if c < 2:
        return  # one class only: prediction_collapse / the data pipeline, not weighting
    cnt = [int(k) for k in counts]
    expected = n / c
    sd = math.sqrt(n * (1 / c) * (1 - 1 / c))
    zmin = (min(cnt) - expected) / sd
    ratio = max(cnt) / min(cnt)
    if ratio < min_ratio or zmin > -z:
        return
    weights = [r4(n / (c * k)) for k in cnt]
    shares = [r4(k / n) for k in cnt]
    alpha = [r4((n / (c * k)) / sum(n / (c * j) for j in cnt)) for k in cnt]
    table = [{"class": int(cl), "count": k, "share": s, "percent": r4(100 * k / n), "weight": w, "focal_alpha": a}
             for cl, k, s, w, a in zip(classes.tolist(), cnt, shares, weights, alpha)][:50]
    # BCE takes one pos_weight = n_negative / n_positive instead of per-class weights
    pos_weight = r4(cnt[0] / cnt[1]) if c == 2 and loss_kind(ctx) in ("bce", "bce_logits") else None
    lines = ", ".join(f"{row['class']}: {row['percent']}%" for row in table[:10])
    wtxt = ", ".join(str(w) for w in weights[:10])
    yield Finding(
        "class_imbalance", "warning" if ratio >= warn_ratio else "info",
        f"Classes are imbalanced in this batch ({lines}); inverse-frequency weights {wtxt}",
        metric="labels",
        evidence={"classes": table, "n": n, "num_classes": c, "max_min_ratio": r4(ratio), "smallest_z": r4(zmin),
                  "weights": weights, "focal_alpha": alpha, "bce_pos_weight": pos_weight,
                  "weight_formula": "w_c = N / (C * n_c)  (inverse frequency, mean weight over samples = 1)",
                  "focal_alpha_formula": "alpha_c = w_c / sum_k w_k",
                  "note": "shares from this one batch; compute the weights from the whole training set",
                  "thresholds": {"min_ratio": min_ratio, "warn_ratio": warn_ratio, "z": z}},
        explanation=(
            f"The largest class has {r4(ratio)}x as many examples as the smallest. A model can lower the "
            "loss by predicting the majority class, so the loss looks flat while minority classes are "
            "never learned. Weighting each class by N / (C * n_c) makes every class contribute equally."
        ),
        fixes=(
            Fix("Weight the loss by class", "each class contributes equally to the gradient",
                f"loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor({pos_weight}))" if pos_weight is not None
                else f"loss_fn = nn.CrossEntropyLoss(weight=torch.tensor({weights}))"),
            Fix("Or resample: a WeightedRandomSampler with per-example weight w_c", "balanced batches",
                "sampler = WeightedRandomSampler(example_weights, num_samples=len(example_weights))"),
        ),
    )


def _token_imbalance(ctx, labels, *, max_token_share: float = 0.3, max_labelled_padding: float = 0.01,
                     vocabulary: int = 256):
    """Per-token labels: Zipf-like shares are the task (no weights), but not one token taking 30%.

    In natural text the most frequent token takes a few percent of a BPE corpus and about 15-20% of
    a character-level one (the space), so a token above 30% of the labelled positions is repeated
    by the pipeline (padding or EOS left in the labels), or the labels are not text. Labelled
    positions where attention_mask is 0 are padding the model is trained to predict (HF: set those
    labels to -100). Labels that repeat the input ids (shifted or not) are language modelling; other
    per-token labels with at most 256 classes (token classification) get info with weights instead.
    """
    t, ii = ctx.targets, ignore_index_of(ctx.loss_fn)
    if labels.numel() < 2:
        yield Skip("class_imbalance", f"only {labels.numel()} labelled position(s) in the batch")
        return
    d = distribution(labels)
    view = class_view(ctx)
    classes = view.num_classes if view is not None else None
    am = attention_mask(ctx, t.shape)
    labelled = t != ii
    pad = int((labelled & (am == 0)).sum()) if am is not None else None
    pad_share = pad / labels.numel() if pad is not None else 0.0
    if d["top_share"] <= max_token_share and pad_share <= max_labelled_padding:
        return
    import torch

    uniq, counts = torch.unique(labels, return_counts=True)
    order = counts.argsort(descending=True)[:10]
    n = int(labels.numel())
    table = [{"token": int(uniq[i]), "count": int(counts[i]), "percent": r4(100 * int(counts[i]) / n)} for i in order]
    top_pct = r4(100 * d["top_share"])
    ev = {"labelled_positions": n, "label_positions": int(t.numel()), "ignore_index": ii, "num_classes": classes,
          "distinct_labels": d["distinct"], "label_entropy_nats": r4(d["entropy"]), "top_tokens": table,
          "top_token": d["top"], "top_token_percent": top_pct, "labelled_padding": pad,
          "labelled_padding_percent": r4(100 * pad_share) if pad is not None else None,
          "thresholds": {"max_token_share": max_token_share, "max_labelled_padding": max_labelled_padding,
                         "vocabulary_above": vocabulary}}
    if pad_share > max_labelled_padding:
        pad_tokens = torch.unique(t[labelled & (am == 0)])[:10].tolist()
        ev["padding_label_values"] = pad_tokens
        yield Finding(
            "class_imbalance", "warning",
            f"{ev['labelled_padding_percent']}% of the labelled positions are padding (attention_mask 0, label "
            f"{', '.join(str(v) for v in pad_tokens)}): the model is trained to predict padding",
            metric="labels", evidence=ev,
            explanation=(f"{pad} labelled positions sit where the attention mask says there is no token. Their "
                         "labels are the pad token, so the loss rewards predicting padding after every sequence; "
                         "the loss looks good early because padding is easy, and generation learns to stop or "
                         "repeat the pad/EOS token."),
            fixes=(Fix(f"Set the labels of padding positions to the ignore index {ii}",
                       "padding then carries no loss",
                       f"labels = input_ids.masked_fill(attention_mask == 0, {ii})"
                       "  # or DataCollatorForLanguageModeling(tokenizer, mlm=False)"),),
        )
        return
    vocab_like = classes is None or classes > vocabulary or _repeats_inputs(ctx, t, labelled & (t != d["top"]))
    yield Finding(
        "class_imbalance", "warning" if vocab_like else "info",
        f"{'Token' if vocab_like else 'Class'} {d['top']} is {top_pct}% of the {n} labelled positions "
        f"(label entropy {r4(d['entropy'])} nats over {d['distinct']} distinct labels)",
        metric="labels", evidence=ev,
        explanation=("One label fills a share of the positions that natural text does not produce: the pipeline "
                     "repeats a token (padding or EOS kept in the labels, a separator after every sentence), or "
                     "the data is mostly one symbol. A model can lower the loss by predicting it everywhere."
                     if vocab_like else
                     "One class fills most labelled positions (common in token classification, e.g. 'O' in NER). "
                     "A model can lower the loss by predicting it everywhere; class weights from the whole "
                     "training set make the other classes count."),
        fixes=(Fix("Look at a decoded batch: is the frequent token padding, EOS or a separator?",
                   "if it is padding, set its labels to the ignore index",
                   f"labels = input_ids.masked_fill(input_ids == tokenizer.pad_token_id, {ii})"),)
        if vocab_like else
        (Fix("Weight the loss by class, with counts from the whole training set",
             "each class contributes equally to the gradient",
             "loss_fn = nn.CrossEntropyLoss(weight=class_weights)  # w_c = N / (C * n_c)"),),
    )


def _repeats_inputs(ctx, t, where) -> bool:
    """Language modelling: the labels (at `where`) mostly equal the input ids, as given or shifted by one."""
    if not bool(where.any()) or t.dim() != 2:
        return False
    for ids in input_tensors(ctx.inputs):
        if not integer_labels(ids) or tuple(ids.shape) != tuple(t.shape):
            continue
        same = float((t == ids)[where].float().mean())
        shifted = float((t[:, :-1] == ids[:, 1:])[where[:, :-1]].float().mean()) if t.shape[1] > 1 else 0.0
        if max(same, shifted) >= 0.5:
            return True
    return False


@probe("init_loss_mismatch")
def init_loss_mismatch(ctx, *, max_factor: float = 3.0):
    """The loss is far above the chance-level loss for its loss function.

    Chance level: cross-entropy ln C (uniform predictions), BCE the entropy of the label prior, MSE
    the target variance (predicting the mean). Karpathy's "verify loss @ init" (A Recipe for Training
    Neural Networks, 2019); a factor of 3 leaves room for the usual init noise.
    """
    skip = need_loss(ctx, "init_loss_mismatch")
    if skip:
        yield skip
        return
    kind, pred, t, loss = loss_kind(ctx), ctx.base.pred, ctx.targets, ctx.base.loss
    view = class_view(ctx) if kind in (None, "ce", "nll") else None
    extra: dict = {}
    what = "The loss"
    if view is not None:
        # integer labels with a class dimension: chance is ln C whatever computes the loss (a lambda
        # around F.cross_entropy, the model's own outputs.loss, label smoothing; focal losses sit below)
        if view.labels.numel() == 0:
            yield Skip("init_loss_mismatch", "no labelled position in the batch (see ignored_labels)")
            return
        matches = close(view.cross_entropy, loss)
        extra = {"cross_entropy_of_outputs": r4(view.cross_entropy), "loss_matches_cross_entropy": matches,
                 "class_dim": view.class_dim, "labelled_positions": int(view.labels.numel()),
                 "label_shift": view.shift}
        if kind is None and not matches:
            if view.cross_entropy is None:
                yield Skip("init_loss_mismatch", "the labels do not index the outputs' classes")
                return
            # a callable that is not the mean cross-entropy (a sum, a weighting): judge the outputs by theirs
            extra["loss_callable_value"] = r4(loss)
            loss, what = view.cross_entropy, "The outputs' cross-entropy"
        kind = kind or "ce"
        chance, how = math.log(view.num_classes), f"ln C = ln {view.num_classes}"
    elif kind is None or pred is None or t is None:
        yield Skip("init_loss_mismatch", "chance level known for CrossEntropy, BCE and MSE losses and for any loss "
                                         "on integer class labels with a class dimension in the outputs")
        return
    elif kind == "nll":
        yield Skip("init_loss_mismatch", f"no chance level for a {kind} loss on outputs {tuple(pred.shape)}")
        return
    elif kind == "ce":
        c = int(pred.shape[-1] if ctx.loss_fn is None else pred.shape[1] if pred.dim() > 1 else 0)
        if c < 2:
            yield Skip("init_loss_mismatch", f"cannot tell the number of classes from outputs {tuple(pred.shape)}")
            return
        chance, how = math.log(c), f"ln C = ln {c}"
    elif kind in ("bce", "bce_logits"):
        p = float(t.float().mean())
        if p <= 0 or p >= 1:
            yield Skip("init_loss_mismatch", f"all targets are {p:g}; the prior entropy is 0")
            return
        chance, how = -(p * math.log(p) + (1 - p) * math.log(1 - p)), f"H(p) with p = {r4(p)}"
    elif kind == "mse":
        chance, how = float(t.float().var(unbiased=False)), "Var(targets)"
        if chance <= 0:
            return
    factor = loss / chance
    # For MSE an untrained head predicts about 0, whose loss is E[y^2] >= Var(y); only a loss far
    # above both is a bad start (targets far from zero are unnormalised targets, not a bad init).
    zero_loss = float(t.float().pow(2).mean()) if kind == "mse" else None
    if factor <= max_factor or (zero_loss is not None and loss <= max_factor * zero_loss):
        return
    yield Finding(
        "init_loss_mismatch", "warning",
        f"{what} is {r4(loss)}, {r4(factor)}x the chance-level loss {r4(chance)} ({how})",
        metric="loss",
        evidence={"loss": r4(loss), "chance_loss": r4(chance), "chance_formula": how, "factor": r4(factor),
                  "loss_kind": kind, "zero_prediction_loss": r4(zero_loss), **extra,
                  "thresholds": {"max_factor": max_factor}},
        explanation=(
            "Before training a model should be about as good as a guess: uniform class probabilities, "
            "or the mean target. A loss far above that means the model starts confidently wrong: the "
            "output layer's scale or bias is off, the targets are not normalised, or the loss gets "
            "the wrong kind of output."
        ),
        fixes=(
            Fix("Initialise the output layer small and its bias at the prior (class log-frequencies or target mean)",
                "the first steps then learn the data instead of undoing the init",
                "nn.init.zeros_(model.head.weight); model.head.bias.data.fill_(prior)"),
            Fix("For regression, standardise the targets", "then Var(targets) = 1 and the init fits"),
        ),
    )


# -- predictions ---------------------------------------------------------------------------

@probe("prediction_collapse")
def prediction_collapse(ctx, *, min_std_ratio: float = 0.01, max_spread_to_margin: float = 0.05,
                        max_top_share: float = 0.9):
    """Predictions barely vary across the batch compared with the targets (seed 001: 0.0001 vs 0.28).

    Regression: mean per-output std across the batch below 1% of the targets' std. Class labels, one
    per example or one per token: one class predicted at 90% or more of the labelled positions while
    the labels vary more (entropy and top share of both are quoted), and the logits' spread across
    the positions below 5% of the top-1/top-2 margin (no input could change the prediction). At
    initialisation a transformer with mean pooling can predict one class for a whole batch with a
    spread/margin of 0.38 (measured on tests/probes' SmallTransformer, seed 5), and a language model
    early in training predicts its most frequent token almost everywhere with a small margin (the
    unigram phase): neither is collapse.
    """
    pred, t = ctx.base.pred, ctx.targets
    n = batch_size(ctx.inputs) or 0
    if pred is None or t is None or n < 2 or pred.shape[0] != n:
        yield Skip("prediction_collapse", "needs predictions and targets for a batch of at least 2")
        return
    view = class_view(ctx)
    p = pred.detach().float()
    if view is not None:
        yield from _class_collapse(view, max_spread_to_margin, max_top_share)
        return
    if not t.is_floating_point() or t.shape[0] != n or p.numel() != t.numel():
        yield Skip("prediction_collapse", f"outputs {tuple(p.shape)} and targets {tuple(t.shape)} are not comparable")
        return
    pr, tr = p.reshape(n, -1), t.detach().float().reshape(n, -1)
    pstd, tstd = pr.std(dim=0), tr.std(dim=0)
    ps, ts = float(pstd.mean()), float(tstd.mean())
    if ts <= 0:
        return
    ratio = ps / ts
    if ratio >= min_std_ratio:
        return
    yield Finding(
        "prediction_collapse", "warning",
        f"Predictions barely vary across the batch: std {r4(ps)} vs target std {r4(ts)} ({r4(ratio)}x)",
        metric="predictions",
        evidence={"pred_std": r4(ps), "target_std": r4(ts), "ratio": r4(ratio),
                  "pred_std_per_output": [r4(v) for v in pstd.tolist()[:50]],
                  "target_std_per_output": [r4(v) for v in tstd.tolist()[:50]],
                  "pred_mean_per_output": [r4(v) for v in pr.mean(dim=0).tolist()[:50]],
                  "thresholds": {"min_std_ratio": min_std_ratio}},
        explanation=("The model predicts nearly the same value for every input while the targets vary. "
                     "The loss then settles where a constant (the mean or median target) is optimal; "
                     "the features are ignored, or a saturated head squashes everything to one value."),
        fixes=_collapse_fixes(),
    )


def _class_collapse(view, max_spread_to_margin: float, max_top_share: float):
    if view.labels.numel() < 2:
        yield Skip("prediction_collapse", f"only {view.labels.numel()} labelled position(s) in the batch")
        return
    logits = view.logits
    predicted = distribution(logits.argmax(dim=1))
    labels = distribution(view.labels)
    spread = float(logits.std(dim=0).mean())
    top2 = logits.topk(2, dim=1).values
    margin = float((top2[:, 0] - top2[:, 1]).mean())
    if not (predicted["top_share"] >= max_top_share and labels["distinct"] >= 2
            and labels["top_share"] < predicted["top_share"] and spread < max_spread_to_margin * margin):
        return
    unit, where = ("token", "labelled positions") if view.sequence else ("class", "examples")
    n = int(view.labels.numel())
    pct = r4(100 * predicted["top_share"])
    if pct == 100.0 and not view.sequence:
        title = f"Every example in the batch is predicted as class {predicted['top']} ({labels['distinct']} classes in the labels)"
    else:
        title = (f"The model predicts {unit} {predicted['top']} at {pct}% of the {n} {where} (prediction entropy "
                 f"{r4(predicted['entropy'])} nats vs {r4(labels['entropy'])} for the labels)")
    yield Finding(
        "prediction_collapse", "warning", title, metric="predictions",
        evidence={"predicted_classes": predicted["distinct"], "label_classes": labels["distinct"],
                  "predicted_class": predicted["top"], "predicted_top_share": r4(predicted["top_share"]),
                  "label_top_share": r4(labels["top_share"]), "label_top_class": labels["top"],
                  "prediction_entropy_nats": r4(predicted["entropy"]), "label_entropy_nats": r4(labels["entropy"]),
                  "positions": n, "per_example": view.per_example, "num_classes": view.num_classes,
                  "logit_std_across_batch": r4(spread), "mean_top1_top2_margin": r4(margin),
                  "spread_to_margin": r4(spread / margin),
                  "thresholds": {"max_spread_to_margin": max_spread_to_margin, "max_top_share": max_top_share,
                                 "collapse_when": "top predicted share >= max_top_share, above the labels' top "
                                                  "share, and logit std < ratio x margin"}},
        explanation=(f"The logits vary across the {where} by a small fraction of the gap between the top two "
                     f"{unit}s, so no input in the batch can change the prediction: the model outputs a constant, "
                     "usually the most frequent label or whatever a large output bias prefers."),
        fixes=(Fix("Look at the output layer's bias and scale: one entry far above the others decides every "
                   "prediction", "a bias that dominates the logits hides what the features say",
                   "print(head.bias.topk(5), head.weight.norm(dim=1).topk(5))"),) + _collapse_fixes(),
    )


def _collapse_fixes():
    return (
        Fix("Check whether the output depends on the inputs at all (see input_independent_output) and remove "
            "squashing heads (tanh/sigmoid) that saturate", "a constant output means no signal reaches the head"),
        Fix("Standardise the targets and initialise the head's bias at their mean",
            "the head then learns deviations from the mean, not the mean"),
    )


@probe("input_independent_output")
def input_independent_output(ctx, *, min_sensitivity: float = 0.01):
    """Outputs barely change when the batch's inputs are shuffled across examples (or zeroed).

    sensitivity = mean |f(x[perm]) - f(x)| / mean |f(x)[perm] - f(x)|: about 1 when each output
    follows its own input, about 0 when the inputs are ignored (when every example has the same
    output the denominator is mean |f(x)|). Flagged when both shuffling and zeroing change < 0.01.
    """
    import torch

    pred = ctx.base.pred
    n = batch_size(ctx.inputs) or 0
    if pred is None or n < 2 or pred.shape[0] != n:
        yield Skip("input_independent_output", "needs a batch of at least 2 examples with batch-first outputs")
        return
    g = torch.Generator().manual_seed(0)  # a private generator: the global RNG is not touched
    perm = torch.randperm(n, generator=g)
    if bool((perm == torch.arange(n)).all()):
        perm = torch.roll(torch.arange(n), 1)
    perm = perm.to(ctx.device)
    p = pred.float()
    expected = float((p[perm] - p).abs().mean())
    # identical outputs for every example: measure changes against the outputs' own size instead
    scale = expected if expected > 0 else max(float(p.abs().mean()), 1e-12)
    shuffled, _ = ctx.forward(map_inputs(ctx.inputs, lambda v: v[perm]))
    sens = float((shuffled.float() - p).abs().mean()) / scale
    ev = {"shuffle_sensitivity": r4(sens), "mean_output_difference_between_examples": r4(expected)}
    zero_inputs = map_inputs(ctx.inputs, lambda v: torch.zeros_like(v) if v.is_floating_point() else v)
    if any(v.is_floating_point() for v in input_tensors(ctx.inputs)):
        zeroed, _ = ctx.forward(zero_inputs)
        ev["zeroed_change"] = r4(float((zeroed.float() - p).abs().mean()) / scale)
    if sens >= min_sensitivity or ev.get("zeroed_change", 0.0) >= min_sensitivity:
        return
    yield Finding(
        "input_independent_output", "warning",
        f"Outputs ignore the inputs: shuffling the inputs across the batch changes them by {r4(sens)}x "
        "the usual difference between examples",
        metric="predictions", evidence={**ev, "thresholds": {"min_sensitivity": min_sensitivity}},
        explanation=("The outputs differ between examples, but not because of each example's input: "
                     "they follow the position in the batch or batch statistics. The input is cut off "
                     "somewhere (multiplied by zero, detached and replaced, an unused branch), or the model "
                     "reads a different tensor than the one the batch provides."),
        fixes=(Fix("Print the shapes and norms of intermediate tensors for two different inputs",
                   "the first layer where they become equal is where the input is lost"),),
    )


@probe("output_range_mismatch")
def output_range_mismatch(ctx, *, max_outside: float = 0.01):
    """Targets outside what the final activation can produce (a tanh/sigmoid head with pixel targets)."""
    from .activations import final_activation

    t = ctx.targets
    if t is None or not getattr(t, "is_floating_point", lambda: False)():
        yield Skip("output_range_mismatch", "needs float targets")
        return
    act = final_activation(ctx)
    if act is None or (act.low is None and act.high is None):
        return
    tt = t.detach().float()
    outside = ((tt < act.low) if act.low is not None else tt.new_zeros(tt.shape, dtype=bool))
    if act.high is not None:
        outside = outside | (tt > act.high)
    share = float(outside.float().mean())
    if share <= max_outside:
        return
    pct = r4(100 * share)
    yield Finding(
        "output_range_mismatch", "error" if share > 0.5 else "warning",
        f"{pct}% of the targets lie outside [{act.low:g}, {act.high:g}], the range of the final {act.op}",
        metric="predictions",
        evidence={"final_activation": act.op, "site": act.site, "output_low": act.low, "output_high": act.high,
                  "target_min": r4(float(tt.min())), "target_max": r4(float(tt.max())), "outside_percent": pct,
                  "thresholds": {"max_outside": max_outside}},
        explanation=(f"The model's last operation is {act.op}, which can only produce values in "
                     f"[{act.low:g}, {act.high:g}]. Targets outside that range can never be reached; the "
                     "loss pushes the activation into saturation, where its gradient vanishes."),
        fixes=(Fix("Scale the targets into the activation's range, or remove the final activation",
                   "reachable targets keep the head out of saturation",
                   "y = y / 255.0   # pixels into [0, 1] for a sigmoid head"),),
    )


@probe("double_softmax")
def double_softmax(ctx, *, tolerance: float = 1e-4):
    """Probabilities (rows in [0, 1] summing to 1) fed to CrossEntropyLoss, which applies log-softmax itself."""
    kind, pred = loss_kind(ctx), ctx.base.pred
    view = class_view(ctx) if kind in (None, "ce") else None
    if (kind != "ce" and view is None) or pred is None or pred.dim() < 2:
        yield Skip("double_softmax", "applies to a cross-entropy loss on class scores")
        return
    p = pred.float()
    dim = view.class_dim if view is not None else 1 if ctx.loss_fn is not None else -1
    sums = p.sum(dim=dim)
    lo, hi = float(p.min()), float(p.max())
    err = float((sums - 1).abs().max())
    if lo < 0 or hi > 1 or err > tolerance:
        return
    yield Finding(
        "double_softmax", "warning",
        "The outputs given to cross-entropy are already probabilities (every row sums to 1)",
        metric="predictions",
        evidence={"output_min": r4(lo), "output_max": r4(hi), "max_row_sum_error": r4(err),
                  "thresholds": {"tolerance": tolerance}},
        explanation=("CrossEntropyLoss applies log-softmax to raw logits. Feeding it softmax outputs applies "
                     "softmax twice: the scores are squeezed into [0, 1], the loss cannot fall far below ln C "
                     "and the gradients are small."),
        fixes=(Fix("Remove the softmax from the model's forward (keep it for inference only)",
                   "CrossEntropyLoss expects logits", "return self.classifier(x)  # no softmax"),),
    )
