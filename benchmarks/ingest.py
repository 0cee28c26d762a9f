"""Ingest benchmark: `td.load` on every format at about a million points, beside the floor a user
could reach with standard tools on the same file in the same run.

    python benchmarks/ingest.py                              # every format, median of 3
    python benchmarks/ingest.py --formats csv,hf --repeat 5
    python benchmarks/ingest.py --points 20000 --repeat 1    # smoke run

| format        | file                                                     | floor                         |
|---------------|----------------------------------------------------------|-------------------------------|
| tensorboard   | 1M scalars over 10 tags, torch SummaryWriter             | tbparse, EventAccumulator     |
| csv           | Lightning CSVLogger metrics.csv: 1M rows, epoch, step,   | pandas.read_csv               |
|               | train_loss + lr every row, val_loss once an epoch        |                               |
| hf            | trainer_state.json: 200k log_history rows (5 numbers:    | json.load + a loop over rows  |
|               | loss, grad_norm, learning_rate, epoch, step), 21 MB      |                               |
| detectron2    | metrics.json: 100k JSON lines x 10 scalars               | json.loads per line           |
| mmengine      | vis_data/scalars.json: 167k JSON lines x 6 scalars       | json.loads per line           |
| jsonl         | metrics.jsonl: 250k lines x 4 metrics                    | json.loads per line           |
| text          | key=value text log: 1M lines x 3 metrics, 63 MB          | one compiled regex finditer   |
|               | (`step=1 loss=0.63 lr=4.6e-04 grad_norm=0.35 epoch=0`)   | over the text, float() each   |
| mlflow        | mlflow.db (MLflow 3's SQLite store): one run, 1M metric  | sqlite3 fetchall, MlflowClient|
|               | points over 10 keys, written by the mlflow client        | .get_metric_history           |

Files are written once in each tool's exact format and cached under benchmarks/_data/
(gitignored). Each reader runs in its own fresh Python process, so wall time and peak RSS are
whole-process numbers a user would see (imports included); each checks that it read every
point and exits non-zero otherwise. Timings depend on machine load: the load average is printed;
run on an idle machine for numbers to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parent / "_data"
N_TAGS = 10


@dataclass
class Format:
    """One input format: how to write it (once, cached) and the programs that read it."""

    name: str
    make: object  # (points) -> (path, expected points)
    readers: dict[str, str] = field(default_factory=dict)  # name -> code that sets `n`


_TD = """
import traindoctor as td
run = td.load(PATH)
n = sum(len(s) for s in run.series.values())
"""

_JSON_LINES_FLOOR = """
import json
n = 0
with open(PATH) as fh:
    for line in fh:
        row = json.loads(line)
        n += sum(1 for k, v in row.items() if k not in SKIP and isinstance(v, (int, float)))
