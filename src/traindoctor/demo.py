"""`traindoctor demo`: train a small model with a known fault, then diagnose it the normal way.

A torch MLP on scikit-learn's bundled 8x8 digits (1797 images, shipped with scikit-learn, so
nothing is downloaded) trains in a few seconds on a laptop CPU. The run is logged the way a
training script would log it (metrics.csv with epoch, step, train_loss, val_loss, val_acc, lr,
hparams.json, checkpoints named epoch=N.pt) and then read back through `traindoctor.diagnose(path)`,
so the demo exercises exactly the path a user's own logs take.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import TraindoctorError

__all__ = ["FAULTS", "Fault", "train", "run_demo", "command"]


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    expect: tuple[str, ...]  # finding codes (warning or error) a diagnosis of this run shows
    n_train: int | None  # training samples (None: all 1397)
    hidden: int
    optimizer: str  # "adam" or "sgd"
    lr: float
    epochs: int
    batch_size: int
    shuffle_labels: bool = False


FAULTS: dict[str, Fault] = {f.name: f for f in (
    # 60 samples, one full batch, a 2x512 MLP, no regularisation: memorises the 60 samples
    # within ~10 epochs, after which val_loss climbs (tests/writers.py measured the same setup).
    Fault("overfit", "a big MLP on 60 training samples, no regularisation: validation loss turns up",
          ("overfitting",), 60, 512, "adam", 3e-3, 40, 60),
    # SGD at lr=3 overshoots on the first steps and kills the ReLUs: the loss then sits at the
    # chance level ln(10) = 2.303 for good, which is what a far-too-high LR usually looks like
    # in per-epoch logs (the explosion itself happens within the first epoch).
    Fault("lr-high", "SGD with lr=3: the first updates wreck the network, the loss sits at chance level",
          ("plateau", "underfitting"), None, 64, "sgd", 3.0, 15, 64),
    # SGD at lr=1e-4: each update is ~1e4 times smaller than lr-high's; the loss barely moves.
    Fault("lr-low", "SGD with lr=1e-4: the loss barely moves in 20 epochs",
          ("loss_constant", "underfitting"), None, 64, "sgd", 1e-4, 20, 64),
    # Zhang et al. 2017: a network can memorise random labels; validation stays at chance.
    Fault("shuffled-labels", "training labels shuffled (no signal): validation stays at chance",
          ("overfitting",), 300, 256, "adam", 3e-3, 40, 300,
          shuffle_labels=True),
    Fault("healthy", "a sensible setup (Adam 3e-3, all data, 64 hidden units): nothing to report",
          (), None, 64, "adam", 3e-3, 20, 64),
)}
DEFAULT_FAULT = "overfit"
N_VAL = 400  # validation images held out from the 1797


def _need_libs():
    from .errors import require

    purpose = "traindoctor demo (it trains a small torch model on scikit-learn's digits)"
    require("torch", "demo", purpose)
    require("sklearn", "demo", purpose)


def train(fault: Fault, out: Path, seed: int = 0) -> Path:
    """Train with `fault`, log to out/metrics.csv, save checkpoints, return `out`."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    out.mkdir(parents=True, exist_ok=True)
    ck_dir = out / "checkpoints"
    for old in list(ck_dir.glob("epoch=*.pt")) + list(ck_dir.glob("last.pt")):
        old.unlink()  # a previous demo in the same folder must not leave checkpoints behind
    ck_dir.mkdir(exist_ok=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest and leaves the machine usable
    try:
        torch.manual_seed(seed)
        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(seed).permutation(len(x))
        x = torch.tensor(x[order] / 16.0, dtype=torch.float32)
        y = torch.tensor(y[order], dtype=torch.long)
        x_val, y_val, x_tr, y_tr = x[:N_VAL], y[:N_VAL], x[N_VAL:], y[N_VAL:]
        if fault.n_train is not None:
            x_tr, y_tr = x_tr[: fault.n_train], y_tr[: fault.n_train]
        if fault.shuffle_labels:
            y_tr = y_tr[torch.randperm(len(y_tr))]
        model = nn.Sequential(nn.Linear(64, fault.hidden), nn.ReLU(), nn.Linear(fault.hidden, fault.hidden),
                              nn.ReLU(), nn.Linear(fault.hidden, 10))
        if fault.optimizer == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=fault.lr)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=fault.lr)
        hparams = {"fault": fault.name, "optimizer": fault.optimizer, "lr": fault.lr, "hidden": fault.hidden,
                   "epochs": fault.epochs, "batch_size": fault.batch_size, "n_train": len(x_tr),
                   "n_val": N_VAL, "num_classes": 10, "shuffle_labels": fault.shuffle_labels, "seed": seed}
        (out / "hparams.json").write_text(json.dumps(hparams, indent=2), encoding="utf-8")
        best = float("inf")
        step = 0
        with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["epoch", "step", "train_loss", "val_loss", "val_acc", "lr"])
            for epoch in range(fault.epochs):
                model.train()
                perm = torch.randperm(len(x_tr))
                total, count = 0.0, 0
                for i in range(0, len(x_tr), fault.batch_size):
                    idx = perm[i: i + fault.batch_size]
                    loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    step += 1
                    total += loss.item() * len(idx)
                    count += len(idx)
                model.eval()
                with torch.no_grad():
                    logits = model(x_val)
                    val_loss = float(F.cross_entropy(logits, y_val))
                    val_acc = float((logits.argmax(1) == y_val).float().mean())
                w.writerow([epoch, step, f"{total / count:.6g}", f"{val_loss:.6g}", f"{val_acc:.6g}", fault.lr])
                fh.flush()  # a crash mid-run still leaves every finished epoch on disk
                # keep the best checkpoint (like ModelCheckpoint(save_top_k=1)) and the last one
                if val_loss < best:
                    best = val_loss
                    for old in ck_dir.glob("epoch=*.pt"):
                        old.unlink()
                    torch.save(model.state_dict(), ck_dir / f"epoch={epoch}.pt")
        torch.save(model.state_dict(), ck_dir / "last.pt")
    finally:
        torch.set_num_threads(threads)
    return out


