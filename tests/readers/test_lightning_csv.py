"""Lightning CSVLogger metrics.csv, written by a real lightning.Trainer on digits."""

import csv
import math
import shutil

import numpy as np
import pytest

import traindoctor as td
from traindoctor.readers import lightning_csv
from writers import write_lightning_run


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    return write_lightning_run(tmp_path_factory.mktemp("pl"), epochs=12, seed=0)


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    return write_lightning_run(tmp_path_factory.mktemp("pl_over"), overfit=True, seed=0)


def _columns(path):
    """The file parsed independently with the csv module: {col: [(step, epoch, value), ...]}."""
    out = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if k not in ("step", "epoch") and v != "":
                    out.setdefault(k, []).append((float(row["step"]), float(row["epoch"]), float(v)))
    return out


def test_every_point_is_read_back_with_its_step_and_epoch(healthy):
    run = td.load(healthy)
    assert run.format == "lightning_csv" and run.path == str(healthy)
    expected = _columns(healthy / "metrics.csv")
    assert set(run.series) == set(expected) == {"train_loss_step", "train_loss_epoch", "val_loss", "val_acc"}
    for name, pts in expected.items():
        s = run[name]
        assert s.steps.tolist() == [p[0] for p in pts]
        assert s.epochs.tolist() == [p[1] for p in pts]
        assert s.values.tolist() == [p[2] for p in pts]
    # 1397 samples / batch 128 -> 11 steps an epoch, logged every step; one val point an epoch
    assert len(run["train_loss_step"]) == 11 * 12
    assert run["val_loss"].epochs.tolist() == list(range(12)) and run["val_loss"].is_per_epoch


def test_roles_hparams_and_checkpoints(healthy):
    run = td.load(healthy.parent.parent)  # the save_dir: found recursively
    assert run.run == "lightning_logs/version_0"
    roles = {n: s.role for n, s in run.series.items()}
    assert roles == {"train_loss_step": "train_loss", "train_loss_epoch": "train_loss",
                     "val_loss": "val_loss", "val_acc": "val_accuracy"}
    assert run.primary("train_loss").name == "train_loss_epoch"
    assert run.hparams["lr"] == 0.01  # hparams.yaml beside metrics.csv
    tags = {(c.tag, c.epoch) for c in run.checkpoints}
    assert ("last", None) in tags and any(ep is not None for _, ep in tags)


def test_writer_contract_healthy_flattens_overfit_rises(healthy, overfit):
    val = td.load(healthy)["val_loss"].values
    assert val[-1] < 0.25 * val[0] and val[-1] <= 1.1 * val.min()
    run = td.load(overfit)
    val, train = run["val_loss"].values, run["train_loss_epoch"].values
    best = int(np.argmin(val))
    assert 5 <= best <= 25 and val[-1] > 1.5 * val[best]
    assert train[-1] < 0.01
    best_ckpt = [c for c in run.checkpoints if c.epoch is not None]
    assert [c.epoch for c in best_ckpt] == [best]  # ModelCheckpoint kept the best val_loss epoch


def test_truncated_last_row_and_garbage_are_skipped_with_a_note(healthy, tmp_path):
    d = tmp_path / "version_0"
    shutil.copytree(healthy, d)
    lines = (d / "metrics.csv").read_text().splitlines(keepends=True)
    lines.insert(5, "!!! not a row\n")
    lines[-1] = lines[-1][: len(lines[-1]) // 3]  # a crash mid-write
    (d / "metrics.csv").write_text("".join(lines))
    run = td.load(d)
    assert "metrics.csv: skipped 2 malformed rows (first at line 6)" in run.notes
    full = _columns(healthy / "metrics.csv")
    last = next(csv.DictReader([lines[0], "".join(open(healthy / "metrics.csv").readlines()[-1:])]))
    lost = {k for k, v in last.items() if k not in ("step", "epoch") and v}
    for name, pts in full.items():  # every point but the cut last row's is still there
        assert len(run[name]) == len(pts) - (name in lost)
        assert run[name].values.tolist() == [p[2] for p in pts][: len(run[name])]


def test_nan_cell_is_a_value_not_garbage(healthy, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(healthy, d)
    rows = list(csv.reader((d / "metrics.csv").open()))
    header = rows[0]
    i = header.index("train_loss_step")
    target = next(r for r in rows[1:] if r[i])
    target[i] = "nan"
    with (d / "metrics.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    run = td.load(d)
    assert run.notes == ()
    s = run["train_loss_step"]
    assert math.isnan(s.values[s.steps.tolist().index(float(target[header.index("step")]))])
    assert len(s) == 132


def test_discover_claims_only_lightning_metrics_csv(healthy, tmp_path):
    other = tmp_path / "metrics.csv"
    other.write_text("epoch,loss\n0,1.0\n")  # Keras-style, no step column: tabular's, not ours
    assert lightning_csv.discover(other) == []
    assert lightning_csv.discover(healthy.parent.parent) == [healthy / "metrics.csv"]
