"""Run the fault zoo: every task x operator x seed trained for real, scored from every way in.

    PYTHONPATH=src python3 -m benchmarks.faults.run            # the full zoo -> benchmarks/faults/results.json
    PYTHONPATH=src python3 -m benchmarks.faults.run --quick    # the CI subset
    PYTHONPATH=src python3 -m benchmarks.faults.run --score results.json   # table from saved rows

For each case: `td.probe` (and torchtest2) on the freshly built model and one batch; a training
run under `td.watch` (every=1, see train()), whose per-step losses and
per-epoch validation metrics are written as TensorBoard events (SummaryWriter), a Lightning
metrics.csv (lightning's own CSVLogger) and a plain text log; `td.diagnose` (and runmedic and
trainspotter) on each of the three. A case's row keeps every code at warning or above.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import peers
from .expected import EXPECTED
from .zoo import OPS, TASKS, build

LOG_WAYS = ("tensorboard", "csv", "text")
# two held-out seeds per fault, four clean twins per task: 218 trainings, ~14 min on 2 busy cores
FULL = {"tasks": TASKS, "seeds": (101, 102), "clean_seeds": (101, 102, 103, 104)}
# the CI subset: two tasks, one held-out seed, every operator that applies to them
QUICK = {"tasks": ("digits", "boxes"), "seeds": (101,), "clean_seeds": (101, 102, 103)}
# the gate's margin: ~3 of the quick zoo's ~30 fault cases (probe budgets and live timings vary
# with machine load), and on 3 clean twins a task any one new false alarm (1/6 > 0.10)
MARGIN = 0.10
PROBE_BUDGET = None  # the default (10 s): a tighter one skips the LR sweep on a busy machine


def warned(report) -> list[str]:
    return sorted({f.code for f in report.findings if f.severity.rank >= 1})


def infos(report) -> list[str]:
    return sorted({f.code for f in report.findings if f.severity.rank < 1})


def train(setup, logdir: Path):
    """Train for real under td.watch; return the logged curves and when each watch finding came."""
    import traindoctor as td

    gen = torch.Generator().manual_seed(setup.seed)
    model, opt, loss_fn = setup.model, setup.optimizer, setup.loss_fn
    n = len(setup.x_train)
    steps, train_rows, val_rows, said = 0, [], [], []
    opt.zero_grad()
    # every=1: the zoo's steps take ~1 ms, so every="auto" (which keeps the recorder under 0.5 % of
    # the step time) would record one step in 30 and leave the curve detectors 5 points; a real
    # run's steps (tens of ms and up) are recorded every step under "auto", which is what this scores
    with td.watch(model, opt, logdir=logdir / "watch", report=False, every=1) as w:
        for epoch in range(setup.epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, setup.batch_size):
                idx = perm[i:i + setup.batch_size]
                xb, yb = setup.x_train[idx], setup.y_train[idx]
                out = model(xb)
                loss = loss_fn(out, yb)
                if setup.zero_grad:
                    opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                w.step(loss=loss, outputs=out, targets=yb, epoch=epoch)
                train_rows.append((steps, epoch, float(loss.detach())))
                said += [(steps, f.code, f.severity.rank) for f in w.findings[len(said):]]
            model.eval()
            with torch.no_grad():
                out = model(setup.x_val)
                vl = float(loss_fn(out, setup.y_val))
                acc = float((out.argmax(-1) == setup.y_val).float().mean()) if setup.kind != "box" else None
            metrics = {"val_loss": vl} | ({"val_acc": acc} if acc is not None else {})
            w.log(step=steps, epoch=epoch, **metrics)
            val_rows.append((steps, epoch, metrics))
            said += [(steps, f.code, f.severity.rank) for f in w.findings[len(said):]]
    report = w.report_obj
    return train_rows, val_rows, said, report, steps


def write_logs(train_rows, val_rows, root: Path) -> dict:
    """The same numbers in three formats, each by its real writer where it installs."""
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.tensorboard import SummaryWriter

    paths = {}
    tb = root / "tb"
    with SummaryWriter(str(tb)) as sw:
        for s, _, v in train_rows:
            sw.add_scalar("train_loss", v, s)
        for s, _, m in val_rows:
            for k, v in m.items():
                sw.add_scalar(k, v, s)
    paths["tensorboard"] = tb
    csv = CSVLogger(str(root), name="csv", version=0)
    for s, e, v in train_rows:
        csv.log_metrics({"train_loss": v, "epoch": e}, step=s - 1)
    for s, e, m in val_rows:
        csv.log_metrics({**m, "epoch": e}, step=s - 1)
    csv.save()
    paths["csv"] = Path(csv.log_dir) / "metrics.csv"
    lines = []
    vi = 0
    for s, e, v in train_rows:
        lines.append(f"epoch {e} step {s} train_loss {v:.6g}")
        while vi < len(val_rows) and val_rows[vi][0] == s:
            m = val_rows[vi][2]
            lines.append(f"epoch {e} step {s} " + " ".join(f"{k} {x:.6g}" for k, x in m.items()))
            vi += 1
    (root / "train.log").write_text("\n".join(lines) + "\n")
    paths["text"] = root / "train.log"
    return paths


def onset_step(op: str, train_rows, val_rows):
    kind = EXPECTED[op]["onset"] if op in EXPECTED else None
    if kind == "start":
        return 0
    if kind == "val_best":
        best = int(np.argmin([m["val_loss"] for _, _, m in val_rows]))
        return val_rows[best][0]
    return None


def run_case(task: str, op: str, seed: int, work: Path, with_peers: bool) -> dict:
    import traindoctor as td

    t0 = time.perf_counter()
    setup = build(task, op, seed)
    row = {"task": task, "op": op, "seed": seed, "ways": {}, "peers": {}, "errors": {}, "info": {}}
    xb, yb = setup.x_train[:64], setup.y_train[:64]
    try:
        rep = td.probe(setup.model, (xb, yb), loss_fn=setup.loss_fn, optimizer=setup.optimizer, budget=PROBE_BUDGET)
        row["ways"]["probe"], row["info"]["probe"] = warned(rep), infos(rep)
    except Exception as exc:  # a crash is scored as "found nothing" and reported
        row["errors"]["probe"] = f"{type(exc).__name__}: {exc}"
    if with_peers and peers.available("torchtest2"):
        try:
            row["peers"]["torchtest2"] = peers.torchtest2_checks(setup.model, setup.optimizer, xb, yb, setup.loss_fn)
        except Exception as exc:
            row["errors"]["torchtest2"] = f"{type(exc).__name__}: {exc}"
    root = work / f"{task}-{op}-{seed}"
    train_rows, val_rows, said, report, steps = train(setup, root)
    row["ways"]["watch"], row["info"]["watch"] = warned(report), infos(report)
    row["watch_said"] = [s for s in said if s[2] >= 1]
    row["steps"] = steps
    row["onset"] = onset_step(op, train_rows, val_rows)
    # what the fault did to the run (a fault that did no harm is not a miss of the curve detectors)
    vl = [m["val_loss"] for _, _, m in val_rows]
    row["outcome"] = {"train_loss_end": float(np.mean([v for _, _, v in train_rows[-5:]])),
                      "val_loss_best": float(np.nanmin(vl)) if np.isfinite(vl).any() else None,
                      "val_loss_end": vl[-1], "val_acc_end": val_rows[-1][2].get("val_acc")}
    paths = write_logs(train_rows, val_rows, root)
    for way in LOG_WAYS:
        try:
            rep = td.diagnose(paths[way])
            row["ways"][way], row["info"][way] = warned(rep), infos(rep)
        except Exception as exc:
            row["errors"][way] = f"{type(exc).__name__}: {exc}"
        if with_peers:
            for name, fn in (("runmedic", peers.runmedic_checks), ("trainspotter", peers.trainspotter_checks)):
                if peers.available(name) and (name, way) not in peers.CANNOT_READ:
                    try:
                        row["peers"][f"{name}/{way}"] = fn(paths[way])
                    except Exception as exc:
                        row["errors"][f"{name}/{way}"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def cases(plan) -> list[tuple[str, str, int]]:
    out = []
    for task in plan["tasks"]:
        out += [(task, "clean", s) for s in plan["clean_seeds"]]
        out += [(task, op, s) for op in OPS[task] for s in plan["seeds"]]
    return out


def run(plan, *, with_peers=True, jobs=1, progress=True) -> list[dict]:
    todo = cases(plan)
    with tempfile.TemporaryDirectory(prefix="td-zoo-") as tmp, _quiet():
        if jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(jobs, initializer=_quiet_worker) as ex:
                futs = [ex.submit(run_case, *c, Path(tmp), with_peers) for c in todo]
                rows = []
                for i, f in enumerate(futs):
                    rows.append(f.result())
                    if progress:
                        _progress(i, len(todo), rows[-1])
                return rows
        rows = []
        for i, c in enumerate(todo):
            rows.append(run_case(*c, Path(tmp), with_peers))
            if progress:
                _progress(i, len(todo), rows[-1])
        return rows


def _progress(i, n, row):
    print(f"[{i + 1}/{n}] {row['task']:13s} {row['op']:17s} {row['seed']} {row['seconds']:5.1f}s "
          f"probe={row['ways'].get('probe')} watch={row['ways'].get('watch')} csv={row['ways'].get('csv')}",
          file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet():
    """One torch thread (the machine is shared), no warnings or watch logging; all restored after."""
    threads = torch.get_num_threads()
    names = ("traindoctor", "lightning", "lightning.pytorch")
    levels = {n: logging.getLogger(n).level for n in names}
    torch.set_num_threads(1)
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_num_threads(threads)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _quiet_worker():
    _quiet().__enter__()  # a pool worker: quiet for its whole life


def corpus_track() -> dict | None:
    """The second diagnose track: benchmarks/corpus.py on the real public logs of ../shared/corpus."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "corpus.py"
    if not script.is_file():
        return None
    done = subprocess.run([sys.executable, str(script), "--json"], capture_output=True, text=True,
                          env={**os.environ}, timeout=600)
    if done.returncode not in (0, 1):
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(done.stdout)["totals"]


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the CI subset")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=None, help="where to write the rows (JSON)")
    ap.add_argument("--score", default=None, help="print the tables for saved rows and exit")
    ap.add_argument("--publish", action="store_true",
                    help="with --quick: write the measured rates to published.json (the CI gate's reference)")
    args = ap.parse_args(argv)
    from .score import digest, tables

    if args.score:
        data = json.loads(Path(args.score).read_text())
        print(tables(data["rows"], data["meta"]) + "\n\n### Misses, grouped\n\n" + digest(data["rows"]))
        return 0
    t0 = time.time()
    rows = run(QUICK if args.quick else FULL, with_peers=not args.no_peers, jobs=args.jobs)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "seconds": round(time.time() - t0, 1), "plan": "quick" if args.quick else "full",
            "command": "PYTHONPATH=src python3 -m benchmarks.faults.run " + " ".join(argv or sys.argv[1:])}
    if not args.quick:
        meta["corpus"] = corpus_track()
    out = Path(args.out or Path(__file__).with_name("results_quick.json" if args.quick else "results.json"))
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(tables(rows, meta))
    if args.publish and args.quick:
        from .score import WAYS, summary

        pub = {"margin": MARGIN, "measured": meta, "quick": summary(rows, WAYS)}
        Path(__file__).with_name("published.json").write_text(json.dumps(pub, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
