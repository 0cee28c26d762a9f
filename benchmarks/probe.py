"""Cost of the full probe per model, in seconds and in training steps of that model (CPU).

    PYTHONPATH=src python3 benchmarks/probe.py [--runs 3] [--threads 2] [--models lm17m,gpt2,...]

Models: `lm17m`, the issue's 17M-parameter causal LM from torch.nn (6 layers, d=384, vocab 8000,
a batch of 8 x 128 tokens, AdamW, loss_fn a plain function around F.cross_entropy) on word tokens
of the Python standard library's source; `gpt2` and `bert`, the tiny random-init HF models of
tests/probes/lm_zoo.py; `cnn` and `transformer`, the small digits models of tests/probes/zoo.py.

One training step (forward, backward, optimizer step on a copy of the model and optimizer) is
timed before and after each probe run; the ratio is probe wall time / median step time, so a busy
machine slows both alike. Target: every applicable check runs (none skipped for budget) within 12
steps on lm17m. Prints one line per model and a JSON summary.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.probes: the models the tests use

from tests.probes import lm_zoo, zoo  # noqa: E402

import traindoctor as td  # noqa: E402


def stdlib_words(vocab: int = 8000, tokens: int = 8 * 129) -> torch.Tensor:
    """(8, 129) word ids over the most frequent vocab - 1 words of the stdlib's source (0: other)."""
    root = Path(os.__file__).parent
    words: list[str] = []
    for path in sorted(root.glob("*.py"))[:60]:
        words += re.findall(r"[A-Za-z_]+|[^\sA-Za-z_]", path.read_text(errors="replace"))
    index = {w: i + 1 for i, (w, _) in enumerate(collections.Counter(words).most_common(vocab - 1))}
    ids = torch.tensor([index.get(w, 0) for w in words[10_000:10_000 + tokens]])
    return ids.view(8, -1)


def lm17m():
    ids = stdlib_words()
    model = lm_zoo.CausalLM(vocab=8000, d=384, layers=6, heads=6, ctx=128)
    return model, (ids[:, :-1], ids[:, 1:]), lm_zoo.lm_loss, torch.optim.AdamW(model.parameters(), lr=3e-4)


def digits(kind):
    def make():
        model, batch, loss_fn, _ = zoo.healthy(kind)
        return model, batch, loss_fn, torch.optim.Adam(model.parameters(), lr=1e-3)
    return make


MODELS = {"lm17m": lm17m, "gpt2": lm_zoo.gpt2, "bert": lm_zoo.bert, "cnn": digits("cnn"),
          "transformer": digits("transformer")}


def step_seconds(model, batch, loss_fn, opt) -> float:
    """One training step on copies (the probed model and optimizer are not touched)."""
    m = copy.deepcopy(model)
    o = type(opt)(m.parameters(), lr=opt.param_groups[0]["lr"])
    t0 = time.perf_counter()
    o.zero_grad()
    loss = m(**batch).loss if isinstance(batch, dict) else loss_fn(m(batch[0]), batch[1])
    loss.backward()
    o.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    for name in args.models.split(","):
        model, batch, loss_fn, opt = MODELS[name]()
        step_seconds(model, batch, loss_fn, opt)  # warm-up: first-call allocations
        times, steps, ratios, report = [], [], [], None
        for _ in range(args.runs):
            before = step_seconds(model, batch, loss_fn, opt)
            t0 = time.perf_counter()
            report = td.probe(model, batch, loss_fn=loss_fn, optimizer=opt)
            wall = time.perf_counter() - t0
            after = step_seconds(model, batch, loss_fn, opt)
            times.append(wall)
            steps += [before, after]
            ratios.append(wall / statistics.median([before, after]))
        budget_skips = [s.code for s in report.skipped if "budget" in s.reason]
        not_applicable = {s.code: s.reason for s in report.skipped if "budget" not in s.reason}
        ran = [c for c in report.meta["timings"]]
        slowest = sorted(report.meta["timings"].items(), key=lambda kv: -kv[1])[:4]
        out[name] = {"params": sum(p.numel() for p in model.parameters()),
                     "median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                     "train_step_s": round(statistics.median(steps), 3),
                     "ratio_to_step": round(statistics.median(ratios), 2),
                     "ratios": [round(r, 2) for r in ratios], "base_pass_s": report.meta["base_pass_seconds"],
                     "checks_ran": len(ran), "skipped_for_budget": budget_skips,
                     "not_applicable": not_applicable, "findings": report.codes(), "slowest_checks": slowest}
        r = out[name]
        print(f"{name}: {r['median_s']:.2f} s = {r['ratio_to_step']:.1f} training steps ({r['train_step_s']:.3f} s "
              f"each; {r['params']} params, {args.threads} thread(s), {args.runs} run(s)); {len(ran)} checks ran, "
              f"skipped for budget {budget_skips}; findings {report.codes()}", flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
