"""throughput: time per step, time per epoch and ETA, stalls and slowdowns.

From the wall-clock times the logger stored with each point (TensorBoard, CSV with a time
column), or from a series the run logged itself (it/s, steps_per_second, step time). It is
context (info) unless training stalls or slows down a lot, which needs action (a data loader
that blocks, a memory leak, a checkpoint written to a slow disk, thermal throttling).
"""

from __future__ import annotations

import numpy as np

from ..finding import Finding, Fix, Skip
from ..history import RunHistory, Series, _tokens
from ..registry import detector
from ._sources import TUNING
from ._util import fmt, sig, xval

_RATE_NAMES = ("it_s", "its", "steps_per_second", "iterations_per_second", "it_per_s",
               "throughput", "steps_per_sec", "iter_per_sec")
_STEP_KEYS = ("steps_per_epoch", "batches_per_epoch", "num_batches", "num_training_batches")
_TOTAL_KEYS = ("max_steps", "total_steps", "num_training_steps", "max_iters", "num_steps")


def _hparam_int(history: RunHistory, keys) -> int | None:
    for k in keys:
        v = history.hparams.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return int(v)
    return None


def step_seconds_from_walls(s: Series) -> tuple[np.ndarray, np.ndarray] | None:
    """Seconds per step over each logged interval, and the step each interval ends at."""
    ok = np.isfinite(s.wall_times) & np.isfinite(s.steps)
    steps, walls = s.steps[ok], s.wall_times[ok]
    if steps.size < 3:
        return None
    dstep, dwall = np.diff(steps), np.diff(walls)
    good = (dstep > 0) & (dwall >= 0)
    if good.sum() < 2:
        return None
    return dwall[good] / dstep[good], steps[1:][good]


