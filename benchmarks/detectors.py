"""Detector speed: `td.diagnose` on million-point runs, per detector and all together.

    python benchmarks/detectors.py                       # 1,000,000 points, median of 3
    python benchmarks/detectors.py --points 100000 --repeat 1   # smoke run

Two generated runs, each with a step-level train_loss and lr of `--points` points and a
val_loss evaluated every 100 steps:
  healthy: warmup + cosine LR, a noisy loss decaying towards a floor, val loss tracking it;
  faulty:  the same run with loss spikes, a val loss that turns up after 40 % of the run
           (overfitting) and a NaN loss in the last 1 % (a crash).
Plus `one series`: the healthy train_loss alone (the issue's "one 1M-point series" target).

Each detector is timed through `td.diagnose(run, only=[code])`, so the time includes the
run's normalisation, as a user would pay it; `all` is one plain `td.diagnose(run)`.
Timings depend on machine load: run it on an idle machine for numbers to quote.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import traindoctor as td
from traindoctor.registry import detectors


def make_run(points: int, faulty: bool, seed: int = 0, with_val_lr: bool = True) -> td.RunHistory:
    rng = np.random.default_rng(seed)
    steps = np.arange(points, dtype=np.float64)
    t = steps / points
    warm = max(1, points // 50)
    lr = np.where(steps < warm, 3e-4 * (steps + 1) / warm,
                  3e-4 * 0.5 * (1 + np.cos(np.pi * np.clip((steps - warm) / (points - warm), 0, 1))))
    loss = 0.4 + 2.0 * np.exp(-6 * t) + 0.05 * rng.standard_normal(points)
    vsteps = steps[::100]
    vt = vsteps / points
    val = 0.45 + 2.0 * np.exp(-6 * vt) + 0.01 * rng.standard_normal(vsteps.size)
    if faulty:
        spikes = rng.choice(points, size=max(3, points // 50_000), replace=False)
        loss[spikes] *= 8.0
        val = val + np.where(vt > 0.4, 0.8 * (vt - 0.4), 0.0)
        loss[int(points * 0.99):] = np.nan
    epochs = np.floor(steps / max(1, points // 100))
    series = {"train_loss": td.Series("train_loss", steps, loss, epochs)}
    if with_val_lr:
        series["lr"] = td.Series("lr", steps, lr, epochs)
        series["val_loss"] = td.Series("val_loss", vsteps, val, epochs[::100])
    return td.RunHistory(series, path="generated", format="benchmark")


def median_time(fn, repeat: int, cpu: bool = False) -> float:
    """Median seconds of `repeat` calls: wall clock, or this process's CPU time with cpu=True
    (less disturbed by other jobs on a shared machine; numpy here runs on one thread)."""
    clock = time.process_time if cpu else time.perf_counter
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-per-detector", action="store_true", help="time only the whole diagnose")
    args = ap.parse_args(argv)

    runs = {
        "one series": make_run(args.points, faulty=False, with_val_lr=False),
        "healthy": make_run(args.points, faulty=False),
        "faulty": make_run(args.points, faulty=True),
    }
    codes = [c.code for c in detectors()]
    print(f"td.diagnose on {args.points:,}-point series, median of {args.repeat} (seconds)")
    names = list(runs)
    if not args.no_per_detector:
        print(f"{'detector':<22}" + "".join(f"{n:>12}" for n in names))
        for code in codes:
            row = [median_time(lambda r=r, c=code: td.diagnose(r, only=[c]), args.repeat) for r in runs.values()]
            print(f"{code:<22}" + "".join(f"{x:>12.3f}" for x in row))
    totals = [median_time(lambda r=r: td.diagnose(r), args.repeat) for r in runs.values()]
    print(f"{'all (wall)':<22}" + "".join(f"{x:>12.3f}" for x in totals))
    cpu = [median_time(lambda r=r: td.diagnose(r), args.repeat, cpu=True) for r in runs.values()]
    print(f"{'all (cpu)':<22}" + "".join(f"{x:>12.3f}" for x in cpu))
    for name, r in runs.items():
        print(f"{name}: " + (", ".join(f"{f.severity.value} {f.code}({f.metric})" for f in td.diagnose(r).findings)
                             or "no findings"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
