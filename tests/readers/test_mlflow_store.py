"""MLflow as people run it today: runs logged by the real mlflow client into the SQLite store
MLflow 3 writes by default (mlflow.db), and a real `mlflow server` (started once for this module
on a free loopback port, backed by that same mlflow.db) read back through its REST API.

The world: experiment "digits" logged straight into mlflow.db (an overfitting softmax model on
scikit-learn's digits, a baseline, a run with NaN/inf and step-less points, and a training process
killed with SIGKILL mid-run, so MLflow still says RUNNING); experiment "sweep" logged through the
server (two runs differing in params, one ended FAILED). Every point must come back exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import traindoctor as td
from traindoctor.cli import main
from traindoctor.readers.mlflow_store import read_new_points

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow  # starts a real `mlflow server` (tens of seconds on a busy machine)
pytest.importorskip("mlflow.server", reason="the server test needs the full mlflow package, not mlflow-skinny")

T0 = 1_700_000_000_000  # ms; explicit timestamps so the expected wall times are known exactly


# -- the world ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(db: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
         "--default-artifact-root", str(tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    _stop(proc)
    tail = (tmp / "server.log").read_text(errors="replace")[-600:]
    pytest.skip(f"`mlflow server` did not start on 127.0.0.1:{port} within 180 s: {tail}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _softmax_ce(x, y, w):
    z = x @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p, float(-np.log(p[np.arange(len(y)), y]).mean())


def _train_digits(lr: float, epochs: int, n_train: int, label_noise: float, seed: int = 0):
    """Full-batch softmax regression on random ReLU features of digits; per-epoch losses.

    60 training images with 30% of their labels shuffled and 400 features: the model memorises
    the noise, so the validation loss turns up after its best epoch (overfitting)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    proj = rng.standard_normal((64, 400)) / 8
    feat = lambda a: np.maximum((a / 16.0) @ proj, 0)  # noqa: E731
    xt, yt = feat(x[idx[:n_train]]), y[idx[:n_train]].copy()
    xv, yv = feat(x[idx[1000:1400]]), y[idx[1000:1400]]
    flip = rng.random(len(yt)) < label_noise
    yt[flip] = rng.integers(0, 10, flip.sum())
    w = np.zeros((400, 10))
    train, val = [], []
    for _ in range(epochs):
        p, loss = _softmax_ce(xt, yt, w)
        p[np.arange(len(yt)), yt] -= 1
        w -= lr * xt.T @ p / len(yt)
        train.append(loss)
        val.append(_softmax_ce(xv, yv, w)[1])
    return train, val


def _log_training(client, exp_id, name, lr, epochs, n_train, noise, status="FINISHED"):
    from mlflow.entities import Metric

    train, val = _train_digits(lr, epochs, n_train, noise)
    run = client.create_run(exp_id, run_name=name)
    rid = run.info.run_id
    client.log_param(rid, "lr", lr)
    client.log_param(rid, "n_train", n_train)
    client.log_param(rid, "optimizer", "sgd")
    pts = {"train_loss": [], "val_loss": []}
    metrics = []
    for ep in range(epochs):
        for key, v in (("train_loss", train[ep]), ("val_loss", val[ep])):
            ts = T0 + 1000 * ep + (key == "val_loss")
            metrics.append(Metric(key, v, ts, ep))
            pts[key].append((ep, v, ts))
    for i in range(0, len(metrics), 500):  # the client's batch limit is 1000 metrics
        client.log_batch(rid, metrics=metrics[i:i + 500])
    client.set_terminated(rid, status=status)
    return rid, pts


