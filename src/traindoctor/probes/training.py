"""Checks that take optimizer steps on the one batch (always on restored parameters).

params_not_in_optimizer, weight_update_ratio, lr_too_high / lr_too_low (one-step test and an LR
range test, Smith 2015), cannot_overfit_batch.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..finding import Finding, Fix, Skip
from ..registry import probe
from ._context import module_of, need_loss, r4, restore_params


def _configured_lr(optimizer) -> float | None:
    lrs = [g.get("lr") for g in optimizer.param_groups if isinstance(g.get("lr"), (int, float))]
    return float(max(lrs)) if lrs else None


def _groups_table(ctx) -> list[dict]:
    names = {id(p): n for n, p in ctx.model.named_parameters()}
    return [{"group": i, "lr": g.get("lr"), "params": len(g["params"]),
             "numel": sum(p.numel() for p in g["params"]),
             "first": next((names[id(p)] for p in g["params"] if id(p) in names), None)}
            for i, g in enumerate(ctx.optimizer.param_groups)][:50]


@probe("params_not_in_optimizer")
def params_not_in_optimizer(ctx):
    """Trainable parameters that no optimizer param group holds: they get gradients but never change."""
    if ctx.optimizer is None:
        yield Skip("params_not_in_optimizer", "no optimizer given (optimizer=)")
        return
    held = {id(p) for g in ctx.optimizer.param_groups for p in g["params"]}
    missing = [(n, p) for n, p in ctx.named_trainable() if id(p) not in held]
    if not missing:
        return
    modules = list(dict.fromkeys(module_of(n) for n, _ in missing))
    numel = sum(p.numel() for _, p in missing)
    total = sum(p.numel() for _, p in ctx.named_trainable())
    yield Finding(
        "params_not_in_optimizer", "warning",
        f"{len(missing)} trainable parameter(s) ({numel} of {total} values) are in no optimizer param group",
        metric=modules[0],
        evidence={"missing_params": [n for n, _ in missing][:50], "modules": modules[:50], "missing_numel": numel,
                  "trainable_numel": total, "param_groups": _groups_table(ctx),
                  "thresholds": {"flag_when": "a requires_grad parameter is in no param group"}},
        explanation=(
            "These parameters require grad, so backward() computes their gradients, but the optimizer "
            "never updates them. This usually happens when the optimizer is built before a module is "
            "added or replaced (a new head), or when param groups are assembled by name and miss some."
        ),
        fixes=(
            Fix("Build the optimizer after the model is complete, from model.parameters()",
                "then every parameter is included", "optimizer = torch.optim.AdamW(model.parameters(), lr=lr)"),
            Fix("If they are meant to be frozen, set requires_grad=False", "frozen parameters are not reported",
                "for p in model.frozen_part.parameters():\n    p.requires_grad_(False)"),
        ),
    )


@probe("weight_update_ratio")
def weight_update_ratio(ctx, *, low: float = 1e-5, high: float = 1e-1):
    """|dW| / |W| per weight matrix after one step of the user's optimizer, far from ~1e-3.

    Karpathy's rule of thumb (CS231n, "Neural Networks Part 3": the ratio of update to weight
    magnitudes should be around 1e-3); low/high are two orders of magnitude either side.
    """
    if ctx.optimizer is None:
        yield Skip("weight_update_ratio", "no optimizer given (optimizer=)")
        return
    skip = need_loss(ctx, "weight_update_ratio")
    if skip:
        yield skip
        return
    params = dict(ctx.named_trainable())
    rows = []
    for name, (dw, w) in ctx.one_step()["updates"].items():
        if params[name].dim() < 2 or w == 0 or dw == 0:
            continue  # biases and norm scales have no meaningful ratio; zero updates are dead_gradients
        rows.append((name, dw / w))
    if not rows:
        yield Skip("weight_update_ratio", "no weight matrix changed in one step")
        return
    out = [(n, q) for n, q in rows if q > high or q < low or not math.isfinite(q)]
    if not out:
        return
    worst = max(out, key=lambda t: abs(math.log10(t[1])) if t[1] > 0 and math.isfinite(t[1]) else 99)
    too_big = worst[1] > high or not math.isfinite(worst[1])
    median = float(np.median([q for _, q in rows]))
    yield Finding(
        "weight_update_ratio", "warning",
        f"One optimizer step changes {worst[0]} by {r4(worst[1])} of its norm "
        f"({'above' if too_big else 'below'} the {high if too_big else low:g} bound around ~1e-3)",
        metric=worst[0],
        evidence={"worst_param": worst[0], "worst_ratio": r4(worst[1]), "median_ratio": r4(median),
                  "flagged": [{"param": n, "ratio": r4(q)} for n, q in out][:50],
                  "table": [{"param": n, "ratio": r4(q)} for n, q in rows][:50],
                  "lr": _configured_lr(ctx.optimizer),
                  "thresholds": {"low": low, "high": high, "rule_of_thumb": 1e-3}},
        explanation=(
            "The size of an update relative to the weight it changes should be around 1e-3 "
            "(Karpathy, CS231n). "
            + ("Much larger means each step rewrites the weights: the learning rate is too high for this layer."
               if too_big else "Much smaller means the layer barely moves: the learning rate is too low "
               "or its gradient is tiny.")
        ),
        fixes=(
            Fix("Lower the learning rate" if too_big else "Raise the learning rate or check this layer's gradient",
                "brings the update/weight ratio towards ~1e-3"),
        ),
    )


# -- learning-rate tests ---------------------------------------------------------------------

# The sweep's grid: PER_DECADE points per decade from one decade under the configured LR until the
# loss diverges (14-20 points on tests/probes' twins with Adam at 1e-3): each point is a step on a
# few examples, so on a language model the whole sweep costs a few training steps. On the healthy
# twins the suggestions stay at 4x-78x the configured LR, below lr_too_low's 100x (8 points per
# decade from 4 decades below, on the whole batch, gave 19x-68x at four times the cost).
PER_DECADE = 4
DECADES_BELOW = 1.0
SMOOTH = 0.7

def lr_sweep(ctx, *, per_decade: int = PER_DECADE, decades: float = DECADES_BELOW, max_lr: float = 10.0,
             smooth: float = SMOOTH, diverge_factor: float = 4.0, seconds: float | None = None) -> dict | None:
    """Exponential LR range test on a few examples of the batch (Smith 2015; pytorch-lr-finder), cached.

    Sweeps from lr/10^decades to max_lr (per_decade steps per decade), all param groups scaled together,
    on ctx.sub_batch() (a step there costs a fraction of a training step on a language model).
    Raw losses are kept; the suggestion uses an exponentially smoothed copy (weight `smooth` on the
    past: lighter than lr-finder's 0.95 because this sweep has few points). Stops when the smoothed
    loss exceeds diverge_factor x its best (fastai's 4x) or is not finite.
    """
    if "lr_sweep" in ctx.cache:
        return ctx.cache["lr_sweep"]
    lr0 = _configured_lr(ctx.optimizer)
    if not lr0:
        return None
    opt = ctx.optimizer_copy()
    base = [g["lr"] for g in opt.param_groups]
    lo, hi = lr0 / 10 ** decades, max(max_lr, lr0 * 10)
    steps = max(int(round(per_decade * math.log10(hi / lo))), 10)
    lrs = np.exp(np.linspace(math.log(lo), math.log(hi), steps))
    params = [p for _, p in ctx.named_trainable()]
    inputs, targets, k, n = ctx.sub_batch()
    start = time.perf_counter()
    raw, smoothed, used = [], [], []
    diverged_at = None
    best = math.inf
    finished = True
    def record(lr, value) -> bool:
        """Keep the loss measured after a step at `lr`; True when the sweep has diverged."""
        nonlocal best, diverged_at
        raw.append(value)
        used.append(float(lr))
        s = value if not smoothed else smooth * smoothed[-1] + (1 - smooth) * value
        smoothed.append(s)
        if not math.isfinite(s) or s > diverge_factor * best:
            diverged_at = float(lr)
            return True
        best = min(best, s)
        return False

    # As in pytorch-lr-finder, each forward's loss is the result of the previous step, so one
    # forward/backward per LR suffices; the last step gets one extra forward.
    prev = None
    stopped = False
    for lr in lrs:
        if seconds is not None and time.perf_counter() - start > seconds:
            finished = False
            break
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * lr / lr0
        opt.zero_grad(set_to_none=True)
        _, loss = ctx.forward(inputs, grad=True, targets=targets)
        if prev is not None and record(prev, float(loss.detach())):
            stopped = True
            break
        loss.backward(inputs=params)
        opt.step()
        prev = lr
    if not stopped and prev is not None:
        record(prev, ctx.loss_value(inputs, targets))
    for g, b in zip(opt.param_groups, base):  # matters when opt is the user's own (uncloneable) optimizer
        g["lr"] = b
    ctx.reset_experiment()
    result = None
    # a sweep that diverges within a few points still tells where; a suggestion needs 5 points
    if len(smoothed) >= 5 or (smoothed and diverged_at is not None):
        sm = np.array([v if math.isfinite(v) else np.inf for v in smoothed])
        imin = int(np.argmin(sm))
        logs = np.log10(used)
        if imin >= 2:
            slope = np.gradient(sm[: imin + 1], logs[: imin + 1])
            isteep = int(np.argmin(slope))
        else:
            isteep = imin
        result = {"suggested_lr": used[isteep] if len(smoothed) >= 5 else None, "min_loss_lr": used[imin],
                  "diverged_at_lr": diverged_at,
                  "configured_lr": lr0, "lrs": used, "raw_losses": raw, "smoothed_losses": smoothed,
                  "finished": finished or diverged_at is not None, "examples": k, "batch_examples": n}
    ctx.cache["lr_sweep"] = result
    return result


def _thin(values, n=40):
    if len(values) <= n:
        return [r4(v) for v in values]
    idx = np.linspace(0, len(values) - 1, n).round().astype(int)
    return [r4(values[i]) for i in idx]


def _sweep_evidence(sweep: dict | None) -> dict:
    if not sweep:
        return {"range_test": "not run"}
    return {"range_test_suggested_lr": r4(sweep["suggested_lr"]), "range_test_min_loss_lr": r4(sweep["min_loss_lr"]),
            "range_test_diverged_at_lr": r4(sweep["diverged_at_lr"]),
            "range_test_lrs": _thin(sweep["lrs"]), "range_test_raw_losses": _thin(sweep["raw_losses"]),
            "range_test_examples": sweep["examples"],
            "range_test_note": (f"{sweep['examples']} of the batch's {sweep['batch_examples']} examples, repeated; "
                                "smoothed losses pick the suggestion, raw losses shown")}


def _sweep_or_skip(ctx, code):
    if ctx.optimizer is None:
        return None, Skip(code, "no optimizer given (optimizer=)")
    skip = need_loss(ctx, code)
    if skip:
        return None, skip
    if "lr_sweep" not in ctx.cache and ctx.time_left() < 0.5:
        return None, None
    return lr_sweep(ctx, seconds=max(ctx.time_left(), 0.1)), None


@probe("lr_too_high")
def lr_too_high(ctx, *, max_rise: float = 1.1):
    """The loss on the same batch rises after one optimizer step, or the LR sweep diverges below the LR.

    max_rise: one step at a sane LR lowers the loss on the batch it was computed on; a rise of more
    than 10% (seed 002: 0.47 -> 4.22) is not noise, because dropout masks are identical in both passes.
    """
    if ctx.optimizer is not None and not need_loss(ctx, "lr_too_high"):
        ctx.one_step()  # before the sweep, so both start from the same optimizer state
    sweep, skip = _sweep_or_skip(ctx, "lr_too_high")
    if skip:
        yield skip
        return
    step = ctx.one_step()
    before, after = step["loss_before"], step["loss_after"]
    lr = _configured_lr(ctx.optimizer)
    rose = not math.isfinite(after) or after > max_rise * before
    past = bool(sweep and sweep["diverged_at_lr"] is not None and lr >= sweep["diverged_at_lr"])
    if not (rose or past):
        return
    ev = {"lr": lr, "loss_before_step": r4(before), "loss_after_step": r4(after),
          "rise_factor": r4(after / before) if before and math.isfinite(after) else after,
          **_sweep_evidence(sweep), "thresholds": {"max_rise": max_rise, "diverge_factor": 4.0}}
    if rose:
        title = f"One optimizer step at lr={lr:g} raises the loss on the same batch from {r4(before)} to {r4(after)}"
    else:
        title = f"lr={lr:g} is past the point where the LR range test diverged ({r4(sweep['diverged_at_lr'])})"
    suggested = r4(sweep["suggested_lr"]) if sweep else None
    yield Finding(
        "lr_too_high", "error" if not math.isfinite(after) else "warning", title, metric="loss", evidence=ev,
        explanation=(
            "A gradient step is a promise that the loss goes down for a small enough step. When one "
            "step on the very batch the gradient came from makes the loss worse, the step is too big: "
            "training will oscillate or diverge."
        ),
        fixes=(
            Fix(f"Lower the learning rate{f' towards {suggested} (the range test suggestion)' if suggested else ' by 10x'}",
                "the range test's steepest descent is a good starting LR (Smith 2015)"),
            Fix("Add warm-up and gradient clipping", "both tame the first steps",
                "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)"),
        ),
    )


def fine_tuning(ctx, *, min_lr: float = 1e-6, max_lr: float = 1e-4) -> str | None:
    """Why the model looks like a pretrained model being fine-tuned, or None.

    A transformers model loaded with from_pretrained keeps the name in config._name_or_path; one at
    an LR from 1e-6 to 1e-4 is in the usual fine-tuning range (BERT: 2e-5 to 5e-5, Devlin et al.
    2019; the HF Trainer's default is 5e-5; 1e-6 for large models), whereas training from scratch
    uses larger ones. A random-init transformers model below 1e-6 is judged like any other.
    """
    m = ctx.model
    if not type(m).__module__.startswith("transformers."):
        return None
    name = getattr(getattr(m, "config", None), "_name_or_path", "") or ""
    if name:
        return f"{type(m).__name__} loaded from {name!r}"
    lr = _configured_lr(ctx.optimizer) if ctx.optimizer is not None else None
    if lr is not None and min_lr <= lr <= max_lr:
        return (f"{type(m).__name__} (transformers) at lr={lr:g}, in the usual fine-tuning range "
                f"({min_lr:g} to {max_lr:g})")
    return None


@probe("lr_too_low")
def lr_too_low(ctx, *, min_ratio: float = 100.0, warn_ratio: float = 1000.0):
    """The LR range test's suggested LR is at least 100x the configured LR (seed 001: 2.5e-3 vs 1e-4).

    A sweep on one repeated batch overestimates: on the healthy twins in tests/probes (MLP, CNN,
    transformer with Adam at 1e-3) it suggests 4x-78x the configured LR, so 100x is the bar, and
    the finding is only "info" below 1000x. For a pretrained model being fine-tuned (see fine_tuning)
    the sweep can bound the LR from above (where the loss diverges, lr_too_high's job) but cannot say
    how low a fine-tuning LR should be: it is then info only, saying so, and never advises a raise.
    """
    sweep, skip = _sweep_or_skip(ctx, "lr_too_low")
    if skip:
        yield skip
        return
    if not sweep:
        yield Skip("lr_too_low", "the LR range test could not run in the time budget")
        return
    lr, sug = sweep["configured_lr"], sweep["suggested_lr"]
    if sweep["diverged_at_lr"] is not None and lr >= sweep["diverged_at_lr"]:
        return  # lr_too_high's finding
    if sug is None:
        yield Skip("lr_too_low", f"the LR range test diverged at {r4(sweep['diverged_at_lr'])} after "
                                 f"{len(sweep['lrs'])} points, too few to suggest an LR")
        return
    ratio = sug / lr
    if ratio < min_ratio:
        return
    thresholds = {"min_ratio": min_ratio, "warn_ratio": warn_ratio}
    tuned = fine_tuning(ctx)
    if tuned:
        div = sweep["diverged_at_lr"]
        yield Finding(
            "lr_too_low", "info",
            f"The LR range test cannot judge a fine-tuning LR: lr={r4(lr)} is {r4(ratio)}x below the one-batch "
            f"suggestion {r4(sug)}, as expected for a pretrained model",
            metric="lr",
            evidence={"configured_lr": r4(lr), "suggested_lr": r4(sug), "ratio": r4(ratio), "judged": False,
                      "fine_tuning": tuned,
                      "can_tell": ("where the loss on this batch diverges: an upper bound for the LR"
                                   + (f" ({r4(div)})" if div is not None else " (not reached in the sweep)")
                                   + ", which lr_too_high checks"),
                      "cannot_tell": ("the right fine-tuning LR: the steepest descent on one repeated batch "
                                      "measures how fast that batch is memorised, not how well the model keeps "
                                      "what pretraining learned"),
                      **_sweep_evidence(sweep),
                      "thresholds": {**thresholds, "fine_tuning_lr_range": [1e-6, 1e-4]}},
            explanation=(
                "Fine-tuning deliberately uses LRs far below what a range test prefers: the pretrained weights "
                "already solve most of the task, and large steps overwrite them (catastrophic forgetting; "
                "BERT's authors fine-tune at 2e-5 to 5e-5). A one-batch sweep rewards memorising that batch "
                "as fast as possible, so its suggestion is no ground for raising the LR here. What it does "
                "show is the LR at which this batch's loss diverges."
            ),
            fixes=(Fix("Keep the fine-tuning LR; to choose one, compare a few (1e-5 to 1e-4) on validation data",
                       "validation loss after a short run judges fine-tuning LRs, a one-batch sweep cannot"),),
        )
        return
    yield Finding(
        "lr_too_low", "warning" if ratio >= warn_ratio else "info",
        f"The LR range test suggests lr={r4(sug)}, {r4(ratio)} x the configured lr={r4(lr)}",
        metric="lr",
        evidence={"configured_lr": r4(lr), "suggested_lr": r4(sug), "ratio": r4(ratio), **_sweep_evidence(sweep),
                  "thresholds": thresholds},
        explanation=(
            "In an exponential LR sweep the loss falls fastest around the suggested LR; at an LR this "
            "much lower, each step does a fraction of the work and training looks stuck or slow. The "
            "sweep repeats one batch, so treat the suggestion as an upper estimate."
        ),
        fixes=(Fix(f"Raise the learning rate towards {r4(sug)}", "the steepest descent of the range test",
                   None),),
    )


@probe("cannot_overfit_batch")
def cannot_overfit_batch(ctx, *, max_steps: int = 150, factor: float = 10.0, lr: float = 3e-3):
    """A fresh Adam(lr=3e-3) cannot lower the loss on a few examples of the batch by 10x within 150 steps.

    Karpathy, "A Recipe for Training Neural Networks" (2019): overfit a few examples ("as little as
    two") first; a model that cannot memorise them has a wiring bug. It runs on ctx.sub_batch(): at
    most 8 examples and 128 predictions (one 128-token sequence). A fresh Adam is used so the result
    does not depend on the configured optimizer; at 3e-3 the healthy twins in tests/probes reach a
    10x lower loss in tens of steps, and the 17M-parameter language model of benchmarks/probe.py on
    one 128-token sequence in 8.
    """
    import torch

    skip = need_loss(ctx, "cannot_overfit_batch")
    if skip:
        yield skip
        return
    inputs, targets, k, n = ctx.sub_batch()
    params = [p for _, p in ctx.named_trainable()]
    opt = torch.optim.Adam(params, lr=lr)
    losses: list[float] = []
    seconds = max(ctx.time_left(), 0.05)
    t0 = time.perf_counter()
    reached = False
    for _ in range(max_steps):
        if time.perf_counter() - t0 > seconds:
            break
        opt.zero_grad(set_to_none=True)
        _, loss = ctx.forward(inputs, grad=True, targets=targets)
        value = float(loss.detach())
        losses.append(value)
        if len(losses) == 1 and value <= 1e-6:
            break
        if not math.isfinite(value) or value <= losses[0] / factor:
            reached = math.isfinite(value)
            break
        loss.backward(inputs=params)
        opt.step()
    restore_params(ctx.snap)
    start = losses[0] if losses else ctx.base.loss
    if start <= 1e-6:
        yield Skip("cannot_overfit_batch", f"the loss on {k} example(s) is already {r4(start)}")
        return
    if reached:
        return
    final = losses[-1] if losses else start
    if len(losses) < max_steps and math.isfinite(final):
        yield Skip("cannot_overfit_batch", f"out of budget after {len(losses)} steps on {k} example(s) "
                                           f"(loss {r4(start)} -> {r4(min(losses))}); raise budget=")
        return
    best = min(losses)
    yield Finding(
        "cannot_overfit_batch", "warning",
        f"{len(losses)} Adam steps on {k} example(s) of the batch only took the loss from {r4(start)} to {r4(best)} "
        f"(needed {r4(start / factor)})",
        metric="loss",
        evidence={"loss_start": r4(start), "loss_best": r4(best), "loss_final": r4(final), "steps": len(losses),
                  "examples": k, "batch_examples": n,
                  "target_loss": r4(start / factor), "optimizer": f"Adam(lr={lr:g})",
                  "losses": _thin(losses), "thresholds": {"factor": factor, "max_steps": max_steps}},
        explanation=(
            "Any network with enough parameters should memorise a few examples quickly. When it "
            "cannot, the problem is usually not the data or the learning rate but the wiring: outputs "
            "that do not depend on the inputs, a detached or frozen path, a loss applied to the wrong "
            "tensor, or labels that do not match the outputs."
        ),
        fixes=(
            Fix("Check the other findings in this report first (dead gradients, input-independent output)",
                "they name the broken part"),
            Fix("Verify the loss receives raw outputs and the right targets (shapes, dtype, order)",
                "a mismatched target makes the batch impossible to fit"),
        ),
    )
