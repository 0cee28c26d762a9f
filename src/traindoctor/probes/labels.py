"""Class labels, one per example or one per token, and the check for batches whose labels are ignored.

Shapes understood (integer targets):
- (B, C) outputs with (B,) labels: classification;
- (B, T, V) outputs with (B, T) labels: language models and token classification (class dim last,
  as HF models and `F.cross_entropy(out.view(-1, V), y.view(-1))` lambdas use it);
- (B, C, d1, ...) outputs with (B, d1, ...) labels: PyTorch's class-dim-1 convention (segmentation).
Label positions equal to the ignore index (-100, PyTorch's and HF's default, or the loss's own
`ignore_index`) carry no loss; positions where the batch's `attention_mask` is 0 are padding. HF
causal LMs shift the labels inside the model (the logits at t predict the label at t + 1); the view
finds that by which alignment reproduces the model's own loss.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..finding import Finding, Fix, Skip
from ..registry import probe
from ._context import r4

DEFAULT_IGNORE_INDEX = -100


def ignore_index_of(loss_fn) -> int:
    """The loss's ignore_index (nn.CrossEntropyLoss/NLLLoss, a functools.partial), else -100."""
    value = getattr(loss_fn, "ignore_index", None)
    if value is None and isinstance(loss_fn, functools.partial):
        value = loss_fn.keywords.get("ignore_index")
    return DEFAULT_IGNORE_INDEX if not isinstance(value, int) else int(value)


def integer_labels(t) -> bool:
    import torch

    return isinstance(t, torch.Tensor) and not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def attention_mask(ctx, shape):
    """The batch's attention_mask when it lines up with the labels, else None."""
    import torch

    inputs = ctx.inputs
    am = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    if am is None and isinstance(inputs, (tuple, list)):  # ((input_ids, attention_mask), labels)
        am = next((v for v in inputs if isinstance(v, Mapping) and "attention_mask" in v), {}).get("attention_mask")
    if isinstance(am, torch.Tensor) and tuple(am.shape) == tuple(shape):
        return am
    return None


def class_dim(pred, t) -> int | None:
    """Where the classes are in the outputs for these integer labels, or None (not comparable)."""
    if pred is None or t is None or pred.dim() != t.dim() + 1:
        return None
    if tuple(pred.shape[:-1]) == tuple(t.shape):
        return pred.dim() - 1
    if pred.dim() > 2 and pred.shape[0] == t.shape[0] and tuple(pred.shape[2:]) == tuple(t.shape[1:]):
        return 1
    return None


@dataclass(frozen=True)
class ClassView:
    """The predictions at the labelled positions, flattened: logits (N, C) and labels (N,)."""

    logits: Any
    labels: Any
    num_classes: int
    class_dim: int
    per_example: int  # label positions per example: 1 for classification, T for a sequence
    ignore_index: int
    positions: int  # label positions in the batch, ignored ones included
    ignored: int
    shift: int  # 1 when the model shifts the labels (HF causal LM), else 0
    cross_entropy: float | None  # mean cross-entropy of the outputs at the labelled positions

    @property
    def sequence(self) -> bool:
        return self.per_example > 1


def class_view(ctx) -> ClassView | None:
    """The ClassView of the base pass (cached), or None when the targets are not class labels."""
    if "class_view" not in ctx.cache:
        ctx.cache["class_view"] = _class_view(ctx)
    return ctx.cache["class_view"]


def _cross_entropy(logits, labels, ignore_index) -> float | None:
    import torch.nn.functional as F

    valid = labels[labels != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= logits.shape[-1]):
        return None  # checked first: on CUDA an out-of-range label is a device-side assert, not an exception
    try:
        return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                     ignore_index=ignore_index))
    except (RuntimeError, IndexError, ValueError):  # a label outside [0, C): the loss itself fails on it
        return None


def close(a, b, rel=1e-3) -> bool:
    return a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * max(
        abs(b), 1e-8)