_CRASHING = textwrap.dedent("""
    import sys, time, mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("digits")
    with mlflow.start_run(run_name="crashed") as run:
        for step in range(25):
            mlflow.log_metric("train_loss", 2.0 / (step + 1), step=step, timestamp={t0} + 1000 * step)
        print(run.info.run_id, flush=True)
        time.sleep(600)  # killed with SIGKILL here: no end_run, MLflow keeps saying RUNNING
""").format(t0=T0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow_world")
    db = tmp / "mlflow.db"
    server, url = _start_server(db, tmp)  # creates and migrates mlflow.db
    crash = None
    try:
        from mlflow.tracking import MlflowClient

        local = MlflowClient(tracking_uri=f"sqlite:///{db}")  # what mlflow.start_run() does by default
        exp = local.create_experiment("digits")
        # a training process logging to mlflow.db itself, killed mid-run while we log the others
        crash = subprocess.Popen([sys.executable, "-c", _CRASHING, f"sqlite:///{db}"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, start_new_session=True, cwd=tmp)
        runs, pts = {}, {}
        runs["overfit"], pts["overfit"] = _log_training(local, exp, "overfit", 1.0, 150, 60, 0.3)
        runs["baseline"], pts["baseline"] = _log_training(local, exp, "baseline", 0.1, 30, 600, 0.0)
        # NaN, the infinities, the extremes of float64, and points logged without step= (step 0)
        odd = local.create_run(exp, run_name="odd-values").info.run_id
        values = [1.5, float("nan"), float("inf"), float("-inf"), 5e-324, -1.7976931348623157e308 / 2, 0.1]
        for i, v in enumerate(values):
            local.log_metric(odd, "loss", v, timestamp=T0 + i, step=i)
        for i, v in enumerate([0.25, 0.5, 0.75]):
            local.log_metric(odd, "val_acc", v, timestamp=T0 + 10 - i)  # no step: MLflow writes 0
        local.set_terminated(odd)
        runs["odd-values"] = odd
        pts["odd-values"] = {"loss": [(i, v, T0 + i) for i, v in enumerate(values)],
                             "val_acc": [(2 - i, v, T0 + 10 - i) for i, v in enumerate([0.25, 0.5, 0.75])]}

        remote = MlflowClient(tracking_uri=url)
        sweep = remote.create_experiment("sweep")
        runs["lr-0.5"], pts["lr-0.5"] = _log_training(remote, sweep, "lr-0.5", 0.5, 20, 300, 0.0)
        runs["lr-5"], pts["lr-5"] = _log_training(remote, sweep, "lr-5", 5.0, 12, 300, 0.0, status="FAILED")

        line = crash.stdout.readline().strip()  # the child logged its 25 points and sleeps
        assert len(line) == 32, f"the crashing run did not start: {line!r}"
        crash.kill()  # SIGKILL, as the OOM killer or a preempted node does
        crash.wait()
        runs["crashed"] = line
        pts["crashed"] = {"train_loss": [(s, 2.0 / (s + 1), T0 + 1000 * s) for s in range(25)]}
        yield {"db": db, "url": url, "tmp": tmp, "runs": runs, "pts": pts,
               "digits": exp, "sweep": sweep, "client": local}
    finally:
        if crash is not None and crash.poll() is None:
            crash.kill()
            crash.wait()
        _stop(server)


def _by_id(histories):
    """The world's runs (the follow tests add experiments of their own)."""
    return {h.meta["run_id"]: h for h in histories if h.meta["experiment"] in ("digits", "sweep")}


def _assert_points(series, pts):
    """Every logged point, read back exactly: steps, values (NaN, inf too), wall times."""
    exp = sorted(pts, key=lambda p: (p[0], p[2]))
    assert series.steps.tolist() == [p[0] for p in exp]
    np.testing.assert_array_equal(series.values, np.array([p[1] for p in exp]))
    assert series.wall_times.tolist() == [p[2] / 1000 for p in exp]


# -- reading ------------------------------------------------------------------------------------
def test_sqlite_store_every_point_exactly(world):
    runs = _by_id(td.load_runs(world["db"]))
    assert set(runs) == set(world["runs"].values())
    for name, rid in world["runs"].items():
        h = runs[rid]
        assert h.format == "mlflow" and h.meta["run_name"] == name
        assert set(h.series) == set(world["pts"][name]), name
        for key, pts in world["pts"][name].items():
            _assert_points(h[key], pts)
    revision = sqlite3.connect(world["db"]).execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert all(h.meta["schema_revision"] == revision for h in runs.values())
    h = runs[world["runs"]["overfit"]]
    assert h.run == "digits/overfit" and h.status == "FINISHED" and h.notes == ()
    assert h.hparams == {"lr": 1.0, "n_train": 60, "optimizer": "sgd"}
    assert runs[world["runs"]["lr-5"]].status == "FAILED"
    odd = runs[world["runs"]["odd-values"]]
    assert any("val_acc: all 3 points were logged at step 0" in n for n in odd.notes)


def test_server_every_point_exactly(world):
    got = _by_id(td.load_runs(world["url"], experiment="digits") + td.load_runs(world["url"], experiment="sweep"))
    assert set(got) == set(world["runs"].values())
    for name, rid in world["runs"].items():
        h = got[rid]
        assert set(h.series) == set(world["pts"][name]), name
        for key, pts in world["pts"][name].items():
            _assert_points(h[key], pts)
        assert h.meta["store"] == "server" and h.path.endswith(f"/runs/{rid}")
    assert got[world["runs"]["lr-5"]].hparams == {"lr": 5.0, "n_train": 300, "optimizer": "sgd"}
    # a link copied from the MLflow UI names the experiment (and the run)
    link = f"{world['url']}/#/experiments/{world['sweep']}/runs/{world['runs']['lr-5']}"
    (one,) = td.load_runs(link)
    assert one.meta["run_id"] == world["runs"]["lr-5"] and one.status == "FAILED"


def test_killed_run_is_reported_as_still_running(world, capsys):
    rid = world["runs"]["crashed"]
    for h in (td.load(world["db"], run=rid), td.load(world["url"], run=rid)):
        assert h.status == "RUNNING" and h.run == "digits/crashed"
        assert any("RUNNING" in n and "died" in n for n in h.notes)
        assert h.source()["status"] == "RUNNING"
    assert main(["diagnose", str(world["db"]), "--run", "crashed"]) in (0, 1)
    out = capsys.readouterr().out
    assert "digits/crashed  [mlflow]  run status RUNNING" in out
    assert "process died without ending the run" in out
    assert main(["diagnose", str(world["db"]), "--run", "crashed", "--md", "-"]) in (0, 1)
    assert "Run status: **RUNNING**" in capsys.readouterr().out


def test_overfitting_best_step_through_both_paths(world):
    val = [v for _, v, _ in world["pts"]["overfit"]["val_loss"]]
    best = int(np.argmin(val))
    assert 10 < best < 100 and val[-1] > val[best] * 1.1  # the model really overfits
    for target, kw in ((world["db"], {}), (world["url"], {"experiment": "digits"})):
        report = td.diagnose(td.load(target, run="overfit", **kw))
        f = next(f for f in report.findings if f.code == "overfitting")
        assert f.metric == "val_loss"
        assert f.evidence["best_step"] == best and f.evidence["best_value"] == pytest.approx(val[best], rel=1e-3)
    healthy = td.diagnose(td.load(world["db"], run="baseline"))
    assert "overfitting" not in healthy.codes()


def test_cli_lists_runs_and_diagnoses_each_or_the_one_named(world, capsys, monkeypatch):
    rc = main(["diagnose", str(world["db"])])
    out = capsys.readouterr().out
    assert rc in (0, 1)
    assert "runs in an MLflow SQLite store, schema revision" in out
    for line in ("digits/crashed", "RUNNING", "sweep/lr-5", "FAILED", "digits/overfit", "150 points to step 149"):
        assert line in out
    assert out.count("traindoctor diagnose: ") == len(td.load_runs(world["db"]))
    # one run, by name, by id prefix; on the server, within an experiment
    rid = world["runs"]["lr-5"]
    for args in ([str(world["db"]), "--run", "lr-5"], [str(world["db"]), "--run", rid[:10]],
                 [world["url"], "--experiment", "sweep", "--run", "lr-5"]):
        main(["diagnose", *args, "--json"])
        data = json.loads(capsys.readouterr().out)
        assert data["source"]["meta"]["run_id"] == rid and data["source"]["status"] == "FAILED"
    # no path: MLflow's own MLFLOW_TRACKING_URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["url"])
    main(["diagnose", "--experiment", "sweep", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert {r["source"]["run"] for r in data["runs"]} == {"sweep/lr-0.5", "sweep/lr-5"}
    assert main(["diagnose", world["url"], "--experiment", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no experiment named 'nope'" in err and "'sweep'" in err and len(err.strip().splitlines()) == 1


def test_compare_across_the_runs_of_an_experiment(world, capsys):
    from traindoctor.compare import compare  # td.compare is shadowed by its module once imported

    c = compare([f"{world['url']}/#/experiments/{world['sweep']}"])
    assert len(c.runs) == 2
    assert c.hparams_differ == {"lr": (0.5, 5.0)}  # run ids and names are not hyperparameters
    assert c.hparams_same == {"n_train": 300, "optimizer": "sgd"}
    trained = [h for h in td.load_runs(world["db"], experiment="digits") if h.meta["run_name"] in ("overfit", "baseline")]
    c = compare(trained)
    assert c.hparams_differ == {"lr": (1.0, 0.1), "n_train": (60, 600)}
    for target in (world["url"], str(world["db"])):
        assert main(["compare", target, "--experiment", "sweep"]) in (0, 1)
        out = capsys.readouterr().out
        assert "traindoctor compare: 2 runs" in out and "hyperparameters that differ" in out
        assert "sweep/lr-5" in out and "run_id" not in out


def test_folder_holding_mlflow_db_and_its_artifacts(world):
    runs = td.load_runs(world["tmp"])  # mlflow.db beside server.log and the artifacts folder
    assert set(_by_id(runs)) == set(world["runs"].values())
    assert all(h.run.startswith(("digits/", "sweep/", "follow-")) for h in runs)
    assert td.load_runs(world["tmp"] / "mlflow.db", experiment="sweep", run="lr-0.5")[0].hparams["lr"] == 0.5


def test_reading_never_writes(world):
    before = hashlib.sha256(world["db"].read_bytes()).hexdigest()
    names = sorted(p.name for p in world["db"].parent.iterdir())
    td.load_runs(world["db"])
    assert hashlib.sha256(world["db"].read_bytes()).hexdigest() == before
    assert sorted(p.name for p in world["db"].parent.iterdir()) == names  # no journal left behind


def test_reading_while_mlflow_logs_never_breaks_the_writer(world):
    """A training process keeps logging (real client, its own thread) while we read the store over
    and over: every one of its writes succeeds, and the last read has every point."""
    import threading

    client = world["client"]
    rid = client.create_run(client.create_experiment("follow-busy"), run_name="busy").info.run_id
    errors = []

    def train():
        try:
            for s in range(80):
                client.log_metric(rid, "train_loss", 1.0 / (s + 1), timestamp=T0 + s, step=s)
        except Exception as exc:  # the assertion below reports it
            errors.append(exc)

    t = threading.Thread(target=train)
    t.start()
    reads = 0
    while t.is_alive():
        td.load_runs(world["db"], run=rid)
        reads += 1
    t.join()
    assert errors == [] and reads > 1
    assert td.load(world["db"], run=rid)["train_loss"].steps.tolist() == list(range(80))
    client.set_terminated(rid)


def test_read_new_points_follows_a_running_run(world):
    client = world["client"]
    rid = client.create_run(client.create_experiment("follow-live"), run_name="live").info.run_id
    for s in range(10):
        client.log_metric(rid, "train_loss", 1.0 / (s + 1), timestamp=T0 + s, step=s)
    for target in (world["db"], world["url"]):
        first = read_new_points(target, rid)
        assert first.status == "RUNNING" and first.series["train_loss"].steps.tolist() == list(range(10))
        again = read_new_points(target, rid, first.cursor)
        assert again.series == {}  # nothing new
    c_db, c_url = read_new_points(world["db"], rid).cursor, read_new_points(world["url"], rid).cursor
    # two more at the same millisecond as the last point read, three later, a new metric
    new = [(10, 0.09, T0 + 9), (11, 0.08, T0 + 9), (12, 0.07, T0 + 20), (13, 0.06, T0 + 21), (14, 0.05, T0 + 22)]
    for s, v, ts in new:
        client.log_metric(rid, "train_loss", v, timestamp=ts, step=s)
    client.log_metric(rid, "val_loss", 0.5, timestamp=T0 + 22, step=14)
    client.set_terminated(rid)
    for target, cur in ((world["db"], c_db), (world["url"], c_url)):
        got = read_new_points(target, rid, cur)
        _assert_points(got.series["train_loss"], new)
        _assert_points(got.series["val_loss"], [(14, 0.5, T0 + 22)])
        assert got.status == "FINISHED"
        assert read_new_points(target, rid, got.cursor).series == {}


def test_truncated_or_foreign_database_is_one_line_exit_2(world, tmp_path, capsys):
    cut = tmp_path / "mlflow.db"
    data = world["db"].read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    assert main(["diagnose", str(cut)]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert main(["diagnose", f"sqlite:///{other}"]) == 2
    assert "not an MLflow tracking store" in capsys.readouterr().err
    assert main(["diagnose", f"sqlite:///{tmp_path}/missing.db"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_writer_killed_mid_write_leaves_a_hot_journal(world, tmp_path, capsys):
    """SQLite leaves mlflow.db-journal when a writer dies inside a transaction; a read-only
    reader may not roll it back (that is a write), so it says how to recover, in one line."""
    db = tmp_path / "mlflow.db"
    db.write_bytes(world["db"].read_bytes())
    writer = textwrap.dedent(f"""
        import os, signal, sqlite3
        c = sqlite3.connect({str(db)!r}, isolation_level=None)
        c.execute("PRAGMA cache_size=1")  # spill pages to the file, so the journal is hot
        c.execute("BEGIN IMMEDIATE")
        for i in range(5000):
            c.execute("INSERT INTO metrics VALUES ('k', ?, ?, {world['runs']['baseline']!r}, ?, 0)", (i, i, i))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", writer], check=False)
    assert Path(f"{db}-journal").exists()
    for target in (db, tmp_path):
        assert main(["diagnose", str(target)]) == 2
        err = capsys.readouterr().err
        assert "mlflow.db-journal is left from a writer that died mid-write" in err
        assert len(err.strip().splitlines()) == 1


def test_nan_and_infinity_survive_both_paths(world):
    rid = world["runs"]["odd-values"]
    for h in (td.load(world["db"], run=rid), td.load(world["url"], run=rid)):
        v = h["loss"].values
        assert math.isnan(v[1]) and v[2] == math.inf and v[3] == -math.inf and v[4] == 5e-324
        assert h["val_acc"].steps.tolist() == [0, 1, 2] and h["val_acc"].values.tolist() == [0.75, 0.5, 0.25]
