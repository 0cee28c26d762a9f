"""rank_divergence: the processes of a DDP run disagree (one rank NaN, losses or gradients apart, a stall).

Reads the per-rank series `rank/<r>/<stat>` that `traindoctor.watch` records under DDP (every
rank's loss, gradient norm, step time and data-wait time, gathered to rank 0 each logged step).
A run without them is not a multi-process run: nothing to say, nothing skipped.

Why these signals: under DDP every rank holds the same weights and, after the all-reduce, the
same gradients, so
- a loss that is NaN on one rank while finite on another is that rank's data (a bad sample in its
  shard) or its numerics, and the NaN reaches every rank's weights through the all-reduce;
- gradient norms that differ across ranks mean the gradients were not averaged (a parameter DDP
  does not know about, `no_sync` left on, a model that is not wrapped): the replicas drift apart;
- losses far apart over many steps mean the ranks see different data distributions (a sampler
  that does not shuffle per rank, one shard holding other labels) or different models;
- one rank waiting far longer for its data is a straggler: every other rank waits for it in the
  next all-reduce, so the whole job runs at its pace.
"""

from __future__ import annotations

import re

import numpy as np

from ..finding import Finding, Fix
from ..history import RunHistory
from ..registry import detector
from ._util import fmt

_RANK = re.compile(r"^rank/(\d+)/(.+)$")


def _per_rank(history: RunHistory) -> dict[str, dict[int, np.ndarray]]:
    """stat -> rank -> (steps, values) as a 2 x n array, steps sorted."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for name, s in history.series.items():
        m = _RANK.match(name)
        if m and len(s):
            out.setdefault(m.group(2), {})[int(m.group(1))] = np.vstack([s.steps, s.values])
    return out


def _aligned(by_rank: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(steps, ranks x steps values) on the steps every rank logged."""
    ranks = sorted(by_rank)
    common = by_rank[ranks[0]][0]
    for r in ranks[1:]:
        common = np.intersect1d(common, by_rank[r][0])
    vals = np.vstack([by_rank[r][1][np.searchsorted(by_rank[r][0], common)] for r in ranks])
    return common, vals, ranks


@detector("rank_divergence")
def rank_divergence(history: RunHistory, *, window: int = 20, loss_ratio: float = 1.5, k_noise: float = 5.0,
                    grad_rel_diff: float = 0.01, stall_factor: float = 5.0, stall_seconds: float = 0.05):
    """DDP ranks disagree: a NaN on one rank only, gradient norms or losses apart, a rank that stalls.

    window: medians over 20 common steps (robust to single odd batches): the last 20 for losses and
    gradients (how the ranks stand now), every stretch of 20 for stalls (a straggler that recovered).
    loss_ratio / k_noise: losses apart when the highest rank's median is 1.5x the lowest's and the
    gap is 5x the step-to-step noise. grad_rel_diff: all-reduced gradients are equal up to float
    rounding, so a 1% difference in gradient norm means they were not averaged. stall_factor /
    stall_seconds: a rank waiting 5x the others' median for data, and 50 ms at least.
    """
    stats = _per_rank(history)
    if len(stats.get("train_loss", stats.get("grad_norm", {}))) < 2:
        return
    out = []
    if len(stats.get("train_loss", {})) >= 2:
        steps, vals, ranks = _aligned(stats["train_loss"])
        out += _nan_on_some(steps, vals, ranks)
        if not out:
            out += _losses_apart(steps, vals, ranks, window, loss_ratio, k_noise)
    if len(stats.get("grad_norm", {})) >= 2 and not out:
        steps, vals, ranks = _aligned(stats["grad_norm"])
        out += _grads_apart(steps, vals, ranks, window, grad_rel_diff)
    if len(stats.get("data_time", {})) >= 2:
        steps, vals, ranks = _aligned(stats["data_time"])
        out += _stalled(steps, vals, ranks, window, stall_factor, stall_seconds)
    yield from out


_FIX_SYNC = Fix("Wrap the model in DistributedDataParallel before building the optimizer, and give each rank "
                "a DistributedSampler (call sampler.set_epoch(epoch) every epoch)",
                "identical replicas fed different shards are what DDP assumes",
                "model = DDP(model); sampler = DistributedSampler(dataset)")


def _nan_on_some(steps, vals, ranks):
    finite = np.isfinite(vals)
    mixed = np.flatnonzero(finite.any(axis=0) & ~finite.all(axis=0))
    if mixed.size == 0:
        return []
    i = int(mixed[0])
    bad = [ranks[j] for j in range(len(ranks)) if not finite[j, i]]
    good = [ranks[j] for j in range(len(ranks)) if finite[j, i]]
    step = float(steps[i])
    return [Finding(
        "rank_divergence", "error",
        f"The loss became non-finite on rank {bad[0]} only at step {fmt(step)}"
        + (f" ({len(bad)} of {len(ranks)} ranks)" if len(bad) > 1 else "")
        + f"; rank {good[0]} had {fmt(float(vals[ranks.index(good[0]), i]))}",
        metric=f"rank/{bad[0]}/train_loss",
        evidence={"step": step, "non_finite_ranks": bad, "finite_ranks": good,
                  "finite_losses": {str(r): float(vals[ranks.index(r), i]) for r in good[:8]},
                  "ranks": len(ranks), "thresholds": {"non_finite": "NaN or Inf on some ranks, finite on others"}},
        steps=(step, step),
        explanation=("Every rank holds the same weights, so a NaN on some ranks only comes from their data or "
                     "their numerics: a bad sample in that rank's shard, or an overflow it alone hit. Through the "
                     "gradient all-reduce the NaN reaches every rank's weights at the next step."),
        fixes=(Fix(f"Look at the batch rank {bad[0]} had at step {fmt(step)}: check the data for NaN/Inf",
                   "the fault is in what that rank saw",
                   "assert torch.isfinite(batch).all(), f'rank {dist.get_rank()} step {step}'"),
               Fix("Clip gradients and guard the loss (eps in logs and divisions)",
                   "an overflow on one rank is still an overflow")),
    )]


