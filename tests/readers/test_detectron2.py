"""detectron2 metrics.json.

detectron2 does not install here (it builds against a CUDA torch), so the file is written the way
detectron2/utils/events.py JSONWriter.write writes it: for each iteration with new scalars,
`json.dumps(scalars_per_iter, sort_keys=True)` with `scalars_per_iter["iteration"] = itr`, one
line each; the training scalars are those SimpleTrainer / EventStorage put (`total_loss`, the loss
terms, `lr`, `time`, `data_time`, `eta_seconds`, `fast_rcnn/cls_accuracy`), the evaluation ones
those EvalHook puts via flatten_results_dict (`bbox/AP`, `bbox/AP50`, `segm/AP`). The numbers come
from a real two-head model (softmax classifier + box regressor) trained on digits with SGD.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

import traindoctor as td
from traindoctor.readers import detectron2


def _train(iters=400, lr=0.3, seed=0):
    """Per-iteration losses and a held-out score of a real model: a linear classifier (loss_cls)
    and a linear regressor of the digit's ink box (loss_box_reg, smooth L1), minibatch SGD."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    img = x.reshape(-1, 8, 8) > 0.2
    box = np.stack([img.any(1).argmax(1), img.any(2).argmax(1)], 1) / 8.0  # left, top edge
    rng = np.random.default_rng(seed)
    xt, yt, bt, xv, yv = x[:1400], y[:1400], box[:1400], x[1400:], y[1400:]
    w, v = np.zeros((64, 10)), np.zeros((64, 2))
    out = []
    for _ in range(iters):
        i = rng.integers(0, len(xt), 32)
        z = xt[i] @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss_cls = float(-np.log(p[np.arange(32), yt[i]]).mean())
        d = xt[i] @ v - bt[i]
        loss_box = float(np.where(abs(d) < 1, 0.5 * d**2, abs(d) - 0.5).mean())
        acc = float((p.argmax(1) == yt[i]).mean())
        p[np.arange(32), yt[i]] -= 1
        w -= lr * xt[i].T @ p / 32
        v -= lr * xt[i].T @ np.clip(d, -1, 1) / 32
        ap = float(100 * ((xv @ w).argmax(1) == yv).mean())
        out.append({"loss_cls": loss_cls, "loss_box_reg": loss_box, "acc": acc, "ap": ap})
    return out


def _write_metrics_json(path, hist, period=20, eval_period=100, lr=0.3):
    """JSONWriter's output: a row every `period` iterations (losses are medians of the last
    `period`, as latest_with_smoothing_hint gives them), evaluation scalars at the iterations
    EvalHook ran, in the same row when the iteration is the same."""
    rows = {}
    for it in range(period - 1, len(hist), period):
        win = hist[it - period + 1: it + 1]
        med = {k: float(np.median([h[k] for h in win])) for k in ("loss_cls", "loss_box_reg", "acc")}
        rows[it] = {"data_time": 0.002, "eta_seconds": 0.05 * (len(hist) - it), "fast_rcnn/cls_accuracy": med["acc"],
                    "iteration": it, "loss_box_reg": med["loss_box_reg"], "loss_cls": med["loss_cls"], "lr": lr,
                    "time": 0.05 + 0.001 * (it % 7), "total_loss": med["loss_cls"] + med["loss_box_reg"]}
    for it in list(range(eval_period - 1, len(hist), eval_period)) + [len(hist)]:
        ap = hist[min(it, len(hist) - 1)]["ap"]
        row = rows.setdefault(it, {"iteration": it})
        row.update({"bbox/AP": ap, "bbox/AP50": min(100.0, ap * 1.3), "segm/AP": ap * 0.9})
    with open(path, "w") as fh:
        for it in sorted(rows):
            fh.write(json.dumps(rows[it], sort_keys=True) + "\n")
    return rows


