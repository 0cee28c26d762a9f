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


# -- recognised by content, not by name ---------------------------------------------------------
def test_keras_training_log_and_a_csv_without_extension(tmp_path):
    """Keras' docs name the CSVLogger file `training.log`; a table is a table whatever its name."""
    rows = _train(epochs=6)
    _keras_csv(tmp_path / "training.log", rows)
    run = td.load(tmp_path)
    assert run.format == "tabular" and run["val_loss"].values.tolist() == [r["val_loss"] for r in rows]
    assert run["val_loss"].role == "val_loss" and run["val_loss"].unit == "epoch"
    assert td.load(tmp_path / "training.log")["loss"].values.tolist() == [r["loss"] for r in rows]
    bare = tmp_path / "other" / "history"
    bare.parent.mkdir()
    _keras_csv(bare, rows)
    assert td.load(bare.parent)["accuracy"].values.tolist() == [r["accuracy"] for r in rows]


def test_json_lines_in_a_txt_file(tmp_path):
    """DETR's main.py: `(output_dir / "log.txt").open("a").write(json.dumps(log_stats) + "\\n")`
    with log_stats = {train_<k>, test_<k>, epoch, n_parameters}; lists (coco eval) are skipped."""
    rows = _train(epochs=5)
    with open(tmp_path / "log.txt", "w") as fh:
        for r in rows:
            fh.write(json.dumps({"train_lr": r["learning_rate"], "train_loss": r["loss"], "test_loss": r["val_loss"],
                                 "test_coco_eval_bbox": [r["val_accuracy"], 0.1, 0.2], "epoch": r["epoch"],
                                 "n_parameters": 41302368}) + "\n")
    run = td.load(tmp_path)
    assert run.format == "tabular"
    assert run["test_loss"].role == "test_loss" and run["train_loss"].values.tolist() == [r["loss"] for r in rows]
    assert run["train_loss"].epochs.tolist() == list(range(5)) and "test_coco_eval_bbox" not in run


