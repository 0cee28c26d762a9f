"""Gradient checks on the shared backward pass: dead, vanishing and exploding gradients."""

from __future__ import annotations

import math

from ..finding import Finding, Fix, Skip
from ..registry import probe
from ._context import module_of, need_loss, r4


def _module_norms(ctx) -> list[tuple[str, float, int]]:
    """(module path, L2 norm of its parameters' gradients, numel) in registration (~forward) order."""
    norms: dict[str, list] = {}
    for name, g in ctx.base.grads.items():
        if g is None:
            continue
        mod = module_of(name)
        acc = norms.setdefault(mod, [0.0, 0])
        acc[0] += float(g.double().pow(2).sum())
        acc[1] += g.numel()
    return [(m, math.sqrt(s), n) for m, (s, n) in norms.items()]


@probe("dead_gradients")
def dead_gradients(ctx, *, max_listed: int = 20):
    """Trainable parameters that get no gradient (None) or an exactly all-zero one, by module."""
    skip = need_loss(ctx, "dead_gradients")
    if skip:
        yield skip
        return
    grads = ctx.base.grads
    params = dict(ctx.named_trainable())
    dead: dict[str, dict] = {}
    for name, g in grads.items():
        if g is None or not bool(g.any()):
            entry = dead.setdefault(module_of(name), {"params": [], "numel": 0, "kind": set()})
            entry["params"].append(name)
            entry["numel"] += params[name].numel()
            entry["kind"].add("none" if g is None else "zero")
    if not dead:
        return
    total = sum(p.numel() for p in params.values())
    dead_numel = sum(e["numel"] for e in dead.values())
    modules = list(dead)
    table = [{"module": m, "gradient": "/".join(sorted(e["kind"])), "params": len(e["params"]),
              "numel": e["numel"]} for m, e in list(dead.items())[:max_listed]]
    none_count = sum(1 for g in grads.values() if g is None)
    shown = ", ".join(modules[:5]) + (f" and {len(modules) - 5} more" if len(modules) > 5 else "")
    share = r4(100.0 * dead_numel / total) if total else 0.0
    yield Finding(
        "dead_gradients", "error" if dead_numel == total else "warning",
        f"{len(modules)} module(s) get no gradient from the loss: {shown}",
        metric=modules[0],
        evidence={"modules": modules[:50], "module_count": len(modules), "table": table, "dead_params": sum(len(e["params"]) for e in dead.values()),
                  "dead_numel": dead_numel, "trainable_numel": total, "dead_share_percent": share,
                  "none_grad_params": none_count, "loss": r4(ctx.base.loss),
                  "thresholds": {"gradient_is_dead_when": "None or exactly all zeros"}},
        explanation=(
            f"{dead_numel} of {total} trainable parameters ({share}%) received no gradient from this "
            "batch's loss. A None gradient means the module is not on the path from the inputs to the "
            "loss (computed but never used, or an unused branch); an all-zero gradient means it is on "
            "the path but something blocks the signal (.detach(), torch.no_grad(), integer casts, "
            "argmax, or every ReLU after it dead). These weights will never change."
        ),
        fixes=(
            Fix("Trace how the named modules' outputs reach the loss; remove .detach()/no_grad() on that path",
                "a detached tensor passes values forward but no gradient backward"),
            Fix("Delete modules whose output is never used, or wire them in",
                "unused modules only cost memory and mislead the reader",
                "out = self.head(features + self.unused_module(features))"),
            Fix("If they are meant to be frozen, set requires_grad=False on them",
                "then they are not trainable and not reported",
                "for p in model.frozen_part.parameters():\n    p.requires_grad_(False)"),
        ),
    )


