"""Ingest benchmark: reading TensorBoard scalars with traindoctor vs tbparse vs EventAccumulator.

    python benchmarks/ingest.py                     # 1,000,000 scalars over 10 tags, median of 5
    python benchmarks/ingest.py --points 20000 --repeat 1   # smoke run

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


def run_once(name: str, logdir: Path, expected: int, readers=READERS, cpu: list | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process running one reader."""
    code = f"LOGDIR = {str(logdir)!r}\n" + readers[name] + (
        f"\nimport sys\nif n != {expected}:\n"
        f"    sys.exit(f'{name} read {{n}} points, expected {expected}')\n"
    )
    # A forked helper runs the reader so that RUSAGE_CHILDREN measures only that process.
    helper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "rc = subprocess.run([sys.executable, '-c', sys.argv[1]]).returncode\n"
        "dt = time.perf_counter() - t\n"
        "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'rc': rc, 'wall': dt, 'rss': ru.ru_maxrss / 1024, 'cpu': ru.ru_utime + ru.ru_stime}))\n"
    )
    out = subprocess.run([sys.executable, "-c", helper, code], capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        sys.exit(f"{name} failed:\n{out.stderr}")
    if cpu is not None:
        cpu.append(res["cpu"])  # CPU seconds: what the wall time would be on an idle machine
    return res["wall"], res["rss"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="scalars in the file (default 1e6)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per reader; the median is reported")
    ap.add_argument("--readers", default=",".join(READERS), help="comma-separated subset")
    ap.add_argument("--mlflow", action="store_true",
                    help="instead: read an MLflow SQLite store (mlflow.db) of --points metric points")
    args = ap.parse_args(argv)
    if args.mlflow:
        return mlflow_db(args.points, args.repeat)
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


# -- MLflow's SQLite store ------------------------------------------------------------------------
MLFLOW_READERS = {
    "traindoctor": """
import traindoctor as td
runs = td.load_runs(LOGDIR)
n = sum(len(s) for r in runs for s in r.series.values())
""",
}


def make_mlflow_db(points: int) -> Path:
    """mlflow.db holding one run of `points` metric points over N_TAGS keys, written by the real
    mlflow client's log_batch (1,000 points a call, the client's limit); cached like the events file."""
    steps = points // N_TAGS
    db = DATA / f"mlflow_{steps}x{N_TAGS}" / "mlflow.db"
    done = db.parent / "DONE"
    if done.exists():
        return db
    import shutil

    import numpy as np
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    shutil.rmtree(db.parent, ignore_errors=True)
    db.parent.mkdir(parents=True)
    print(f"writing {steps * N_TAGS:,} metric points to {db} with mlflow (once; cached) ...", file=sys.stderr)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.create_run(client.create_experiment("bench"), run_name="big").info.run_id
    rng = np.random.default_rng(0)
    vals = rng.standard_normal((steps, N_TAGS)).tolist()
    tags = [f"metric_{i}/{'train' if i % 2 else 'val'}" for i in range(N_TAGS)]
    batch = []
    for step in range(steps):
        ts = 1_700_000_000_000 + step
        batch += [Metric(tag, vals[step][i], ts, step) for i, tag in enumerate(tags)]
        if len(batch) >= 1000:
            client.log_batch(run, metrics=batch)
            batch = []
    if batch:
        client.log_batch(run, metrics=batch)
    client.set_terminated(run)
    done.write_text(str(steps * N_TAGS))
    return db


def mlflow_db(points: int, repeat: int) -> int:
    """traindoctor reading every point of an mlflow.db, in fresh processes (target: 1M in <= 1.5 s)."""
    import os

    db = make_mlflow_db(points)
    expected = (points // N_TAGS) * N_TAGS
    walls, rss, cpus = [], [], []
    for _ in range(repeat):
        w, r = run_once("traindoctor", db, expected, MLFLOW_READERS, cpus)
        walls.append(w)
        rss.append(r)
    print(f"\nmlflow.db: {expected:,} metric points, {N_TAGS} keys, one run, {db.stat().st_size / 2**20:.0f} MiB; "
          f"median of {repeat} fresh processes; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"traindoctor  wall s (median) {statistics.median(walls):.2f}  CPU s (median) {statistics.median(cpus):.2f}  "
          f"peak RSS MiB {max(rss):.0f}   all runs wall (s) {' '.join(f'{x:.2f}' for x in walls)}")
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = main()
    print(f"(benchmark took {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    sys.exit(rc)