def run_demo(fault: str = DEFAULT_FAULT, out="traindoctor-demo", seed: int = 0):
    """Train, diagnose through the normal path, write report.html and report.md; return the Report."""
    from .engine import diagnose

    _need_libs()
    out = Path(out)
    train(FAULTS[fault], out, seed)
    report = diagnose(out)
    report.save_html(out / "report.html")
    (out / "report.md").write_text(report.to_markdown(), encoding="utf-8")
    return report


def command(args) -> int:
    from ._cli_common import EXIT_FINDINGS, EXIT_OK
    from .errors import InputError

    if args.list:
        w = max(len(n) for n in FAULTS)
        for f in FAULTS.values():
            print(f"{f.name:<{w}}  {f.what}  (expect: {', '.join(f.expect) or 'no warning'})")
        return EXIT_OK
    name = args.fault or DEFAULT_FAULT
    if name not in FAULTS:
        raise InputError(None, f"unknown demo fault {name!r}; faults are: {', '.join(FAULTS)} "
                               "(`traindoctor demo --list` describes them)")
    fault = FAULTS[name]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder; expected a folder for the demo's logs (use --out)")
    if not args.json:
        print(f"traindoctor demo: training with fault {fault.name!r}: {fault.what}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        report = run_demo(name, out)
    except TraindoctorError:
        raise
    except OSError as exc:
        raise InputError(out, f"cannot write the demo run there ({exc.strerror or exc}); pass --out FOLDER") from None
    seconds = time.perf_counter() - t0
    if args.json:
        print(report.to_json())
    else:
        from .render.terminal import print_reports

        print_reports([report])
        print(f"\ntrained and diagnosed in {seconds:.1f} s; logs in {out}/, report in "
              f"{out / 'report.html'} and {out / 'report.md'}", file=sys.stderr)
    return EXIT_FINDINGS if report.fails("error") else EXIT_OK
