"""Ingest benchmark: reading TensorBoard scalars with traindoctor vs tbparse vs EventAccumulator.

    python benchmarks/ingest.py                     # 1,000,000 scalars over 10 tags, median of 5
    python benchmarks/ingest.py --points 20000 --repeat 1   # smoke run
    python benchmarks/ingest.py text --lines 1000000 --repeat 3  # a key=value text log (text_main)

The events file is written once with torch's SummaryWriter.add_scalar (the most common writer)
and cached under benchmarks/_data/ (gitignored). Each reader runs in its own fresh Python process
so that import time, wall time and peak RSS are whole-process numbers a user would see; each one
checks that it read every point and exits non-zero otherwise. Timings depend on machine load:
run it on an idle machine for numbers to quote.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "_data"
N_TAGS = 10

READERS = {
    "traindoctor": """
import traindoctor as td
run = td.load(LOGDIR, format="tensorboard")
n = sum(len(s) for s in run.series.values())
""",
    "tbparse": """
from tbparse import SummaryReader
df = SummaryReader(LOGDIR).scalars
n = len(df)
""",
    "EventAccumulator": """
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(LOGDIR, size_guidance={"scalars": 0})
ea.Reload()
n = sum(len(ea.Scalars(tag)) for tag in ea.Tags()["scalars"])
""",
}


def make_logdir(points: int) -> Path:
    """A logdir holding one events file: `points` scalars, N_TAGS tags, points // N_TAGS steps."""
    steps = points // N_TAGS
    logdir = DATA / f"tb_{steps}x{N_TAGS}"
    done = logdir / "DONE"
    if done.exists():
        return logdir
    import shutil

    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(logdir, ignore_errors=True)
    print(f"writing {steps * N_TAGS:,} scalars to {logdir} (once; cached) ...", file=sys.stderr)
    rng = np.random.default_rng(0)
    vals = rng.standard_normal((steps, N_TAGS)).astype(np.float32).tolist()
    tags = [f"metric_{i}/{'train' if i % 2 else 'val'}" for i in range(N_TAGS)]
    w = SummaryWriter(str(logdir), max_queue=1000, flush_secs=3600)
    for step in range(steps):
        row = vals[step]
        for i, tag in enumerate(tags):
            w.add_scalar(tag, row[i], step)
    w.close()
    done.write_text(str(steps * N_TAGS))
    return logdir