def _depth_ratio(norms):
    """(early median, late median, k): gradient norms of the first and last third of the modules.

    Medians over thirds, not single modules: at initialisation some modules legitimately get tiny
    gradients (attention query/key projections while attention is still uniform), and one module
    is not "the network's early layers".
    """
    import statistics

    k = max(1, len(norms) // 3)
    early = statistics.median(n for _, n, _ in norms[:k])
    late = statistics.median(n for _, n, _ in norms[-k:])
    return early, late, k


@probe("vanishing_gradients")
def vanishing_gradients(ctx, *, min_ratio: float = 1e-4):
    """Gradient norms of the first third of the layers far below those of the last third.

    min_ratio: flagged when the median gradient norm of the input-side third of the modules is below
    1e-4 x that of the output-side third; a healthy network keeps per-layer gradient norms within
    two or three orders of magnitude (Glorot & Bengio 2010 analyse how saturating activations
    shrink them layer by layer).
    """
    skip = need_loss(ctx, "vanishing_gradients")
    if skip:
        yield skip
        return
    norms = [(m, n, k) for m, n, k in _module_norms(ctx) if n > 0 and math.isfinite(n)]
    if len(norms) < 3:
        yield Skip("vanishing_gradients", f"needs at least 3 modules with non-zero gradients; found {len(norms)}")
        return
    early, late, k = _depth_ratio(norms)
    ratio = r4(early / late)
    if early >= min_ratio * late:
        return
    worst = min(norms[:k], key=lambda t: t[1])
    table = [{"module": m, "grad_norm": r4(n)} for m, n, _ in norms[:50]]
    yield Finding(
        "vanishing_gradients", "warning",
        f"Gradients vanish towards the input: the first {k} modules get {ratio} x the gradient norm of the last {k}",
        metric=worst[0],
        evidence={"early_modules": [m for m, _, _ in norms[:k]][:50], "early_median_grad_norm": r4(early),
                  "late_modules": [m for m, _, _ in norms[-k:]][:50], "late_median_grad_norm": r4(late),
                  "ratio": ratio, "modules_per_third": k, "smallest_module": worst[0], "smallest_grad_norm": r4(worst[1]),
                  "table": table, "thresholds": {"min_ratio": min_ratio}},
        explanation=(
            f"The input-side layers receive gradients more than {1 / min_ratio:g} times smaller than the "
            "output-side ones, so they barely learn. Typical causes: many saturating activations "
            "(sigmoid, tanh) in a row, a poor initialisation for the activation used, or a deep stack "
            "without residual connections or normalisation."
        ),
        fixes=(
            Fix("Use ReLU/GELU activations and He (Kaiming) initialisation", "they keep the gradient scale per layer",
                "nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')"),
            Fix("Add normalisation (BatchNorm/LayerNorm) or residual connections",
                "both give the gradient a short path to the early layers"),
        ),
    )


@probe("exploding_gradients")
def exploding_gradients(ctx, *, max_total_norm: float = 1e3, max_ratio: float = 1e4):
    """Non-finite gradients, a total gradient norm above 1e3, or the first third of the layers 1e4 x the last.

    max_total_norm: common clipping norms are 0.5-5 (Pascanu et al. 2013 clip at the scale of the
    usual norm); a norm 1000 x that scale means one step moves weights far. max_ratio mirrors
    vanishing_gradients' 1e-4 in the other direction.
    """
    skip = need_loss(ctx, "exploding_gradients")
    if skip:
        yield skip
        return
    norms = _module_norms(ctx)
    if not norms:
        return
    bad = [m for m, n, _ in norms if not math.isfinite(n)]
    total = math.sqrt(sum(n * n for _, n, _ in norms)) if not bad else float("inf")
    finite = [(m, n) for m, n, _ in norms if math.isfinite(n) and n > 0]
    table = [{"module": m, "grad_norm": r4(n)} for m, n, _ in norms[:50]]
    base_ev = {"total_grad_norm": r4(total), "table": table, "loss": r4(ctx.base.loss),
               "thresholds": {"max_total_norm": max_total_norm, "max_ratio": max_ratio}}
    fixes = (
        Fix("Clip gradients before optimizer.step()", "bounds the size of any single update",
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"),
        Fix("Lower the learning rate and check the initialisation scale",
            "large weights at init multiply the gradient at every layer"),
    )
    if bad or total > max_total_norm:
        what = (f"non-finite gradients in {', '.join(bad[:5])}" if bad
                else f"total gradient norm {r4(total)} (> {max_total_norm:g})")
        yield Finding(
            "exploding_gradients", "error" if bad else "warning", f"Gradients explode: {what}",
            metric=bad[0] if bad else None, evidence={**base_ev, "non_finite_modules": bad[:50]},
            explanation=("One optimizer step with gradients this large moves the weights far from where "
                         "the loss was measured, and the loss jumps or becomes NaN."),
            fixes=fixes,
        )
        return
    if len(finite) >= 3:
        early, late, k = _depth_ratio([(m, n, 0) for m, n in finite])
        ratio = early / late
        if ratio > max_ratio:
            yield Finding(
                "exploding_gradients", "warning",
                f"Gradients grow towards the input: the first {k} modules get {r4(ratio)} x the gradient "
                f"norm of the last {k}",
                metric=finite[0][0],
                evidence={**base_ev, "early_median_grad_norm": r4(early), "late_median_grad_norm": r4(late),
                          "early_modules": [m for m, _ in finite[:k]][:50], "modules_per_third": k,
                          "ratio": r4(ratio)},
                explanation=("Each layer multiplies the gradient by more than one on the way back, so the "
                             "early layers get enormous updates compared with the late ones."),
                fixes=fixes,
            )