def test_text_that_only_mentions_numbers_is_not_a_table(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("epoch, loss and accuracy were logged\nwe ran it twice, 3 times in all\n")
    assert tabular.discover(tmp_path) == []
    assert tabular.sniff_table(f) is None


def test_appended_keras_fits_continue_instead_of_overwriting(tmp_path):
    """CSVLogger(append=True) + a second model.fit: the header is not repeated and the epochs
    count from 0 again while training continues (keras/callbacks/csv_logger.py on_train_begin)."""
    rows = _train(epochs=7)
    f = tmp_path / "training.log"
    _keras_csv(f, rows[:2])
    second = [{**r, "epoch": r["epoch"] - 2} for r in rows[2:]]
    keys = sorted(k for k in rows[0] if k != "epoch")
    with open(f, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch"] + keys, dialect=csv.excel)
        for r in second:
            w.writerow(r)
    run = td.load(f)
    loss = run["loss"]
    assert loss.values.tolist() == [r["loss"] for r in rows]  # all 7 points, in order
    assert loss.steps.tolist() == list(range(7)) and loss.epochs.tolist() == list(range(7))
    assert any("starts over at line(s) 4" in n for n in run.notes)


def test_a_resume_from_a_later_epoch_is_left_to_the_later_rows(tmp_path):
    f = tmp_path / "history.csv"
    f.write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n3,0.7\n2,0.75\n3,0.65\n4,0.6\n")
    loss = td.load(f)["loss"].normalized()
    assert loss.steps.tolist() == [0, 1, 2, 3, 4] and loss.values.tolist() == [1.0, 0.9, 0.75, 0.65, 0.6]


# -- ultralytics results.csv: cumulative time --------------------------------------------------
def test_ultralytics_results_csv_time_is_the_wall_clock_not_seconds_per_epoch(tmp_path):
    """ultralytics/engine/trainer.py save_metrics: header `"%s," * n % ("epoch", "time", *keys)`,
    rows `"%.6g," * n % (self.epoch + 1, t, *vals)` with t = time.time() - self.train_time_start;
    keys from label_loss_items ("train/box_loss"...), the validator ("metrics/mAP50(B)"...) and
    the lr of each parameter group ("lr/pg0")."""
    rows = _train(epochs=12)
    keys = ["train/box_loss", "train/cls_loss", "metrics/precision(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)",
            "val/box_loss", "val/cls_loss", "lr/pg0"]
    n = len(keys) + 2
    lines = [("%s," * n % ("epoch", "time", *keys)).rstrip(",")]
    t = 0.0
    for r in rows:
        t += 30.0 + 3 * math.sin(r["epoch"])  # ~30 s an epoch: healthy, no slowdown
        vals = [r["loss"] * 0.5, r["loss"], r["val_accuracy"], r["val_accuracy"] * 0.9, r["val_accuracy"] * 0.6,
                r["val_loss"] * 0.5, r["val_loss"], r["learning_rate"]]
        lines.append(("%.6g," * n % (r["epoch"] + 1, t, *vals)).rstrip(","))
    f = tmp_path / "runs" / "detect" / "train" / "results.csv"
    f.parent.mkdir(parents=True)
    f.write_text("\n".join(lines) + "\n")
    run = td.load(tmp_path)
    assert run["time"].role == "other" and not run.by_role("time")
    box = run["train/box_loss"]
    times = [float(ln.split(",")[1]) for ln in lines[1:]]
    assert box.wall_times.tolist() == times and box.steps.tolist() == list(range(1, 13))
    assert {run[k].role for k in keys if k.startswith("metrics/")} == {"val_accuracy"}
    assert run["val/cls_loss"].role == "val_loss" and run["lr/pg0"].role == "lr"
    assert any("seconds since the start" in n for n in run.notes)
    thr = [f for f in td.diagnose(run).findings if f.code == "throughput"]
    assert thr and thr[0].severity.name.lower() == "info"  # read as intervals: no slowdown


def test_a_jittery_step_time_stays_a_step_time(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("step,loss,time\n" + "".join(f"{i},{1 / (i + 1):.4f},{0.5 + 0.01 * (i % 3)}\n" for i in range(20)))
    assert td.load(f)["time"].role == "time"


# -- the fast path (pandas' parser) and the careful path agree ---------------------------------
@pytest.mark.parametrize("text", [
    "epoch,step,train_loss,val_loss,lr\n" + "".join(f"{i // 10},{i},{1 / (i + 1)!r},{'' if i % 10 else 0.5},1e-3\n"
                                                    for i in range(100)),
    "epoch,loss,val_loss\r\n0,1.0,1.1\r\n1,0.8,0.9\r\n2,0.7",  # CRLF, cut short
    "step,loss\n0,2.5\n10,nan\n20,inf\n30,-inf\n",  # NaN written as text: careful path
    "step,loss,val_loss\n0,2.5,\n10,1.9,2.0\n@@ oops\n20,1.5,\n",  # garbage row
    "step,loss\n0,1\n,2\n5,3\n",  # a row without its step
    "Step,Value,Wall time\n0,1.5,1700000000.5\n1,1.25,1700000001.5\n",
    "epoch,loss\n0,1.0\n1,0.9\n0,0.85\n1,0.8\n",  # two fits appended
    "iteration\tloss\n1\t0.9\n2\t0.8\n",
    "\n\nstep,perte_é,val\n0,1.5,\n1,1.25,2\n2,1.0",  # blank lines first, not ASCII, cut short
    "epoch,loss,val_loss\r\r\n0,1.0,1.1\r\r\n1,0.8,0.9\r\r\n",  # csv.writer into a Windows text-mode file
    "step,loss,val\n0,1.0,\n,,\n2,0.5,0.7\n",  # a row of empty cells
    "step,loss,is_best\n0,1.0,True\n1,0.5,False\n",  # pandas would read True as 1.0
    "step,loss\n0,1_000\n1,null\n2,N/A\n3,-Infinity\n",  # what float() and pandas each accept
])
def test_fast_and_careful_csv_paths_agree(tmp_path, text):
    pytest.importorskip("pandas")
    from traindoctor.readers._tabular_util import read_csv_table

    f = tmp_path / "m.tsv" if "\t" in text else tmp_path / "m.csv"
    f.write_bytes(text.encode("utf-8"))  # as written: no newline translation
    fast, info_f = read_csv_table(f, text, expected="x", fast=True)
    slow, info_s = read_csv_table(f, text, expected="x", fast=False)
    assert info_f == info_s
    assert (fast.bad_rows, fast.first_bad_line, fast.good_rows, fast.restarts) == \
        (slow.bad_rows, slow.first_bad_line, slow.good_rows, slow.restarts)
    a, b = fast.series(), slow.series()
    assert list(a) == list(b) and all(len(s) for s in a.values())
    for name in a:
        for attr in ("steps", "values", "epochs", "wall_times"):
            x, y = getattr(a[name], attr), getattr(b[name], attr)
            assert (x is None) == (y is None), (name, attr)
            if x is not None:
                np.testing.assert_array_equal(x, y)


def test_fast_path_takes_a_clean_file_whole(tmp_path):
    """Not a timing test: the fast path must actually be taken for a clean file, whether pandas
    reads the file itself (ASCII) or the decoded text (not byte for byte the file)."""
    pytest.importorskip("pandas")
    from traindoctor.readers._tabular_util import _fast_rows

    for header in ("step,loss,val_loss", "step,perte,val_perte_é"):
        body = "".join(f"{i},{i * 0.5},\n" if i % 3 else f"{i},{i * 0.5},1.0\n" for i in range(3000))
        f = tmp_path / "m.csv"
        f.write_text(header + "\n" + body, encoding="utf-8")
        text = f.read_text(encoding="utf-8")
        arr, cut = _fast_rows(f, text, len(header) + 1, 1, 3, ",")
        assert arr.shape == (3000, 3) and cut == 0 and np.isnan(arr[1, 2]) and arr[3, 2] == 1.0


def test_json_lines_read_alike_with_and_without_orjson(monkeypatch):
    """orjson (traindoctor[fast]) refuses what Python's json accepts (NaN, huge ints): the
    standard parser then decides, so the rows are the same either way."""
    from traindoctor.readers import _tabular_util as tu

    text = "\n".join(['{"step": 1, "loss": NaN}', '{"step": 2, "loss": 1e400}', '{"step": 3, "loss": 0.5}',
                      '{"step": ' + "9" * 30 + ', "loss": 2}', "[1]", '{"step": 5, "loss": "0.25"}', '{"step": 6'])
    got = []
    for orjson_loads in (tu._orjson_loads, None):
        monkeypatch.setattr(tu, "_orjson_loads", orjson_loads)
        table = tu.Table()
        lines, rows = tu.json_rows(text, table)
        got.append((lines, json.dumps(rows), table.bad_rows, table.first_bad_line))
    assert got[0] == got[1] and got[0][0] == [1, 2, 3, 4, 6] and got[0][2:] == (2, 5)


def test_one_nested_row_is_flattened_and_ranks_run_across_chunks(tmp_path, monkeypatch):
    """A single row nesting an object is found (more braces than rows); rows without a step or
    epoch are numbered by their rank among logged rows, across the reader's chunks of lines."""
    from traindoctor.readers import _tabular_util as tu

    f = tmp_path / "m.jsonl"
    f.write_text('{"step": 1, "loss": 1}\n{"step": 2, "opt": {"lr": 0.1}, "loss": 0.5}\n')
    run = td.load(f)
    assert run["opt/lr"].values.tolist() == [0.1] and run["loss"].steps.tolist() == [1, 2]
    g = tmp_path / "n.jsonl"
    g.write_text("".join(json.dumps({"loss": 1 / (i + 1)} if i % 4 else {"note": "x"}) + "\n" for i in range(30)))
    chunks = tu.json_chunks
    monkeypatch.setattr(tu, "json_chunks", lambda text, table: chunks(text, table, chunk=7))
    monkeypatch.setattr(tabular, "json_chunks", tu.json_chunks)
    loss = td.load(g)["loss"]
    assert loss.steps.tolist() == list(range(22)) and loss.values.tolist() == [1 / (i + 1) for i in range(30) if i % 4]


def _corpus_csvs():
    import os
    from pathlib import Path

    root = Path(os.environ.get("TRAINDOCTOR_CORPUS", "/work/shared/corpus"))
    if not root.is_dir():
        return []
    return sorted(f for f in root.rglob("*") if f.is_file() and tabular.sniff_table(f) == "csv")


@pytest.mark.skipif(not _corpus_csvs(), reason="needs ../shared/corpus")
def test_fast_and_careful_paths_agree_on_every_corpus_csv():
    """Real CSVs as their authors committed them (CRLF, CR CR LF, padded ultralytics columns,
    Lightning's sparse rows): the pandas path gives exactly what the row-by-row path gives."""
    pytest.importorskip("pandas")
    from traindoctor.readers._tabular_util import read_csv_table, read_text

    for f in _corpus_csvs():
        text, _ = read_text(f)
        fast, _ = read_csv_table(f, text, expected="x", fast=True)
        slow, _ = read_csv_table(f, text, expected="x", fast=False)
        a, b = fast.series(), slow.series()
        assert {n: len(s) for n, s in a.items()} == {n: len(s) for n, s in b.items()}, f
        for name in a:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=str(f))
            np.testing.assert_array_equal(a[name].steps, b[name].steps, err_msg=str(f))