def step_seconds_from_series(s: Series) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Seconds per step from a logged rate (it/s) or a logged step time, with what it was."""
    toks = _tokens(s.name)
    joined = "_".join(toks)
    vals, steps = s.values, s.steps
    ok = np.isfinite(vals) & (vals > 0)
    if ok.sum() < 1:
        return None
    if "samples" in toks or "tokens" in toks or "runtime" in toks or "epoch" in toks:
        return None  # not per optimiser step: cannot turn into seconds per step
    if any(r in joined for r in _RATE_NAMES) or joined.endswith("per_second"):
        return 1.0 / vals[ok], steps[ok], "rate"
    v, st = vals[ok], steps[ok]
    # A time column that never decreases over many points is the elapsed time since the start
    # (ultralytics' results.csv "time"), not the duration of each step: a step takes the
    # difference between neighbours. A duration per step goes up and down with the load.
    if v.size >= 5 and np.all(np.diff(v) >= 0) and np.all(np.diff(st) > 0) and v[-1] >= 3 * v[0]:
        return np.diff(v) / np.diff(st), st[1:], "elapsed"
    return v, st, "seconds"


@detector("throughput")
def throughput(
    history: RunHistory,
    *,
    steps_per_epoch: int | None = None,
    total_steps: int | None = None,
    # A stall: one interval at least 20x the median seconds-per-step and at least 5 minutes
    # (an epoch-end validation pass is usually shorter than either).
    stall_factor: float = 20.0,
    stall_seconds: float = 300.0,
    # ...and all stalls together a quarter of the run's time before it needs action.
    stall_share: float = 0.25,
    # A slowdown: the last quarter's median step time at least 2x the first quarter's.
    slowdown_factor: float = 2.0,
    # ...costing at least a minute over the last quarter: timer jitter on a tiny run is no slowdown.
    slowdown_seconds: float = 60.0,
    min_intervals: int = 8,
):
    """Seconds per step, epoch time and ETA; stalls and slowdowns (from wall times or an it/s series)."""
    # Prefer a series the run logged itself (what the user saw), else the logger's wall clock.
    source, secs, at, how = None, None, None, None
    for s in history.series.values():
        if s.role == "time" and len(s) > 0:
            got = step_seconds_from_series(s)
            if got is not None:
                source, (secs, at, how) = s, got
                break
    if source is None:
        with_walls = [s for s in history.series.values() if s.wall_times is not None and len(s) >= 3]
        if with_walls:
            best = history.primary("train_loss")
            s = best if best is not None and best.wall_times is not None else max(with_walls, key=len)
            got = step_seconds_from_walls(s)
            if got is not None:
                source, (secs, at), how = s, got, "wall"
    if source is None:
        yield Skip("throughput", "no wall-clock times and no it/s or step-time series in this run")
        return

    sec = float(np.median(secs))
    spe = steps_per_epoch or _hparam_int(history, _STEP_KEYS) or _steps_per_epoch(history)
    total = total_steps or _hparam_int(history, _TOTAL_KEYS)
    last_step = float(np.max(np.concatenate([s.steps for s in history.series.values() if len(s)])))
    ev = {"unit": "step", "source": source.name, "measured_from": how, "intervals": int(secs.size),
          "seconds_per_step": sig(sec), "steps_per_second": sig(1.0 / sec) if sec > 0 else "inf",
          "last_step": xval(last_step),
          "thresholds": {"stall_factor": stall_factor, "stall_seconds": stall_seconds,
                         "stall_share": stall_share, "slowdown_factor": slowdown_factor,
                         "slowdown_seconds": slowdown_seconds, "min_intervals": min_intervals}}
    parts = [f"{fmt(ev['steps_per_second'])} steps/s ({fmt(sec)} s per step)"]
    if spe:
        ev["steps_per_epoch"] = int(spe)
        ev["epoch_hours"] = sig(spe * sec / 3600.0)
        parts.append(f"{fmt(ev['epoch_hours'])} h per epoch of {int(spe)} steps")
    if total and total > last_step:
        ev["total_steps"] = int(total)
        ev["eta_hours"] = sig((total - last_step) * sec / 3600.0)
        parts.append(f"{fmt(ev['eta_hours'])} h left to step {int(total)}")
    findings = []
    if how == "wall" and secs.size >= min_intervals:
        findings += _stalls(source, history, secs, at, sec, ev, stall_factor=stall_factor,
                            stall_seconds=stall_seconds, stall_share=stall_share)
    if secs.size >= min_intervals:
        findings += _slowdown(source, secs, at, ev, slowdown_factor=slowdown_factor,
                              slowdown_seconds=slowdown_seconds)
    title = "Throughput: " + ", ".join(parts)
    explanation = (f"Measured from {'the wall-clock times logged with ' if how == 'wall' else ''}"
                   f"{source.name} over {int(secs.size)} "
                   f"{'intervals' if how == 'wall' else 'values'}: median {fmt(sec)} s per step. ")
    if spe:
        explanation += (f"At {int(spe)} steps per epoch one epoch takes {fmt(ev['epoch_hours'])} h. ")
    fixes = []
    if spe and ev["epoch_hours"] >= 1:
        fixes = [Fix("Profile one step: data loading vs forward/backward",
                     "a GPU waiting on the data loader is the most common reason for slow steps",
                     "torch.utils.data.DataLoader(ds, batch_size=bs, num_workers=8, pin_memory=True)"),
                 Fix("Use mixed precision", "bf16/fp16 roughly halves step time on modern GPUs",
                     "with torch.autocast('cuda', dtype=torch.bfloat16): loss = model(x)")]
    yield Finding("throughput", "info", title, source.name, ev,
                  (xval(at[0]), xval(at[-1])), explanation, fixes)
    yield from findings


def _steps_per_epoch(history: RunHistory) -> int | None:
    """Median optimiser steps per whole epoch, from a step-level series that knows its epochs."""
    for s in history.series.values():
        if s.epochs is None or s.is_per_epoch or len(s) < 4:
            continue
        ep = np.floor(s.epochs)
        uniq = np.unique(ep[np.isfinite(ep)])
        if uniq.size < 3:
            continue
        # first and last step of each complete (inner) epoch
        spans = []
        for e in uniq[1:-1]:
            st = s.steps[ep == e]
            nxt = s.steps[ep == e + 1]
            if st.size and nxt.size:
                spans.append(float(nxt.min() - st.min()))
        if spans:
            return int(round(float(np.median(spans))))
    return None


def _stalls(source, history, secs, at, sec, base_ev, *, stall_factor, stall_seconds, stall_share):
    ok = np.isfinite(source.wall_times) & np.isfinite(source.steps)
    walls, steps = source.wall_times[ok], source.steps[ok]
    total_time = float(walls.max() - walls.min())
    dstep, dwall = np.diff(steps), np.diff(walls)
    good = (dstep > 0) & (dwall >= 0)  # the same intervals step_seconds_from_walls used
    limit = max(stall_factor * sec, stall_seconds)
    # an interval may span several steps: what exceeds steps * median is the pause
    extra = dwall[good] - dstep[good] * sec
    stalled = extra >= limit
    if not stalled.any() or total_time <= 0:
        return []
    stall_total = float(extra[stalled].sum())
    share = stall_total / total_time
    ends = at[stalled]
    ev = {**base_ev, "stall_count": int(stalled.sum()), "stall_steps": [xval(v) for v in ends[:20]],
          "stall_minutes": [sig(v / 60) for v in extra[stalled][:20]],
          "stall_total_hours": sig(stall_total / 3600), "run_hours": sig(total_time / 3600),
          "stall_share": sig(share), "stall_limit_seconds": sig(limit)}
    sev = "warning" if share >= stall_share else "info"
    title = (f"Training stalled {int(stalled.sum())} time(s) for {fmt(ev['stall_total_hours'])} h "
             f"in total ({fmt(ev['stall_share'])} of {fmt(ev['run_hours'])} h)")
    explanation = (f"Gaps longer than {fmt(ev['stall_limit_seconds'])} s beyond the usual "
                   f"{fmt(sec)} s per step, first before step {ev['stall_steps'][0]}. Long pauses "
                   "are a blocked data loader, a checkpoint or evaluation that takes very long, or "
                   "a process waiting on another (distributed training, a shared GPU).")
    fixes = [Fix("Time the evaluation and checkpoint saves at those steps",
                 "the pauses line up with whatever runs between training steps", None)]
    return [Finding("throughput", sev, title, source.name, ev,
                    (ev["stall_steps"][0], ev["stall_steps"][-1]), explanation, fixes)]


def _slowdown(source, secs, at, base_ev, *, slowdown_factor, slowdown_seconds):
    q = max(2, secs.size // 4)
    first, last = float(np.median(secs[:q])), float(np.median(secs[-q:]))
    if first <= 0 or last / first < slowdown_factor:
        return []
    # steps covered by the last quarter of intervals, times the extra seconds each took
    last_steps = float(at[-1] - at[-q - 1]) if at.size > q else float(at[-1] - at[0])
    lost = (last - first) * last_steps
    if lost < slowdown_seconds:
        return []
    ratio = last / first
    ev = {**base_ev, "first_quarter_seconds_per_step": sig(first),
          "last_quarter_seconds_per_step": sig(last), "slowdown": sig(ratio), "quarter_points": q,
          "seconds_lost_last_quarter": sig(lost)}
    title = (f"Training slowed down {fmt(ratio)}x: {fmt(first)} s per step at first, "
             f"{fmt(last)} s per step at the end")
    explanation = (f"The median time per step over the last {q} intervals is {fmt(ratio)}x that of "
                   f"the first {q}. Steps that get slower over a run usually mean something grows "
                   "with it: tensors kept in a Python list (e.g. losses without .item()), a growing "
                   "autograd graph, memory fragmentation, or a data cache spilling to disk.")
    fixes = [Fix("Log losses with loss.item() (or .detach()), never the tensor itself",
                 "keeping the tensors keeps their graphs alive, and every step gets slower",
                 "running.append(loss.item())"),
             Fix("Watch memory over the run", "a steady rise confirms a leak",
                 "print(torch.cuda.memory_allocated() / 2**30)")]
    return [Finding("throughput", "warning", title, source.name, ev,
                    (xval(at[0]), xval(at[-1])), explanation, fixes)]


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "throughput": {
        "summary": "step time, ETA and stalls",
        "meaning": "Slow or stalling steps waste time: data loading bottlenecks, evaluation inside "
                   "the loop, checkpoint saving, or a machine under load.",
        "detection": "Seconds per step from the logs' timestamps, a logged rate, a step time or an "
                     "elapsed-time column (differenced); stalls are steps far slower than the "
                     "median, a slowdown is the last quarter 2x slower than the first.",
        "fixes": ["Raise DataLoader num_workers / pin_memory", "Evaluate and checkpoint less often"],
        "sources": [TUNING],
    },
}
