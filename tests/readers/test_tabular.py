"""Generic CSV/TSV/JSONL metric logs, Keras CSVLogger files and W&B / TensorBoard CSV exports.

Keras, W&B and TensorBoard are not installed here, so their files are written in their exact
formats (Keras 3 callbacks/csv_logger.py: csv.DictWriter, excel dialect, "epoch" first then the
sorted log keys, "NA" for a missing key) from a real softmax-regression training on digits.
"""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import traindoctor as td
from traindoctor.readers import tabular


def _train(epochs=8, lr=0.5):
    """Real per-epoch numbers: softmax regression on digits, full-batch gradient descent."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xt, yt, xv, yv = x[:1400], y[:1400], x[1400:], y[1400:]
    w = np.zeros((64, 10))
    rows = []

    def stats(xs, ys):
        z = xs @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return float(-np.log(p[np.arange(len(ys)), ys]).mean()), float((p.argmax(1) == ys).mean()), p

    for epoch in range(epochs):
        loss, acc, p = stats(xt, yt)
        p[np.arange(len(yt)), yt] -= 1
        w -= lr * xt.T @ p / len(yt)
        vloss, vacc, _ = stats(xv, yv)
        rows.append({"epoch": epoch, "accuracy": acc, "loss": loss, "val_accuracy": vacc,
                     "val_loss": vloss, "learning_rate": lr})
    return rows


def _keras_csv(path, rows):
    keys = sorted(k for k in rows[0] if k != "epoch")
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["epoch"] + keys, dialect=csv.excel)
        writer.writeheader()
        for r in rows:
            writer.writerow({"epoch": r["epoch"], **{k: r.get(k, "NA") for k in keys}})


def test_keras_csvlogger_every_value_roles_and_epochs(tmp_path):
    rows = _train()
    rows[3] = {k: v for k, v in rows[3].items() if k not in ("val_loss", "val_accuracy")}  # -> "NA"
    f = tmp_path / "training.log.csv"
    _keras_csv(f, rows)
    assert f.read_bytes().startswith(b"epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\r\n")
    run = td.load(tmp_path)
    assert run.format == "tabular" and run.notes == ()
    roles = {n: s.role for n, s in run.series.items()}
    assert roles == {"accuracy": "train_accuracy", "loss": "train_loss", "val_accuracy": "val_accuracy",
                     "val_loss": "val_loss", "learning_rate": "lr"}
    assert run["loss"].values.tolist() == [r["loss"] for r in rows]
    assert run["loss"].epochs.tolist() == list(range(8)) and run["loss"].steps.tolist() == list(range(8))
    val = [r for r in rows if "val_loss" in r]
    assert run["val_loss"].values.tolist() == [r["val_loss"] for r in val]  # "NA" is missing, not garbage
    assert run["val_loss"].epochs.tolist() == [0, 1, 2, 4, 5, 6, 7]


def test_garbage_rows_are_skipped_with_a_note_and_nan_is_a_value(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("step,loss,val_loss\n0,2.5,\n10,1.9,2.0\n@@ oops\n20,nan,\n30,inf,abc\n40,1.1,1.5\n50,1.0")
    run = td.load(f)
    # "@@ oops", "30,inf,abc" and the last row cut short by a crash ("50,1.0": 2 of 3 fields)
    assert "log.csv: skipped 3 malformed rows (first at line 4)" in run.notes
    loss = run["loss"]
    assert loss.steps.tolist() == [0, 10, 20, 40]
    assert loss.values[:2].tolist() == [2.5, 1.9] and math.isnan(loss.values[2])
    assert run["val_loss"].values.tolist() == [2.0, 1.5]


def test_only_garbage_exits_2_with_one_line_naming_the_file(tmp_path):
    f = tmp_path / "broken.csv"
    f.write_text("step,loss\n@@@@\n###,###,###\nhello world\n")
    with pytest.raises(td.InputError, match=r"broken\.csv: no valid data rows: 3 malformed \(first at line 2\)"):
        td.load(f)
    proc = subprocess.run([sys.executable, "-m", "traindoctor", "diagnose", str(f)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "\n" not in err and str(f) in err and "Traceback" not in proc.stderr
    g = tmp_path / "noise.csv"
    g.write_text("\x00\x01garbage\nmore garbage\n")
    proc = subprocess.run([sys.executable, "-m", "traindoctor", "diagnose", str(g)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and str(g) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_dataset_csv_in_a_folder_is_not_claimed(tmp_path):
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True).frame
    iris.to_csv(tmp_path / "iris.csv", index=False)
    assert tabular.discover(tmp_path) == []
    with pytest.raises(td.InputError, match="no training metrics found"):
        td.load(tmp_path)
    with pytest.raises(td.InputError, match=r"iris\.csv: has no step/epoch/iteration column"):
        td.load(tmp_path / "iris.csv")  # given directly: a clear reason
    _keras_csv(tmp_path / "history.csv", _train(epochs=3))
    run = td.load(tmp_path)
    assert set(run.series) == {"accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"}


def test_wandb_csv_export_strips_run_prefix_and_drops_min_max(tmp_path):
    rows = _train(epochs=5)
    f = tmp_path / "wandb_export_2024-01-01.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Step", "glad-sun-3 - val_loss", "glad-sun-3 - val_loss__MIN", "glad-sun-3 - val_loss__MAX",
                    "glad-sun-3 - loss", "glad-sun-3 - loss__MIN", "glad-sun-3 - loss__MAX"])
        for r in rows:
            w.writerow([r["epoch"] * 100, r["val_loss"], r["val_loss"], r["val_loss"], r["loss"], r["loss"], r["loss"]])
    run = td.load(f)
    assert set(run.series) == {"val_loss", "loss"} and run.hparams["wandb.run_name"] == "glad-sun-3"
    assert run["val_loss"].steps.tolist() == [0, 100, 200, 300, 400]
    assert run["loss"].values.tolist() == [r["loss"] for r in rows]
    assert run["val_loss"].role == "val_loss"


def test_tensorboard_csv_export_and_tsv(tmp_path):
    f = tmp_path / "run-exp1-tag-Loss_val.csv"
    f.write_text("Wall time,Step,Value\n1700000000.5,0,2.1\n1700000001.5,100,1.7\n")
    s = td.load(f)["Loss_val"]
    assert s.role == "val_loss" and s.values.tolist() == [2.1, 1.7] and s.wall_times.tolist()[0] == 1700000000.5
    t = tmp_path / "m.tsv"
    t.write_text("iteration\ttrain_loss\n1\t0.9\n2\t0.8\n")
    s = td.load(t)["train_loss"]
    assert s.steps.tolist() == [1, 2] and s.values.tolist() == [0.9, 0.8]


def test_jsonl_flattens_splits_and_skips_bad_lines(tmp_path):
    rows = _train(epochs=4)
    f = tmp_path / "metrics.jsonl"
    lines = []
    for r in rows:
        lines.append(json.dumps({"mode": "train", "epoch": r["epoch"], "iter": 10 * (r["epoch"] + 1),
                                 "loss": r["loss"], "opt": {"lr": r["learning_rate"]}}))
        lines.append(json.dumps({"mode": "val", "epoch": r["epoch"], "iter": 10 * (r["epoch"] + 1),
                                 "loss": r["val_loss"], "acc": r["val_accuracy"]}))
    lines.insert(3, '{"mode": "train", "loss": 0.')  # cut line
    lines.insert(5, "[1, 2, 3]")
    lines.append('{"iter": 50, "loss": NaN, "mode": "train"}')
    f.write_text("\n".join(lines) + "\n")
    run = td.load(tmp_path)
    assert "metrics.jsonl: skipped 2 malformed rows (first at line 4)" in run.notes
    assert set(run.series) == {"train/loss", "train/opt/lr", "val/loss", "val/acc"}
    assert run["val/loss"].role == "val_loss" and run["train/opt/lr"].role == "lr"
    tl = run["train/loss"]
    assert tl.values[:4].tolist() == [r["loss"] for r in rows] and math.isnan(tl.values[4])
    assert tl.steps.tolist() == [10, 20, 30, 40, 50] and tl.epochs[:4].tolist() == [0, 1, 2, 3]
    assert run["val/acc"].values.tolist() == [r["val_accuracy"] for r in rows]


def test_truncated_trailing_row_and_header_only(tmp_path):
    f = tmp_path / "history.csv"
    f.write_text("epoch,loss,val_loss\n0,1.0,1.1\n1,0.8,0.9\n2,0.7")
    run = td.load(f)
    assert run["loss"].values.tolist() == [1.0, 0.8] and "history.csv: skipped 1 malformed row (first at line 4)" in run.notes
    f.write_text("epoch,loss,val_loss\n")
    with pytest.raises(td.InputError, match=r"history\.csv: no valid data rows"):
        td.load(f)