def run_once(name: str, logdir: Path, expected: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process running one reader."""
    code = f"LOGDIR = {str(logdir)!r}\n" + READERS[name] + (
        f"\nimport sys\nif n != {expected}:\n"
        f"    sys.exit(f'{name} read {{n}} points, expected {expected}')\n"
    )
    # A forked helper runs the reader so that RUSAGE_CHILDREN measures only that process.
    helper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "rc = subprocess.run([sys.executable, '-c', sys.argv[1]]).returncode\n"
        "dt = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'rc': rc, 'wall': dt, 'rss': rss}))\n"
    )
    out = subprocess.run([sys.executable, "-c", helper, code], capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        sys.exit(f"{name} failed:\n{out.stderr}")
    return res["wall"], res["rss"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="scalars in the file (default 1e6)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per reader; the median is reported")
    ap.add_argument("--readers", default=",".join(READERS), help="comma-separated subset")
    args = ap.parse_args(argv)
    logdir = make_logdir(args.points)
    expected = (args.points // N_TAGS) * N_TAGS
    size = sum(f.stat().st_size for f in logdir.glob("events.out.tfevents*"))
    names = [n.strip() for n in args.readers.split(",") if n.strip()]
    runs = {name: ([], []) for name in names}
    # Round-robin, so that a change in machine load hits every reader alike.
    for _ in range(args.repeat):
        for name in names:
            w, r = run_once(name, logdir, expected)
            runs[name][0].append(w)
            runs[name][1].append(r)
    results = {name: (statistics.median(w), max(r), w) for name, (w, r) in runs.items()}
    import os

    print(f"\n{expected:,} scalars, {N_TAGS} tags, {size / 2**20:.1f} MiB; median of {args.repeat} "
          f"fresh processes; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'reader':<18}{'wall s (median)':>16}{'peak RSS MiB':>14}   all runs (s)")
    for name, (w, r, ws) in results.items():
        print(f"{name:<18}{w:>16.2f}{r:>14.0f}   {' '.join(f'{x:.2f}' for x in ws)}")
    if "traindoctor" in results:
        base = results["traindoctor"][0]
        for name, (w, _, _) in results.items():
            if name != "traindoctor":
                print(f"traindoctor is {w / base:.1f}x faster than {name}")
    return 0


# -- text logs ------------------------------------------------------------------------------
# A key=value text log (`step=123 loss=0.636962 lr=4.6014e-04 grad_norm=0.3545 epoch=1`, 1M lines,
# ~66 MB) read by td.load, beside the floor a user reaches with the standard library: one
# compiled regex finditer over the whole text, float() of every value into a list per key.
TEXT_READERS = {
    "traindoctor": """
import traindoctor as td
run = td.load(LOGFILE, format="textlog")
n = sum(len(s) for s in run.series.values())
""",
    "regex finditer": """
import re
from collections import defaultdict
text = open(LOGFILE, encoding="utf-8").read()
rx = re.compile(r"([A-Za-z_][\\w./-]*)=([-+]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][-+]?\\d+)?)")
cols = defaultdict(list)
for m in rx.finditer(text):
    cols[m.group(1)].append(float(m.group(2)))
n = sum(len(v) for k, v in cols.items() if k not in ("step", "epoch"))
""",
}
TEXT_METRICS = 3  # loss, lr, grad_norm per line


def make_text_log(lines: int) -> Path:
    path = DATA / f"kv_{lines}.log"
    if path.exists():
        return path
    import numpy as np

    DATA.mkdir(parents=True, exist_ok=True)
    print(f"writing {lines:,} lines to {path} (once; cached) ...", file=sys.stderr)
    rng = np.random.default_rng(0)
    loss, lr, gn = rng.random(lines), rng.random(lines) * 1e-3, rng.random(lines) * 3
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in range(lines):
            fh.write(f"step={i} loss={loss[i]:.6f} lr={lr[i]:.4e} grad_norm={gn[i]:.4f} epoch={i // 10000}\n")
    tmp.rename(path)
    return path


def _measure_text(code: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process running `code`."""
    helper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "rc = subprocess.run([sys.executable, '-c', sys.argv[1]]).returncode\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps({'rc': rc, 'wall': dt, 'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", helper, code], capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        sys.exit(f"text reader failed:\n{out.stderr}")
    return res["wall"], res["rss"]


def text_main(argv=None) -> int:
    import os

    ap = argparse.ArgumentParser(description="ingest benchmark: a key=value text log")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    path = make_text_log(args.lines)
    expected = args.lines * TEXT_METRICS
    runs: dict[str, tuple[list, list]] = {name: ([], []) for name in TEXT_READERS}
    for _ in range(args.repeat):  # round-robin: a change in machine load hits both alike
        for name, code in TEXT_READERS.items():
            w, r = _measure_text(f"LOGFILE = {str(path)!r}\n{code}\nimport sys\n"
                                 f"if n != {expected}: sys.exit(f'read {{n}} points, expected {expected}')\n")
            runs[name][0].append(w)
            runs[name][1].append(r)
    print(f"\n{args.lines:,} lines, {expected:,} points, {path.stat().st_size / 2**20:.1f} MiB; median of "
          f"{args.repeat} fresh processes; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'reader':<18}{'wall s (median)':>16}{'peak RSS MiB':>14}   all runs (s)")
    for name, (ws, rs) in runs.items():
        print(f"{name:<18}{statistics.median(ws):>16.2f}{max(rs):>14.0f}   {' '.join(f'{x:.2f}' for x in ws)}")
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = text_main(sys.argv[2:]) if sys.argv[1:2] == ["text"] else main()
    print(f"(benchmark took {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    sys.exit(rc)
