"""weak_loss_gradient: does the loss give a usable gradient at this operating point?

Two measurements on the loss function alone (the model is not run again):
1. The path from the current predictions to the targets, L(pred + s (target - pred)) for s in
   [0, 1]: the slope at s = 0 compared with the total drop along the path. MSE gives 2, L1 gives 1;
   an IoU loss on non-overlapping boxes gives ~0 (flat until the boxes touch).
2. A sweep of the per-element distance d = |pred - target| from 0 to twice the largest current
   error: jumps (the loss is discontinuous) and slopes that drop past a threshold (seed 000's
   `where(d < 0.1, d**2, 0.1*d + 0.01)` jumps from 0.01 to 0.02 at 0.1, slope 0.2 -> 0.1).
"""

from __future__ import annotations

import numpy as np

from ..finding import Finding, Fix, Skip
from ..registry import probe
from ._context import r4


def _loss_on(ctx, pred, target) -> float:
    return float(ctx.loss_fn(pred, target).detach())


@probe("weak_loss_gradient")
def weak_loss_gradient(ctx, *, min_slope_ratio: float = 0.1, jump_factor: float = 5.0,
                       max_slope_drop: float = 0.75, points: int = 201):
    """The loss gives little gradient here (slope < 0.1 x the available drop), jumps, or its slope drops.

    min_slope_ratio: MSE's ratio is 2 and L1's 1, so 0.1 is 10x weaker than L1. jump_factor: a
    step in the sweep 5x larger than its neighbours' is a discontinuity, not curvature. max_slope_drop:
    the slope beyond a point below 0.75 x the slope before it is a kink that weakens the gradient.
    """
    import torch

    from .data import loss_kind

    t, base = ctx.targets, ctx.base
    if ctx.loss_fn is None or t is None or base.pred is None:
        yield Skip("weak_loss_gradient", "applies to a loss_fn= with targets (the model computes its own loss)"
                   if base.loss_source == "model" else "needs loss_fn= and targets")
        return
    if not t.is_floating_point() or base.pred.shape != t.shape or loss_kind(ctx) in ("ce", "nll", "bce",
                                                                                    "bce_logits"):
        yield Skip("weak_loss_gradient", "applies to regression losses (float targets shaped like the outputs)")
        return
    try:
        p0, tt = base.pred.detach().double(), t.detach().double()
        _loss_on(ctx, p0, tt)
    except Exception:
        p0, tt = base.pred.detach().float(), t.detach().float()
    # 1. slope along the path to the targets vs the drop along it
    p = p0.clone().requires_grad_(True)
    loss = ctx.loss_fn(p, tt)
    (g,) = torch.autograd.grad(loss, p, allow_unused=True)
    g = torch.zeros_like(p) if g is None else g
    err = tt - p0
    l0, l1 = float(loss.detach()), _loss_on(ctx, tt.clone(), tt)
    slope0 = float((g * err).sum())
    drop = l0 - l1
    issues, ev = [], {"loss": r4(l0), "loss_at_targets": r4(l1), "loss_grad_norm": r4(float(g.norm())),
                      "path_slope": r4(-slope0)}
    ratio = None
    if drop > 1e-12:
        ratio = -slope0 / drop
        ev["slope_to_drop_ratio"] = r4(ratio)
        if ratio < min_slope_ratio:
            issues.append("weak")
    # 2. distance sweep: every element at the same distance d from its target
    u = torch.sign(p0 - tt)
    u[u == 0] = 1
    dmax = 2 * float(err.abs().max())
    if dmax > 0:
        ds = np.linspace(0.0, dmax, points)
        ls = np.array([_loss_on(ctx, tt + d * u, tt) for d in ds])
        dl = np.diff(ls)
        jump = _find_jump(dl, jump_factor)
        if jump is not None:
            lo, hi = _bisect(lambda d: _loss_on(ctx, tt + d * u, tt), ds[jump], ds[jump + 1], dmax * 1e-9)
            # read the two branches a little away from the edge: right at it, rounding puts some
            # elements on each side
            h = dmax * 1e-7
            lo, hi = lo - h, hi + h
            left_v, right_v = _loss_on(ctx, tt + lo * u, tt), _loss_on(ctx, tt + hi * u, tt)
            s_left = (left_v - _loss_on(ctx, tt + (lo - h) * u, tt)) / h
            s_right = (_loss_on(ctx, tt + (hi + h) * u, tt) - right_v) / h
            ev.update({"jump_at_distance": r4((lo + hi) / 2), "loss_before_jump": r4(left_v),
                       "loss_after_jump": r4(right_v), "slope_before": r4(s_left), "slope_after": r4(s_right)})
            issues.append("jump")
            if s_left > 0 and s_right < max_slope_drop * s_left:
                issues.append("slope_drop")
        else:
            kink = _find_kink(dl, max_slope_drop)
            if kink is not None:
                i, s_left, s_right = kink
                h = ds[1] - ds[0]
                ev.update({"kink_at_distance": r4(ds[i] + h / 2), "slope_before": r4(s_left / h),
                           "slope_after": r4(s_right / h)})
                issues.append("slope_drop")
        ev["sweep_max_distance"] = r4(dmax)
    if not issues:
        return
    ev["issues"] = issues
    ev["thresholds"] = {"min_slope_ratio": min_slope_ratio, "jump_factor": jump_factor,
                        "max_slope_drop": max_slope_drop, "sweep_points": points}
    if "weak" in issues:
        title = (f"The loss gives almost no gradient here: slope {ev['path_slope']} towards the targets vs a "
                 f"possible drop of {r4(drop)} ({ev['slope_to_drop_ratio']}x)")
    elif "jump" in issues:
        title = (f"The loss jumps from {ev['loss_before_jump']} to {ev['loss_after_jump']} at distance "
                 f"{ev['jump_at_distance']}; slope {ev['slope_before']} before, {ev['slope_after']} after")
    else:
        title = (f"The loss's slope drops from {ev['slope_before']} to {ev['slope_after']} at distance "
                 f"{ev['kink_at_distance']}")
    if "weak" in issues:
        ev["possible_drop"] = r4(drop)
    yield Finding(
        "weak_loss_gradient", "warning", title, metric="loss", evidence=ev,
        explanation=(
            "The gradient of the loss with respect to the outputs is what drives learning. "
            + ("Here it is nearly flat although the loss could fall a lot by moving towards the targets "
               "(e.g. IoU/GIoU losses on boxes that do not overlap). " if "weak" in issues else "")
            + ("The loss is discontinuous: examples just beyond the threshold are penalised more than its "
               "inner branch promised, and the outer branch's smaller slope pushes far examples less. "
               if "jump" in issues or "slope_drop" in issues else "")
        ),
        fixes=(
            Fix("Add a term with a strong gradient everywhere (L1/SmoothL1 on coordinates, or DIoU/CIoU's "
                "centre-distance term)", "gives a signal even where the main loss is flat",
                "loss = 0.5 * iou_loss + 0.5 * F.smooth_l1_loss(pred, target)"),
            Fix("Make piecewise losses continuous in value and slope (Huber/SmoothL1 with the same threshold)",
                "F.smooth_l1_loss(pred, target, beta=0.1) joins the branches smoothly",
                "F.smooth_l1_loss(pred, target, beta=0.1)"),
        ),
    )


def _find_jump(dl: np.ndarray, factor: float) -> int | None:
    mags = np.abs(dl)
    best, where = 0.0, None
    for i in range(len(dl)):
        nb = np.concatenate([mags[max(0, i - 3):i], mags[i + 1:i + 4]])
        ref = float(np.median(nb)) if nb.size else 0.0
        scale = max(ref, 1e-12 * max(1.0, float(np.abs(dl).max())))
        if mags[i] > factor * scale and mags[i] > 1e-9 and mags[i] / scale > best:
            best, where = mags[i] / scale, i
    return where


def _find_kink(dl: np.ndarray, max_drop: float):
    for i in range(1, len(dl) - 1):
        left, right = dl[i - 1], dl[i + 1]
        if left > 1e-12 and right < max_drop * left:
            return i, float(left), float(right)
    return None


def _bisect(f, lo: float, hi: float, width: float) -> tuple[float, float]:
    """Narrow [lo, hi] to the discontinuity: keep the half whose end values differ most."""
    flo, fhi = f(lo), f(hi)
    while hi - lo > width:
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        fm = f(mid)
        if abs(fm - flo) >= abs(fhi - fm):
            hi, fhi = mid, fm
        else:
            lo, flo = mid, fm
    return lo, hi
