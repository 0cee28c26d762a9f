"""Activation checks on the ops recorded during the shared forward pass: saturated_activations, dead_relu.

The recording (probes/_record.py) sees nn.Tanh/nn.ReLU modules and functional calls (torch.tanh,
F.relu, x.clamp(...)) alike; each call is named by the module running it.
"""

from __future__ import annotations

from ..finding import Finding, Fix
from ..registry import probe
from ._context import r4
from ._record import RELU as _RELU
from ._record import SATURATING as _SATURATING
from ._record import Call


def record(ctx) -> list[Call]:
    """Calls of saturating and ReLU ops, recorded during the shared forward/backward (ctx.base)."""
    _ = ctx.base
    return ctx.cache.get("calls", [])


def final_activation(ctx) -> Call | None:
    """The saturating op whose output is the model's prediction, if any (e.g. a sigmoid head)."""
    calls = record(ctx)
    pred = ctx.base.pred
    if pred is None or not calls:
        return None
    last = calls[-1]
    same = (last.out.shape == pred.shape and last.out.data_ptr() == pred.data_ptr())
    return last if same and last.op in _SATURATING else None


@probe("saturated_activations")
def saturated_activations(ctx, *, max_saturated: float = 0.5, max_one_sided: float = 0.95, tanh_edge: float = 0.99,
                          sigmoid_edge: float = 0.01):
    """tanh/sigmoid/hardtanh/clamp outputs stuck at their bounds for more than half of the values.

    A tanh output beyond 0.99 has derivative below 0.02 (1 - 0.99^2), a sigmoid output below 0.01 or
    above 0.99 below 0.0099: the unit passes almost no gradient (seed 002's tanh head stuck at -1).
    """
    rows = []
    for c in record(ctx):
        if c.op not in _SATURATING or c.out.numel() == 0:
            continue
        out = c.out.float()
        if c.op == "tanh":
            sat = out.abs() > tanh_edge
        elif c.op == "sigmoid":
            sat = (out < sigmoid_edge) | (out > 1 - sigmoid_edge)
        else:
            sat = out.new_zeros(out.shape, dtype=bool)
            if c.low is not None:
                sat |= out <= c.low
            if c.high is not None:
                sat |= out >= c.high
            if c.low is None and c.high is None:
                continue
        share = float(sat.float().mean())
        # a one-sided clamp is a rectifier: half its outputs at the bound is normal (dead_relu's job)
        limit = max_one_sided if c.op in ("clamp", "clip") and (c.low is None or c.high is None) else max_saturated
        if share > limit:
            rows.append({"site": c.site, "op": c.op, "saturated_share": r4(share), "low": c.low, "high": c.high,
                         "mean": r4(float(out.mean())), "numel": out.numel()})
    if not rows:
        return
    worst = max(rows, key=lambda r: r["saturated_share"])
    pct = r4(100 * worst["saturated_share"])
    yield Finding(
        "saturated_activations", "warning",
        f"{worst['site']}: {pct}% of its outputs sit at the {worst['op']} bounds"
        + (f" (and {len(rows) - 1} more site(s))" if len(rows) > 1 else ""),
        metric=worst["site"],
        evidence={"sites": rows[:50], "worst_site": worst["site"], "worst_saturated_percent": pct,
                  "thresholds": {"max_saturated": max_saturated, "tanh_edge": tanh_edge,
                                 "sigmoid_edge": sigmoid_edge, "max_one_sided": max_one_sided,
                                 "clamp": "output equal to min or max"}},
        explanation=(
            "A saturated tanh or sigmoid has a derivative near zero and a clamp at its bound has a "
            "derivative of exactly zero, so these units pass (almost) no gradient and their outputs "
            "stay stuck. Usually the pre-activations are too large: unnormalised inputs, a large "
            "initialisation or a high learning rate; on an output head it often means the targets are "
            "outside or at the edge of the activation's range."
        ),
        fixes=(
            Fix("Normalise the inputs and pre-activations (LayerNorm/BatchNorm before the activation)",
                "keeps pre-activations in the responsive range"),
            Fix("On an output head, drop the squashing activation and regress the raw value (or clamp only at "
                "inference)", "a linear head has a constant gradient",
                "pred = self.head(features)  # no tanh/sigmoid"),
        ),
    )


@probe("dead_relu")
def dead_relu(ctx, *, max_dead_fraction: float = 0.5, min_batch: int = 8):
    """ReLU sites where more than half of the units are zero for every example in the batch.

    With min_batch 8 examples a live unit (active about half the time at init) is all-zero by
    chance with probability about 0.5^8 = 0.004, so a high dead fraction is not sampling noise.
    """
    from ._context import batch_size

    n = batch_size(ctx.inputs) or 0
    rows = []
    for c in record(ctx):
        if c.op not in _RELU or c.out.dim() < 2 or c.out.shape[0] < min_batch:
            continue
        out = c.out
        # a unit is a channel of a conv feature map, else a feature of the last dimension
        dim = 1 if out.dim() == 4 else out.dim() - 1
        alive = (out > 0).transpose(0, dim).reshape(out.shape[dim], -1).any(dim=1)
        units = int(alive.numel())
        dead = units - int(alive.sum())
        frac = dead / units if units else 0.0
        if frac > max_dead_fraction:
            rows.append({"site": c.site, "dead_units": dead, "units": units, "dead_fraction": r4(frac)})
    if not rows:
        return
    worst = max(rows, key=lambda r: r["dead_fraction"])
    yield Finding(
        "dead_relu", "warning",
        f"{worst['site']}: {worst['dead_units']} of {worst['units']} ReLU units are never active on this batch"
        + (f" (and {len(rows) - 1} more site(s))" if len(rows) > 1 else ""),
        metric=worst["site"],
        evidence={"sites": rows[:50], "batch_size": n,
                  "thresholds": {"max_dead_fraction": max_dead_fraction, "min_batch": min_batch}},
        explanation=(
            "A ReLU unit whose input is negative for every example outputs zero and gets zero gradient, "
            "so it can never recover. Large negative biases, a too-high learning rate that pushed weights "
            "far, or unnormalised inputs are the usual causes."
        ),
        fixes=(
            Fix("Use LeakyReLU or GELU", "a small negative slope keeps a gradient for inactive units",
                "nn.LeakyReLU(0.01)"),
            Fix("Check the initialisation (biases near 0, He init) and lower the learning rate",
                "keeps pre-activations centred around zero"),
        ),
    )