def _losses_apart(steps, vals, ranks, window, loss_ratio, k_noise):
    if steps.size < window:
        return []
    tail = vals[:, -window:]
    med = np.median(tail, axis=1)
    if not np.isfinite(med).all() or med.min() <= 0:
        return []
    hi, lo = int(np.argmax(med)), int(np.argmin(med))
    noise = float(np.median(np.abs(np.diff(tail, axis=1)))) if window > 1 else 0.0
    gap = float(med[hi] - med[lo])
    ratio = float(med[hi] / med[lo])
    if ratio < loss_ratio or gap < k_noise * noise:
        return []
    first = float(steps[-window])
    return [Finding(
        "rank_divergence", "warning",
        f"Rank {ranks[hi]}'s loss is {fmt(ratio)}x rank {ranks[lo]}'s over the last {window} steps "
        f"(median {fmt(float(med[hi]))} vs {fmt(float(med[lo]))})",
        metric=f"rank/{ranks[hi]}/train_loss",
        evidence={"high_rank": ranks[hi], "low_rank": ranks[lo], "high_median": float(med[hi]),
                  "low_median": float(med[lo]), "ratio": ratio, "gap": gap, "noise": noise,
                  "medians": {str(r): float(m) for r, m in zip(ranks, med)},
                  "thresholds": {"window": window, "loss_ratio": loss_ratio, "k_noise": k_noise}},
        steps=(first, float(steps[-1])),
        explanation=(f"The ranks should see the same data distribution and hold the same weights, so their losses "
                     f"differ by batch noise ({fmt(noise)} step to step here), not by {fmt(ratio)}x for "
                     f"{window} steps: rank {ranks[hi]}'s shard differs (a sampler that does not split or shuffle, "
                     "data sorted by label) or its replica drifted."),
        fixes=(_FIX_SYNC,),
    )]


def _grads_apart(steps, vals, ranks, window, rel):
    n = min(window, steps.size)
    if n < 3:
        return []
    tail = vals[:, -n:]
    if not np.isfinite(tail).all():
        return []
    med = np.median(tail, axis=1)
    base = float(np.median(med))
    if base <= 0:
        return []
    diff = float((med.max() - med.min()) / base)
    if diff < rel:
        return []
    hi, lo = int(np.argmax(med)), int(np.argmin(med))
    return [Finding(
        "rank_divergence", "warning",
        f"Gradient norms differ across ranks by {fmt(100 * diff)}% (rank {ranks[hi]} {fmt(float(med[hi]))} vs "
        f"rank {ranks[lo]} {fmt(float(med[lo]))}): the gradients are not being averaged",
        metric=f"rank/{ranks[hi]}/grad_norm",
        evidence={"relative_difference": diff, "percent": 100 * diff, "high_rank": ranks[hi],
                  "low_rank": ranks[lo], "high_median": float(med[hi]), "low_median": float(med[lo]),
                  "thresholds": {"grad_rel_diff": rel, "window": n}},
        steps=(float(steps[-n]), float(steps[-1])),
        explanation=("After DDP's all-reduce every rank holds the same averaged gradient, so their norms agree to "
                     "float rounding. Norms that differ mean each rank steps with its own gradient and the "
                     "replicas drift apart: the model is not wrapped in DDP, a parameter is outside DDP's "
                     "buckets, or no_sync() stayed on."),
        fixes=(_FIX_SYNC,),
    )]


def _stalled(steps, vals, ranks, window, factor, min_seconds):
    """The first stretch of `window` steps in which one rank waited far longer for data than the others."""
    n = min(window, steps.size)
    if n < 3 or len(ranks) < 2:
        return []
    data = np.nan_to_num(vals, nan=0.0)
    med = np.median(np.lib.stride_tricks.sliding_window_view(data, n, axis=1), axis=2)  # ranks x windows
    slow = np.argmax(med, axis=0)
    top = med[slow, np.arange(med.shape[1])]
    masked = med.copy()
    masked[slow, np.arange(med.shape[1])] = np.nan
    typical = np.nanmedian(masked, axis=0)
    hit = np.flatnonzero((top >= min_seconds) & (top >= factor * np.maximum(typical, 1e-9)))
    if hit.size == 0:
        return []
    i = int(hit[np.argmax(top[hit])])  # the worst stretch
    r, secs, others = ranks[int(slow[i])], float(top[i]), float(typical[i])
    first, last = float(steps[i]), float(steps[i + n - 1])
    return [Finding(
        "rank_divergence", "warning",
        f"Rank {r} stalls: it waited {fmt(secs)} s for each batch, the other ranks {fmt(others)} s "
        f"(median over steps {fmt(first)}-{fmt(last)})",
        metric=f"rank/{r}/data_time",
        evidence={"rank": r, "data_seconds": secs, "others_data_seconds": others, "first_step": first,
                  "last_step": last, "stalled_windows": int(hit.size),
                  "thresholds": {"stall_factor": factor, "stall_seconds": min_seconds, "window": n}},
        steps=(first, last),
        explanation=("Every rank waits for the slowest in each all-reduce, so the whole job runs at this rank's "
                     "pace: its data loading is slower (fewer workers, a slow disk or node, a shard with "
                     "larger samples) or its machine is busy with something else."),
        fixes=(Fix("Give that rank's DataLoader more workers / pin_memory, or check its node's load and disk",
                   "the others are idle while it loads"),),
    )]
