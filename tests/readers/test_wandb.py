"""W&B run folders. The .wandb file is written by the real wandb client in offline mode (no
network) and read back natively; the summary-only case uses the files/ layout online runs leave."""

import json
import math
import re

import numpy as np
import pytest

import traindoctor as td
from traindoctor.readers import wandb as wandb_reader


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """A real offline run: softmax regression on digits, loss per step, val metrics per epoch."""
    wandb = pytest.importorskip("wandb")
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("wb")
    mp = pytest.MonkeyPatch()
    for k, v in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(root),
                 "WANDB_CONFIG_DIR": str(root / "cfg"), "WANDB_CACHE_DIR": str(root / "cache"),
                 "WANDB_DISABLE_GIT": "true", "WANDB_CONSOLE": "off"}.items():
        mp.setenv(k, v)
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xt, yt, xv, yv = x[:1400], y[:1400], x[1400:], y[1400:]
    w = np.zeros((64, 10))
    logged = {"train/loss": [], "val/loss": [], "val/acc": []}
    run = wandb.init(project="td", dir=str(root), name="softmax", config={"lr": 0.5, "model": {"kind": "softmax"}})
    step = 0
    for epoch in range(5):
        for b in range(0, 1400, 350):
            z = xt[b:b + 350] @ w
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            yb = yt[b:b + 350]
            loss = float(-np.log(p[np.arange(len(yb)), yb]).mean())
            p[np.arange(len(yb)), yb] -= 1
            w -= 0.5 * xt[b:b + 350].T @ p / len(yb)
            run.log({"train/loss": loss, "epoch": epoch})
            logged["train/loss"].append((step, loss, epoch))
            step += 1
        z = xv @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        vals = {"loss": float(-np.log(p[np.arange(len(yv)), yv]).mean()), "acc": float((p.argmax(1) == yv).mean())}
        run.log({"val": vals, "epoch": epoch})  # nested dict -> "val/loss", "val/acc"
        for k, v in vals.items():
            logged[f"val/{k}"].append((step, v, epoch))
        step += 1
    run.log({"train/loss": float("nan"), "epoch": 5})
    logged["train/loss"].append((step, float("nan"), 5))
    run.finish()
    mp.undo()
    (run_dir,) = (root / "wandb").glob("offline-run-*")
    _wait_for_flush(run_dir)
    return run_dir, logged


def _wait_for_flush(run_dir, timeout=60.0):
    """wandb's background service may still be writing the .wandb file when finish() returns
    (seen on a loaded machine): wait until it exists and its size holds still."""
    import time

    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        files = list(run_dir.glob("*.wandb"))
        size = files[0].stat().st_size if files else -1
        if size > 0 and size == last:
            return
        last = size
        time.sleep(0.5)
    raise AssertionError(f"wandb did not finish writing {run_dir} within {timeout} s")


def test_every_history_point_read_natively(offline_run):
    run_dir, logged = offline_run
    run = td.load(run_dir.parent)  # the wandb/ folder: latest-run symlink must not double it
    assert run.format == "wandb" and run.run == run_dir.name
    assert set(run.series) == set(logged)
    for name, pts in logged.items():
        s = run[name]
        assert s.steps.tolist() == [p[0] for p in pts]
        np.testing.assert_array_equal(s.values, [p[1] for p in pts])  # NaN included
        assert s.epochs.tolist() == [p[2] for p in pts]
        assert np.isfinite(s.wall_times).all()
    assert math.isnan(run["train/loss"].values[-1])
    assert run["val/loss"].role == "val_loss" and run["val/acc"].role == "val_accuracy"
    assert run.hparams["lr"] == 0.5 and run.hparams["model/kind"] == "softmax"
    assert run.hparams["wandb.run_name"] == "softmax" and run.hparams["wandb.project"] == "td"
    assert run.notes == ()


def test_truncated_wandb_file_keeps_what_precedes_the_damage(offline_run, tmp_path):
    import shutil

    run_dir, logged = offline_run
    d = tmp_path / run_dir.name
    shutil.copytree(run_dir, d)
    (f,) = d.glob("*.wandb")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    run = td.load(d)
    n = len(run["train/loss"])
    assert 0 < n < len(logged["train/loss"])
    assert run["train/loss"].values.tolist() == [p[1] for p in logged["train/loss"]][:n]
    assert any("truncated" in note for note in run.notes)
    assert any("no exit record" in note for note in run.notes)
    # a flipped byte: the checksum stops the read there instead of decoding garbage. The byte is
    # one inside a history record (a "train/loss" key near the middle): a byte of a block's zero
    # padding is not covered by any checksum, and where the padding falls depends on what else
    # wandb's service wrote (system metrics under load), which made the plain middle byte flaky.
    keys = [m.start() for m in re.finditer(rb"train/loss", data)]
    bad = bytearray(data)
    bad[min(keys, key=lambda i: abs(i - len(data) // 2)) + 2] ^= 0xFF
    f.write_bytes(bytes(bad))
    run = td.load(d)
    assert any("checksum mismatch" in note for note in run.notes)
    assert run["train/loss"].values.tolist() == [p[1] for p in logged["train/loss"]][: len(run["train/loss"])]


def test_summary_only_run_goes_to_hparams_not_series(tmp_path):
    run_dir = tmp_path / "wandb" / "run-20240101_000000-abc123"
    (run_dir / "files").mkdir(parents=True)
    (run_dir / "files" / "wandb-summary.json").write_text(json.dumps(
        {"loss": 0.25, "val_loss": 0.4, "_step": 99, "_runtime": 12.5, "_wandb": {"runtime": 12}}))
    (run_dir / "files" / "config.yaml").write_text(
        "wandb_version: 1\n\n_wandb:\n  desc: null\n  value: {}\nlr:\n  desc: null\n  value: 0.001\n")
    part = wandb_reader.read(wandb_reader.discover(tmp_path)[0])
    assert part.series == {}
    assert part.hparams == {"wandb.summary.loss": 0.25, "wandb.summary.val_loss": 0.4, "lr": 0.001}
    assert any("only the final summary was read" in n for n in part.notes)
    with pytest.raises(td.InputError, match="no training metrics found"):
        td.load(tmp_path)


def test_not_a_wandb_file_is_a_clear_error(tmp_path):
    run_dir = tmp_path / "run-x"
    run_dir.mkdir()
    (run_dir / "run-x.wandb").write_bytes(b"PK\x03\x04 not wandb")
    with pytest.raises(td.InputError, match=r"run-x\.wandb: does not start with the W&B header"):
        td.load(run_dir)
