"""MLflow file store written by the real mlflow client (mlflow-skinny) on a small digits training.

MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true ("maintenance mode"), so the
tests set it; runs people already have on disk are read without mlflow installed at all.
"""

import math

import numpy as np
import pytest

import traindoctor as td
from traindoctor.readers import mlflow as mlflow_reader

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())


def _train_and_log(client, exp_id, run_name, lr, epochs=6, status="FINISHED"):
    """Softmax regression on digits with numpy; logs real losses per step and per epoch."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xt, yt, xv, yv = x[:1400], y[:1400], x[1400:], y[1400:]
    w = np.zeros((64, 10))
    run = client.create_run(exp_id, run_name=run_name)
    rid = run.info.run_id
    client.log_param(rid, "lr", lr)
    client.log_param(rid, "optim/name", "sgd")
    logged = {"train/loss": [], "val_loss": [], "val_acc": []}
    step = 0
    for _epoch in range(epochs):
        for b in range(0, 1400, 350):
            xb, yb = xt[b:b + 350], yt[b:b + 350]
            z = xb @ w
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            loss = float(-np.log(p[np.arange(len(yb)), yb]).mean())
            p[np.arange(len(yb)), yb] -= 1
            w -= lr * xb.T @ p / len(yb)
            ts = 1_700_000_000_000 + 1000 * step
            client.log_metric(rid, "train/loss", loss, timestamp=ts, step=step)
            logged["train/loss"].append((step, loss, ts))
            step += 1
        z = xv @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for name, val in (("val_loss", float(-np.log(p[np.arange(len(yv)), yv]).mean())),
                          ("val_acc", float((p.argmax(1) == yv).mean()))):
            ts = 1_700_000_000_000 + 1000 * step
            client.log_metric(rid, name, val, timestamp=ts, step=step)
            logged[name].append((step, val, ts))
    client.set_terminated(rid, status=status)
    return rid, logged


def test_every_point_params_and_run_name(client, tmp_path):
    exp = client.create_experiment("digits")
    rid, logged = _train_and_log(client, exp, "softmax-lr0.5", lr=0.5)
    run = td.load(tmp_path / "mlruns")
    assert run.format == "mlflow" and run.run == f"{exp}/{rid}"
    assert set(run.series) == {"train/loss", "val_loss", "val_acc"}  # "train/loss" is metrics/train/loss
    for name, pts in logged.items():
        s = run[name]
        assert s.steps.tolist() == [p[0] for p in pts]
        assert s.values.tolist() == [p[1] for p in pts]
        assert s.wall_times.tolist() == [p[2] / 1000 for p in pts]  # ms -> s
    assert run["train/loss"].role == "train_loss" and run["val_acc"].role == "val_accuracy"
    assert run.hparams == {"lr": 0.5, "optim/name": "sgd"}  # params only: compare lists what differs
    assert run.meta["run_name"] == "softmax-lr0.5" and run.meta["experiment"] == "digits"
    assert run.meta["run_id"] == rid and run.status == "FINISHED" and run.notes == ()
    assert run.source()["status"] == "FINISHED"
    assert logged["val_loss"][-1][1] < logged["val_loss"][0][1]  # it really trained


def test_each_run_folder_is_a_run_and_failed_status_is_noted(client, tmp_path):
    exp = client.create_experiment("sweep")
    a, _ = _train_and_log(client, exp, "a", lr=0.1, epochs=2)
    b, _ = _train_and_log(client, exp, "b", lr=1.0, epochs=2, status="FAILED")
    runs = {r.meta["run_name"]: r for r in td.load_runs(tmp_path / "mlruns")}
    assert set(runs) == {"a", "b"}
    assert runs["b"].hparams["lr"] == 1.0 and any("FAILED" in n for n in runs["b"].notes)
    assert runs["b"].status == "FAILED" and runs["a"].status == "FINISHED"
    with pytest.raises(td.InputError, match="holds 2 runs"):
        td.load(tmp_path / "mlruns")


def test_nan_inf_kept_and_malformed_lines_noted(client, tmp_path):
    exp = client.create_experiment("bad")
    run = client.create_run(exp, run_name="diverged")
    rid = run.info.run_id
    for i, v in enumerate([1.0, 3.0, float("nan"), float("inf")]):
        client.log_metric(rid, "loss", v, timestamp=1000 + i, step=i)
    client.set_terminated(rid)
    (f,) = (tmp_path / "mlruns").rglob("metrics/loss")
    with f.open("a") as fh:
        fh.write("1005 0.5")  # cut by a crash: no step
        fh.write("\ngarbage\n")
    r = td.load(tmp_path / "mlruns")
    vals = r["loss"].values
    assert vals[:2].tolist() == [1.0, 3.0] and math.isnan(vals[2]) and vals[3] == math.inf
    assert len(vals) == 4  # a two-field line among three-field ones was cut short: not a point
    assert "metrics/loss: skipped 2 malformed rows (first at line 5)" in r.notes


def test_pre_1_0_two_field_metric_files(tmp_path):
    run_dir = tmp_path / "mlruns" / "0" / "abc"
    (run_dir / "metrics").mkdir(parents=True)
    (run_dir / "meta.yaml").write_text("run_id: abc\nstatus: 3\n")
    (run_dir / "metrics" / "val_loss").write_text("1000 0.9\n2000 0.7\n3000 0.8\n")
    s = td.load(tmp_path)["val_loss"]
    assert s.steps.tolist() == [0, 1, 2] and s.values.tolist() == [0.9, 0.7, 0.8]
    assert s.wall_times.tolist() == [1.0, 2.0, 3.0]


def test_discover_finds_run_folders_not_experiments(client, tmp_path):
    exp = client.create_experiment("e")
    rid, _ = _train_and_log(client, exp, "r", lr=0.5, epochs=1)
    units = mlflow_reader.discover(tmp_path)
    assert [u.name for u in units] == [rid]
    # a single metric file given directly reads its run
    (f,) = (tmp_path / "mlruns").rglob("metrics/val_loss")
    assert mlflow_reader.discover(f) == units
