"""Checks on the batch, the predictions and the loss at the current point (no optimizer steps).

nan_inputs, unnormalized_inputs, class_imbalance, init_loss_mismatch, prediction_collapse,
input_independent_output, output_range_mismatch, double_softmax.
"""

from __future__ import annotations

import math

from ..finding import Finding, Fix, Skip
from ..registry import probe
from ._context import batch_size, input_tensors, map_inputs, need_loss, r4


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
    """Integer class labels (ignore_index -100 dropped) when the task is classification, else None."""
    t = ctx.targets
    if t is None or not hasattr(t, "is_floating_point") or t.is_floating_point() or t.dtype == __import__("torch").bool:
        return None
    labels = t.reshape(-1)
    return labels[labels != -100]


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
    ctx.cache["nonfinite"] = f"the batch has non-finite values ({what})"
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
        # per-token labels (language modelling, segmentation): Zipf-like shares are the task, not a fault
        yield Skip("class_imbalance", f"labels have shape {tuple(ctx.targets.shape)}; checked for one label per example")
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
    if kind is None or pred is None or t is None:
        yield Skip("init_loss_mismatch", "chance level known only for CrossEntropy, BCE and MSE losses")
        return
    if kind == "ce":
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
    else:
        yield Skip("init_loss_mismatch", f"no chance level for a {kind} loss")
        return
    factor = loss / chance
    # For MSE an untrained head predicts about 0, whose loss is E[y^2] >= Var(y); only a loss far
    # above both is a bad start (targets far from zero are unnormalised targets, not a bad init).
    zero_loss = float(t.float().pow(2).mean()) if kind == "mse" else None
    if factor <= max_factor or (zero_loss is not None and loss <= max_factor * zero_loss):
        return
    yield Finding(
        "init_loss_mismatch", "warning",
        f"The loss is {r4(loss)}, {r4(factor)}x the chance-level loss {r4(chance)} ({how})",
        metric="loss",
        evidence={"loss": r4(loss), "chance_loss": r4(chance), "chance_formula": how, "factor": r4(factor),
                  "loss_kind": kind, "zero_prediction_loss": r4(zero_loss),
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
def prediction_collapse(ctx, *, min_std_ratio: float = 0.01, max_spread_to_margin: float = 0.05):
    """Predictions barely vary across the batch compared with the targets (seed 001: 0.0001 vs 0.28).

    Regression: mean per-output std across the batch below 1% of the targets' std. Classification:
    one predicted class for the whole batch while the labels have several, and the logits' spread
    across the batch below 5% of the top-1/top-2 margin (no input could change the prediction). At
    initialisation a transformer with mean pooling can predict one class for a whole batch with a
    spread/margin of 0.38 (measured on tests/probes' SmallTransformer, seed 5): that is not collapse.
    """
    pred, t = ctx.base.pred, ctx.targets
    n = batch_size(ctx.inputs) or 0
    if pred is None or t is None or n < 2 or pred.shape[0] != n:
        yield Skip("prediction_collapse", "needs predictions and targets for a batch of at least 2")
        return
    labels = class_labels(ctx)
    p = pred.detach().float()
    if labels is not None and p.dim() == 2 and p.shape[1] >= 2 and t.shape[0] == n:
        lab = t.reshape(-1)
        lab = lab[lab != -100]
        n_label = int(lab.unique().numel())
        pc = p.argmax(dim=1)
        n_pred = int(pc.unique().numel())
        spread = float(p.std(dim=0).mean())
        top2 = p.topk(2, dim=1).values
        margin = float((top2[:, 0] - top2[:, 1]).mean())
        if n_pred == 1 and n_label >= 2 and spread < max_spread_to_margin * margin:
            yield Finding(
                "prediction_collapse", "warning",
                f"Every example in the batch is predicted as class {int(pc[0])} ({n_label} classes in the labels)",
                metric="predictions",
                evidence={"predicted_classes": n_pred, "label_classes": n_label, "predicted_class": int(pc[0]),
                          "logit_std_across_batch": r4(spread), "mean_top1_top2_margin": r4(margin),
                          "spread_to_margin": r4(spread / margin),
                          "thresholds": {"max_spread_to_margin": max_spread_to_margin,
                                         "collapse_when": "1 predicted class and logit std < ratio x margin"}},
                explanation=("The logits vary across inputs by a small fraction of the gap between the top two classes, "
                             "so no input in the batch can change the prediction: the model outputs a "
                             "constant, usually the majority class or whatever a large bias prefers."),
                fixes=_collapse_fixes(),
            )
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
    if kind != "ce" or pred is None or pred.dim() < 2:
        yield Skip("double_softmax", "applies to a cross-entropy loss on class scores")
        return
    p = pred.float()
    dim = 1 if ctx.loss_fn is not None else -1
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