def _class_view(ctx) -> ClassView | None:
    t, pred = ctx.targets, ctx.base.pred
    if not integer_labels(t):
        return None
    dim = class_dim(pred, t)
    if dim is None or pred.shape[dim] < 2:
        return None
    ii = ignore_index_of(ctx.loss_fn)
    logits = pred.detach().movedim(dim, -1)  # (B, ..., C)
    labels = t
    shift = 0
    ce = _cross_entropy(logits, labels, ii)
    if ctx.base.loss_source == "model" and labels.dim() >= 2 and labels.shape[1] > 1 and not close(ce, ctx.base.loss):
        ce1 = _cross_entropy(logits[:, :-1], labels[:, 1:], ii)
        if close(ce1, ctx.base.loss):
            shift, ce = 1, ce1
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels != ii
    n = int(t.shape[0]) if t.dim() else 1
    return ClassView(
        logits=logits[keep].float(), labels=labels[keep], num_classes=int(pred.shape[dim]), class_dim=dim,
        per_example=max(1, t.numel() // max(n, 1)), ignore_index=ii, positions=int(t.numel()),
        ignored=int((t == ii).sum()), shift=shift, cross_entropy=ce,
    )


def distribution(values) -> dict:
    """Entropy (nats), most frequent value and its share, distinct count of a 1-D integer tensor."""
    import torch

    if values.numel() == 0:
        return {"entropy": None, "top": None, "top_share": None, "distinct": 0}
    uniq, counts = torch.unique(values, return_counts=True)
    p = counts.double() / counts.sum()
    i = int(counts.argmax())
    return {"entropy": float(-(p * p.log()).sum()) + 0.0, "top": int(uniq[i]), "top_share": float(p[i]),
            "distinct": int(uniq.numel())}


def _edge_runs(ignored) -> int | None:
    """Ignored positions in leading or trailing runs of each row (padding-shaped), for (B, T) labels."""
    if ignored.dim() != 2:
        return None
    x = ignored.int()
    lead = x.cumprod(dim=1).sum(dim=1)
    trail = x.flip(1).cumprod(dim=1).sum(dim=1)
    return int((lead + trail).clamp(max=ignored.shape[1]).sum())


@probe("ignored_labels")
def ignored_labels(ctx, *, max_ignored_share: float = 0.9, min_padding_share: float = 0.5):
    """Every label is the ignore index (no training signal), or more than 90% are, mostly padding.

    A mean over zero labelled positions is 0/0 = NaN (a sum is 0): no gradient at all. Between that
    and a healthy batch, 90% ignored labels that are padding (attention_mask 0, or runs at the ends of
    the rows when there is no mask) means most of the batch's compute is discarded. Ignored positions
    inside the attended sequence are deliberate (BERT's masked LM ignores 85% by design, SFT ignores
    the prompt) and are not flagged unless every label is ignored.
    """
    t = ctx.targets
    if not integer_labels(t) or t.numel() == 0:
        yield Skip("ignored_labels", "needs integer labels")
        return
    ii = ignore_index_of(ctx.loss_fn)
    ignored = t == ii
    total, n_ign = int(t.numel()), int(ignored.sum())
    if n_ign == 0:
        return
    share = n_ign / total
    am = attention_mask(ctx, t.shape)
    if am is not None:
        padding, how = int((ignored & (am == 0)).sum()), "attention_mask is 0"
    else:
        padding, how = _edge_runs(ignored), "leading or trailing runs of ignored labels (no attention_mask)"
    if n_ign < total and (share <= max_ignored_share or padding is None or padding < min_padding_share * n_ign):
        return
    pad_pct = r4(100 * padding / n_ign) if padding is not None else None
    ev = {"label_positions": total, "ignored": n_ign, "ignored_percent": r4(100 * share), "ignore_index": ii,
          "labelled": total - n_ign, "padding_among_ignored": padding, "padding_percent_of_ignored": pad_pct,
          "padding_detected_by": how if padding is not None else None, "labels_shape": list(t.shape),
          "thresholds": {"max_ignored_share": max_ignored_share, "min_padding_share": min_padding_share}}
    # the title calls it padding only when the attention mask says so; edge runs are in the evidence
    pad_txt = f", {pad_pct}% of them padding" if am is not None else ""
    if n_ign == total:
        ctx.cache["blocked"] = ("ignored_labels", f"every label is the ignore index {ii}, so the loss has no value")
        yield Finding(
            "ignored_labels", "error",
            f"All {total} label positions are the ignore index {ii}{pad_txt}: this batch gives no training signal",
            metric="labels", evidence=ev,
            explanation=("The loss averages over labelled positions only; with none, a mean is 0/0 = NaN and a sum "
                         "is 0, so the step either poisons the weights with NaN or does nothing. The other probe "
                         "checks were skipped because every number they read comes from that loss. Usual causes: "
                         "truncation that cuts off every answer token when the prompt is masked, or a batch made "
                         "only of padding."),
            fixes=(
                Fix("Find where the labels become all ignore_index: check max_length against prompt + answer "
                    "lengths and drop examples left without a labelled token",
                    "an example without labels adds nothing but padding",
                    f"dataset = dataset.filter(lambda ex: any(l != {ii} for l in ex['labels']))"),
                Fix("Guard the training step", "a NaN loss is stopped before it reaches the weights",
                    f"assert (labels != {ii}).any(), 'batch without labelled tokens'"),
            ),
        )
        return
    yield Finding(
        "ignored_labels", "warning",
        f"{ev['ignored_percent']}% of the {total} label positions are ignored ({ii}){pad_txt}: the loss rests on "
        f"{total - n_ign} positions",
        metric="labels", evidence=ev,
        explanation=(f"Only {total - n_ign} of {total} label positions carry loss, and most ignored ones are "
                     "padding: that share of the forward and backward compute is thrown away, and each step's "
                     "gradient rests on far fewer tokens than the batch shape suggests."),
        fixes=(
            Fix("Pad each batch to its longest sequence, not to a fixed max_length",
                "padding shrinks to what the batch needs",
                "DataCollatorWithPadding(tokenizer, padding='longest')  # or tokenizer(..., padding='longest')"),
            Fix("Group sequences of similar length, or pack several into one row",
                "rows then hold text, not padding", "TrainingArguments(..., group_by_length=True)"),
        ),
    )