"""


def _cached(name: str, points: int, write) -> tuple[Path, int]:
    d = DATA / f"{name}_{points}"
    done = d / "DONE"
    if done.exists():
        meta = json.loads(done.read_text())
        return d / meta["path"], meta["expected"]
    import shutil

    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    print(f"writing the {name} input ({points:,} rows or points) to {d} (once; cached) ...", file=sys.stderr)
    rel, expected = write(d, points)
    done.write_text(json.dumps({"path": str(rel), "expected": expected}))
    return d / rel, expected


# -- TensorBoard ------------------------------------------------------------------------------
def make_tensorboard(points: int) -> tuple[Path, int]:
    def write(d: Path, points: int):
        import numpy as np
        from torch.utils.tensorboard import SummaryWriter

        steps = points // N_TAGS
        rng = np.random.default_rng(0)
        vals = rng.standard_normal((steps, N_TAGS)).astype(np.float32).tolist()
        tags = [f"metric_{i}/{'train' if i % 2 else 'val'}" for i in range(N_TAGS)]
        w = SummaryWriter(str(d / "logs"), max_queue=1000, flush_secs=3600)
        for step in range(steps):
            row = vals[step]
            for i, tag in enumerate(tags):
                w.add_scalar(tag, row[i], step)
        w.close()
        return "logs", steps * N_TAGS

    return _cached("tensorboard", points, write)


TENSORBOARD = Format("tensorboard", make_tensorboard, {
    "traindoctor": _TD.replace("td.load(PATH)", 'td.load(PATH, format="tensorboard")'),
    "tbparse": "from tbparse import SummaryReader\nn = len(SummaryReader(PATH).scalars)\n",
    "EventAccumulator": """
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(PATH, size_guidance={"scalars": 0})
ea.Reload()
n = sum(len(ea.Scalars(tag)) for tag in ea.Tags()["scalars"])
""",
})


# -- Lightning-style CSV ----------------------------------------------------------------------
def make_csv(points: int) -> tuple[Path, int]:
    """Lightning CSVLogger's layout: sorted columns, one sparse row per log call; here every row
    has train_loss and lr, and each 1000th row (an epoch end) val_loss too."""
    rows = points

    def write(d: Path, rows: int):
        import numpy as np

        rng = np.random.default_rng(0)
        loss = np.exp(-np.arange(rows) / rows) + 0.05 * rng.random(rows)
        path = d / "lightning_logs" / "version_0" / "metrics.csv"
        path.parent.mkdir(parents=True)
        with open(path, "w") as fh:
            fh.write("epoch,lr-Adam,step,train_loss,val_loss\n")
            chunk = []
            for i in range(rows):
                val = f"{loss[i] * 1.1:.6f}" if i % 1000 == 999 else ""
                chunk.append(f"{i // 1000},0.001,{i},{loss[i]:.6f},{val}\n")
                if len(chunk) == 100_000:
                    fh.writelines(chunk)
                    chunk = []
            fh.writelines(chunk)
        return path.relative_to(d), rows * 2 + rows // 1000

    return _cached("csv", rows, write)


CSV = Format("csv", make_csv, {
    "traindoctor": _TD,
    "pandas.read_csv": """
import pandas as pd
df = pd.read_csv(PATH)
n = int(df.drop(columns=["epoch", "step"]).notna().sum().sum())
""",
})


# -- HF trainer_state.json --------------------------------------------------------------------
def make_hf(points: int) -> tuple[Path, int]:
    """Trainer.save_state's file: json.dumps(asdict(state), indent=2, sort_keys=True) + "\\n"
    (transformers/trainer_callback.py TrainerState.save_to_json); training rows of 5 numbers."""
    rows = points // 5

    def write(d: Path, rows: int):
        import numpy as np

        rng = np.random.default_rng(0)
        hist = []
        for i in range(rows):
            step = 10 * (i + 1)
            hist.append({"epoch": round(step / 20000, 4), "grad_norm": float(1 + rng.random()),
                         "learning_rate": 5e-5 * (1 - i / rows), "loss": float(2 * np.exp(-i / rows) + 0.1 * rng.random()),
                         "step": step})
        state = {"best_metric": None, "best_model_checkpoint": None, "epoch": hist[-1]["epoch"],
                 "eval_steps": 500, "global_step": hist[-1]["step"], "is_hyper_param_search": False,
                 "is_local_process_zero": True, "is_world_process_zero": True, "log_history": hist,
                 "logging_steps": 10, "max_steps": hist[-1]["step"], "num_train_epochs": 100,
                 "save_steps": 500, "total_flos": 1e15, "train_batch_size": 8, "trial_name": None,
                 "trial_params": None}
        path = d / "output" / "trainer_state.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        return path.relative_to(d), rows * 3  # step and epoch are the axes

    return _cached("hf", rows, write)


HF = Format("hf", make_hf, {
    "traindoctor": _TD,
    "json.load + loop": """
import json
with open(PATH) as fh:
    state = json.load(fh)
n = 0
for row in state["log_history"]:
    n += sum(1 for k, v in row.items() if k not in ("step", "epoch") and isinstance(v, (int, float)))