def test_every_training_and_evaluation_point_with_its_role(tmp_path):
    hist = _train()
    out = tmp_path / "output"
    out.mkdir()
    rows = _write_metrics_json(out / "metrics.json", hist)
    run = td.load(tmp_path)
    assert run.format == "detectron2" and run.notes == ()
    train_its = [it for it, r in sorted(rows.items()) if "total_loss" in r]
    eval_its = [it for it, r in sorted(rows.items()) if "bbox/AP" in r]
    assert eval_its == [99, 199, 299, 399, 400]
    tl = run["total_loss"]
    assert tl.role == "train_loss" and tl.steps.tolist() == train_its
    assert tl.values.tolist() == [rows[i]["total_loss"] for i in train_its]
    assert run["loss_cls"].role == "train_loss" and run["loss_box_reg"].role == "train_loss"
    ap = run["bbox/AP"]
    assert ap.role == "val_accuracy" and ap.steps.tolist() == eval_its
    assert ap.values.tolist() == [rows[i]["bbox/AP"] for i in eval_its]
    assert run["segm/AP"].role == "val_accuracy" and run["bbox/AP50"].role == "val_accuracy"
    assert run["lr"].role == "lr" and run["time"].role == "time"
    # neither the data-loading share nor the countdown is the seconds per step
    assert run["data_time"].role == "other" and run["eta_seconds"].role == "other"
    assert run["fast_rcnn/cls_accuracy"].role == "train_accuracy"
    assert run.primary("val_accuracy").name == "bbox/AP" and run.primary("train_loss").name == "total_loss"


def test_validation_loss_hook_and_resumed_run(tmp_path):
    """A custom hook's `validation_loss`; a resume appends rows for iterations already written."""
    hist = _train(iters=300)
    f = tmp_path / "metrics.json"
    rows = _write_metrics_json(f, hist)
    lines = f.read_text().splitlines()
    resumed = [json.loads(ln) for ln in lines if 199 <= json.loads(ln)["iteration"] < 300]
    for r in resumed:
        r["total_loss"] += 1.0  # the resumed run's numbers differ
    val = [{"iteration": it, "validation_loss": 0.5 + 0.001 * it} for it in (99, 199, 299)]
    f.write_text("\n".join(lines + [json.dumps(r, sort_keys=True) for r in resumed + val]) + "\n")
    run = td.load(f)
    vl = run["validation_loss"]
    assert vl.role == "val_loss" and vl.steps.tolist() == [99, 199, 299]
    tl = run["total_loss"]
    assert tl.steps.tolist() == sorted(i for i, r in rows.items() if "total_loss" in r)
    assert tl.values[-1] == rows[299]["total_loss"] + 1.0  # the later row wins a repeated iteration


def test_damaged_lines_are_skipped_with_a_note_and_nothing_readable_is_one_line(tmp_path):
    hist = _train(iters=200)
    f = tmp_path / "metrics.json"
    _write_metrics_json(f, hist)
    lines = f.read_text().splitlines()
    lines.insert(2, '{"iteration": 50, "total_loss": 0.' + "9" * 100_000 + "}")  # parses: a float
    lines.insert(3, '{"iteration": ' + "1" * 5000 + ', "total_loss": 1.0}')  # int past 4300 digits
    lines.insert(4, '{"iteration": 61, "total_lo\x00\x00')
    f.write_text("\n".join(lines) + '\n{"iteration": 219, "total_loss": 0.4, "lr"')  # cut short
    run = td.load(f)
    assert "metrics.json: skipped 3 malformed rows (first at line 4)" in run.notes
    tl = run["total_loss"]
    assert len(tl) == 11 and tl.values[tl.steps.tolist().index(50)] == 1.0
    bad = tmp_path / "bad" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text('{"iteration": 19, "total_loss": [1, 2]}\n{"iteration": "x"}\n')
    proc = subprocess.run([sys.executable, "-m", "traindoctor", "diagnose", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "iteration" in proc.stderr


@pytest.mark.parametrize("first", ['{"mode": "train", "iteration": 1, "loss": 1}', '{"step": 1, "loss": 2}',
                                   '{"iteration": "1"}', "[1, 2]"])
def test_other_json_lines_are_not_claimed(tmp_path, first):
    f = tmp_path / "metrics.json"
    f.write_text(first + "\n")
    assert detectron2.discover(tmp_path) == []
