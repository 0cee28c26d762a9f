"""Step-time overhead of `traindoctor.watch` on CPU: a small CNN and a small transformer.

    python3 benchmarks/watch_overhead.py [--reps 5] [--steps 300] [--threads 1] [--batch 64]

For each model, three configurations are timed in interleaved order (none, defaults,
everything; then again, `--reps` times) so that a machine that gets busier or quieter affects
all three alike; each rep times `--steps` training steps after a warm-up, with the watcher
created before and closed after the timed loop (its end-of-run report is timed separately as
`close_s`). Steps/s is the median over reps. Peak memory: the peak RSS of one child process per
configuration running the same loop (the recorder's memory, not the interleaved parent's).

"defaults": td.watch(model, opt) as a user gets it (every step recorded, deep statistics and the
update/weight ratio every 50 steps, lazy NaN guard, live detection at its 1% duty budget).
"everything": everything=True (deep statistics and update ratio every step, NaN guard on every
module's output every step). Target: <= 2 % step-time overhead at the defaults.
Two overheads are printed: the wall-clock one (median step time against "none"), which is what
the user pays but is noisy on a shared machine, and the attributed one (time spent inside
w.step and the optimizer hooks over the rest of the loop, median over reps), which is robust to
load but does not see the forward hooks (activation statistics, the every-step NaN guard).
Prints one line per model and configuration, then a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import traindoctor as td

CONFIGS = {"none": None, "defaults": {}, "everything": {"everything": True}}


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.features(x.view(-1, 1, 8, 8)).flatten(1))


class SmallTransformer(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.embed = nn.Linear(8, d)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=128, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x.view(-1, 8, 8))).mean(dim=1))


MODELS = {"cnn": SmallCNN, "transformer": SmallTransformer}


def data(batch: int):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return [(X[i:i + batch], y[i:i + batch]) for i in range(0, len(y) - batch + 1, batch)]


def run(model_name: str, config: str, steps: int, batches, warmup: int = 20) -> tuple[float, float, float]:
    """(seconds for `steps` timed steps, seconds of them spent in traindoctor, seconds to close the watcher)."""
    torch.manual_seed(0)
    model = MODELS[model_name]()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.functional.cross_entropy
    opts = CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        w = td.watch(model, opt, logdir=tmp, **opts) if opts is not None else None
        t0 = inside = hooks0 = 0.0
        for i in range(warmup + steps):
            if i == warmup:
                t0 = time.perf_counter()
                inside, hooks0 = 0.0, (w.recorder.hook_total if w is not None else 0.0)
            xb, yb = batches[i % len(batches)]
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if w is not None:
                s0 = time.perf_counter()
                w.step(loss=loss, outputs=out, targets=yb)
                inside += time.perf_counter() - s0
        elapsed = time.perf_counter() - t0
        if w is not None:
            inside += w.recorder.hook_total - hooks0  # the optimizer hooks run inside opt.step()
        c0 = time.perf_counter()
        if w is not None:
            w.close()
        return elapsed, inside, time.perf_counter() - c0


def peak_rss_mb(model_name: str, config: str, steps: int, threads: int, batch: int) -> float:
    """Peak RSS of a child process running one configuration (MB)."""
    code = (f"import sys, resource; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch; "
            f"torch.set_num_threads({threads}); import watch_overhead as b; "
            f"b.run({model_name!r}, {config!r}, {steps}, b.data({batch})); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-memory", action="store_true", help="skip the per-configuration memory runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = data(args.batch)
    summary = {}
    for name in MODELS:
        times = {c: [] for c in CONFIGS}
        insides = {c: [] for c in CONFIGS}
        closes = {c: [] for c in CONFIGS}
        run(name, "defaults", 30, batches)  # warm imports and caches once
        for _ in range(args.reps):
            for config in CONFIGS:  # interleaved
                t, inside, c = run(name, config, args.steps, batches)
                times[config].append(t)
                insides[config].append(inside / (t - inside))
                closes[config].append(c)
        base = statistics.median(times["none"])
        summary[name] = {}
        for config in CONFIGS:
            med = statistics.median(times[config])
            row = {"steps_per_s": round(args.steps / med, 1), "ms_per_step": round(1000 * med / args.steps, 3),
                   "overhead_percent": round(100 * (med / base - 1), 2),
                   # robust to a busy machine: time inside w.step and the optimizer hooks over the rest
                   "attributed_percent": round(100 * statistics.median(insides[config]), 2),
                   "close_s": round(statistics.median(closes[config]), 3),
                   "all_s": [round(t, 4) for t in times[config]]}
            summary[name][config] = row
        if not args.no_memory:
            for config in CONFIGS:
                summary[name][config]["peak_rss_mb"] = round(
                    peak_rss_mb(name, config, args.steps, args.threads, args.batch), 1)
        for config, row in summary[name].items():
            mem = f"  peak RSS {row['peak_rss_mb']} MB" if "peak_rss_mb" in row else ""
            print(f"{name:<12} {config:<10} {row['steps_per_s']:>8} steps/s  {row['ms_per_step']:>7} ms/step  "
                  f"{row['overhead_percent']:>+7}%  (in traindoctor: {row['attributed_percent']}%)  "
                  f"close {row['close_s']} s{mem}")
    print(json.dumps({"reps": args.reps, "steps": args.steps, "threads": args.threads, "batch": args.batch,
                      "results": summary}, indent=1))


if __name__ == "__main__":
    main()
