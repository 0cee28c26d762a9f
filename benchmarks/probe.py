"""Wall time of the full probe suite on a small CNN and a small transformer (CPU), median of N runs.

    .venv/bin/python benchmarks/probe.py [--runs 5] [--threads 1] [--batch 64]

Target: <= 5 s each with the default budget. Prints one line per model and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import traindoctor as td


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.features(x.view(-1, 1, 8, 8)).flatten(1))


class SmallTransformer(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.embed = nn.Linear(8, d)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x.view(-1, 8, 8))).mean(dim=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    idx = np.random.default_rng(0).permutation(len(X))[: args.batch]
    batch = (torch.tensor(X[idx], dtype=torch.float32), torch.tensor(y[idx]))
    out = {}
    for name, cls in [("small_cnn", SmallCNN), ("small_transformer", SmallTransformer)]:
        times, codes = [], None
        for run in range(args.runs):
            torch.manual_seed(run)
            model = cls()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            t0 = time.perf_counter()
            report = td.probe(model, batch, loss_fn=nn.CrossEntropyLoss(), optimizer=opt)
            times.append(time.perf_counter() - t0)
            codes = report.codes()
        params = sum(p.numel() for p in model.parameters())
        slowest = sorted(report.meta["timings"].items(), key=lambda kv: -kv[1])[:3]
        out[name] = {"median_s": round(statistics.median(times), 3), "runs": [round(t, 3) for t in times],
                     "params": params, "findings": codes, "slowest_checks": slowest}
        print(f"{name}: median {statistics.median(times):.2f} s over {args.runs} runs "
              f"({params} params, batch {args.batch}, {args.threads} thread(s)); findings {codes}")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