""",
})


# -- detectron2 metrics.json ------------------------------------------------------------------
_D2_KEYS = ["data_time", "eta_seconds", "fast_rcnn/cls_accuracy", "loss_box_reg", "loss_cls", "loss_rpn_cls",
            "loss_rpn_loc", "lr", "time", "total_loss"]


def make_d2(points: int) -> tuple[Path, int]:
    """JSONWriter's lines: json.dumps(scalars_per_iter, sort_keys=True), "iteration" among them."""
    rows = points // len(_D2_KEYS)

    def write(d: Path, rows: int):
        import numpy as np

        rng = np.random.default_rng(0)
        vals = rng.random((rows, len(_D2_KEYS))).tolist()
        path = d / "output" / "metrics.json"
        path.parent.mkdir(parents=True)
        with open(path, "w") as fh:
            for i in range(rows):
                row = dict(zip(_D2_KEYS, vals[i]))
                row["iteration"] = 20 * i + 19
                fh.write(json.dumps(row, sort_keys=True) + "\n")
        return path.relative_to(d), rows * len(_D2_KEYS)

    return _cached("detectron2", rows, write)


D2 = Format("detectron2", make_d2, {"traindoctor": _TD,
                                    "json.loads per line": "SKIP = {'iteration'}\n" + _JSON_LINES_FLOOR})


# -- MMEngine scalars.json --------------------------------------------------------------------
def make_mmengine(points: int) -> tuple[Path, int]:
    """LocalVisBackend.add_scalars' lines: {"lr", "data_time", "loss", "time", "grad_norm",
    "epoch", "iter", "memory", "step"}; memory is an int and counted too."""
    rows = points // 6

    def write(d: Path, rows: int):
        import numpy as np

        rng = np.random.default_rng(0)
        vals = rng.random((rows, 5)).tolist()
        path = d / "work" / "20240101_000000" / "vis_data" / "scalars.json"
        path.parent.mkdir(parents=True)
        with open(path, "w") as fh:
            for i in range(rows):
                v = vals[i]
                fh.write(json.dumps({"lr": v[0], "data_time": v[1], "loss": v[2], "time": v[3], "grad_norm": v[4],
                                     "epoch": i // 1000 + 1, "iter": 10 * (i + 1), "memory": 3060,
                                     "step": 10 * (i + 1)}) + "\n")
        return path.relative_to(d), rows * 6

    return _cached("mmengine", rows, write)


MMENGINE = Format("mmengine", make_mmengine, {
    "traindoctor": _TD, "json.loads per line": "SKIP = {'step', 'epoch', 'iter'}\n" + _JSON_LINES_FLOOR})


# -- generic JSONL ----------------------------------------------------------------------------
def make_jsonl(points: int) -> tuple[Path, int]:
    rows = points // 4

    def write(d: Path, rows: int):
        import numpy as np

        rng = np.random.default_rng(0)
        vals = rng.random((rows, 4)).tolist()
        path = d / "metrics.jsonl"
        with open(path, "w") as fh:
            for i in range(rows):
                v = vals[i]
                fh.write(json.dumps({"step": i, "epoch": i // 1000, "loss": v[0], "acc": v[1], "lr": v[2],
                                     "grad_norm": v[3]}) + "\n")
        return path.relative_to(d), rows * 4

    return _cached("jsonl", rows, write)


JSONL = Format("jsonl", make_jsonl, {"traindoctor": _TD,
                                     "json.loads per line": "SKIP = {'step', 'epoch'}\n" + _JSON_LINES_FLOOR})


# -- key=value text log -----------------------------------------------------------------------
def make_text(points: int) -> tuple[Path, int]:
    """`step=123 loss=0.636962 lr=4.6014e-04 grad_norm=0.3545 epoch=1`: 3 metrics a line."""

    def write(d: Path, lines: int):
        import numpy as np

        rng = np.random.default_rng(0)
        loss, lr, gn = rng.random(lines), rng.random(lines) * 1e-3, rng.random(lines) * 3
        with open(d / "train.log", "w", encoding="utf-8") as fh:
            for i in range(lines):
                fh.write(f"step={i} loss={loss[i]:.6f} lr={lr[i]:.4e} grad_norm={gn[i]:.4f} epoch={i // 10000}\n")
        return "train.log", lines * 3

    return _cached("text", points, write)


TEXT = Format("text", make_text, {
    "traindoctor": _TD.replace("td.load(PATH)", 'td.load(PATH, format="textlog")'),
    # The floor a user reaches with the standard library: one compiled regex over the whole text.
    "regex finditer": """
import re
from collections import defaultdict
text = open(PATH, encoding="utf-8").read()
rx = re.compile(r"([A-Za-z_][\\w./-]*)=([-+]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][-+]?\\d+)?)")
cols = defaultdict(list)
for m in rx.finditer(text):
    cols[m.group(1)].append(float(m.group(2)))
n = sum(len(v) for k, v in cols.items() if k not in ("step", "epoch"))
""",
})

# -- MLflow's SQLite store --------------------------------------------------------------------
def make_mlflow(points: int) -> tuple[Path, int]:
    """mlflow.db as `mlflow.start_run()` leaves it: one run, N_TAGS keys, written by the real
    client's log_batch (1,000 points a call, its limit); about 10 minutes once, then cached."""

    def write(d: Path, points: int):
        import numpy as np
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        steps = points // N_TAGS
        client = MlflowClient(tracking_uri=f"sqlite:///{d / 'mlflow.db'}")
        run = client.create_run(client.create_experiment("bench"), run_name="big").info.run_id
        vals = np.random.default_rng(0).standard_normal((steps, N_TAGS)).tolist()
        tags = [f"metric_{i}/{'train' if i % 2 else 'val'}" for i in range(N_TAGS)]
        batch = []
        for step in range(steps):
            batch += [Metric(tag, vals[step][i], 1_700_000_000_000 + step, step) for i, tag in enumerate(tags)]
            if len(batch) >= 1000:
                client.log_batch(run, metrics=batch)
                batch = []
        if batch:
            client.log_batch(run, metrics=batch)
        client.set_terminated(run)
        return "mlflow.db", steps * N_TAGS

    return _cached("mlflow", points, write)


MLFLOW = Format("mlflow", make_mlflow, {
    "traindoctor": _TD,
    "sqlite3 fetchall": """
import sqlite3
n = len(sqlite3.connect(PATH).execute("SELECT key, value, timestamp, step, is_nan FROM metrics").fetchall())
""",
    "MlflowClient history": """
from mlflow.tracking import MlflowClient
c = MlflowClient(tracking_uri="sqlite:///" + PATH)
runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
n = sum(len(c.get_metric_history(r.info.run_id, k)) for r in runs for k in r.data.metrics)
""",
})

FORMATS = {f.name: f for f in (TENSORBOARD, CSV, HF, D2, MMENGINE, JSONL, TEXT, MLFLOW)}


def run_once(fmt: Format, reader: str, path: Path, expected: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process running one reader."""
    code = f"PATH = {str(path)!r}\n" + fmt.readers[reader] + (
        f"\nimport sys\nif n != {expected}:\n"
        f"    sys.exit(f'{reader} read {{n}} points, expected {expected}')\n"
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
        sys.exit(f"{fmt.name}/{reader} failed:\n{out.stderr}")
    return res["wall"], res["rss"]


def bench(fmt: Format, points: int, repeat: int) -> None:
    path, expected = fmt.make(points)
    size = sum(f.stat().st_size for f in (path.rglob("*") if path.is_dir() else [path]) if f.is_file())
    runs = {name: ([], []) for name in fmt.readers}
    for _ in range(repeat):  # round-robin, so that a change in machine load hits every reader alike
        for name in fmt.readers:
            w, r = run_once(fmt, name, path, expected)
            runs[name][0].append(w)
            runs[name][1].append(r)
    print(f"\n{fmt.name}: {expected:,} points, {size / 2**20:.1f} MiB ({path.name}); median of {repeat}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"  {'reader':<22}{'wall s (median)':>16}{'peak RSS MiB':>14}   all runs (s)")
    for name, (ws, rs) in runs.items():
        print(f"  {name:<22}{statistics.median(ws):>16.2f}{max(rs):>14.0f}   {' '.join(f'{x:.2f}' for x in ws)}")
    td_s = statistics.median(runs["traindoctor"][0])
    for name, (ws, _) in runs.items():
        if name != "traindoctor":
            print(f"  traindoctor / {name}: {td_s / statistics.median(ws):.2f}x the time")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="points per file (default 1e6)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per reader; the median is reported")
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {', '.join(FORMATS)}")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.formats.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        ap.error(f"unknown format(s) {', '.join(unknown)}; formats are: {', '.join(FORMATS)}")
    for name in names:
        bench(FORMATS[name], args.points, args.repeat)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    t0 = time.perf_counter()
    rc = main()
    print(f"(benchmark took {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    sys.exit(rc)
