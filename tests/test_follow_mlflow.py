"""`traindoctor watch` on a RUNNING MLflow run: the real mlflow client logs a diverging training
into mlflow.db (MLflow 3's default store) while `watch` polls it for new metric points."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from test_follow import WRITER, _Lines, _watch

pytest.importorskip("mlflow")

# The digits training of test_follow, logged with mlflow.log_metric instead of printed.
MLFLOW_WRITER = WRITER.replace(
    'with open(log, "a") as out:\n    print(f"loaded digits: {len(X)} samples", file=out)',
    'import mlflow\nmlflow.set_tracking_uri("sqlite:///" + log)\nmlflow.set_experiment("digits")\n'
    'active = mlflow.start_run(run_name="warmup-too-far")\nopen(log + ".ready", "w").close()',
).replace(
    'with open(log, "a", buffering=1) as out:\n    for epoch',
    'if True:\n    for epoch',
).replace(
    '                print(f"epoch={epoch} step={step} loss={loss:.4f} lr={lr:.4g}", file=out)',
    '                mlflow.log_metrics({"loss": float(loss), "lr": lr}, step=step)',
) + "\nmlflow.end_run()\n"


@pytest.mark.slow
def test_watch_follows_a_running_mlflow_run_until_it_finishes(tmp_path):
    assert "mlflow.log_metrics" in MLFLOW_WRITER and "mlflow.end_run" in MLFLOW_WRITER
    db = tmp_path / "mlflow.db"
    script = tmp_path / "train.py"
    script.write_text(MLFLOW_WRITER)
    go = tmp_path / "go"
    writer = subprocess.Popen([sys.executable, str(script), str(db), "0.05", str(go)], cwd=tmp_path)
    watch = None
    try:
        end = time.monotonic() + 180
        while not (tmp_path / "mlflow.db.ready").exists() and time.monotonic() < end:
            time.sleep(0.05)
        watch = _watch(db, "--interval", "0.1", "--idle", "0")  # only the run's end can end it
        err = _Lines(watch.stderr)
        assert err.wait_for("following run 'digits/warmup-too-far' (RUNNING)"), err.text()
        out = _Lines(watch.stdout, probe=lambda: writer.poll() is None)
        go.touch()
        writer.wait(timeout=180)
        rc = watch.wait(timeout=120)
    finally:
        for p in (watch, writer):
            if p is not None and p.poll() is None:
                p.kill()
    stdout, stderr = out.text(), err.text()
    live = [(line, running) for line, running in out.lines if line[9:].startswith("ERROR")]
    assert live and live[0][1], stdout + stderr  # said while the run was still logging
    assert "divergence" in live[0][0] or "nan_loss" in live[0][0]
    assert "run 'digits/warmup-too-far' ended: FINISHED" in stderr
    assert "divergence" in stdout[stdout.index("traindoctor diagnose"):] and rc == 1


@pytest.mark.slow
def test_a_running_run_on_a_tracking_server_is_polled_for_new_points(tmp_path):
    """The same follower on `http://host:port --experiment NAME`: a real `mlflow server` (its start
    is most of this test's time), the run logged in-process between polls."""
    pytest.importorskip("mlflow.server", reason="needs the full mlflow package")
    import mlflow
    import numpy as np

    from readers.test_mlflow_store import _start_server, _stop
    from test_follow import _diverging
    from traindoctor.follow import StoreFollower

    server, url = _start_server(tmp_path / "server.db", tmp_path)
    try:
        client = mlflow.MlflowClient(url)
        exp = client.create_experiment("digits")
        run = client.create_run(exp, run_name="warmup-too-far")
        rid = run.info.run_id
        s, v = _diverging()
        follower = StoreFollower(url, experiment="digits", cpu=lambda: 0.0)
        events = follower.poll()
        assert "following run 'digits/warmup-too-far' (RUNNING)" in [e.text for e in events]
        said = []
        for lo in range(0, len(s), 20):  # 20 steps between polls
            for step, value in zip(s[lo:lo + 20], v[lo:lo + 20]):
                client.log_metric(rid, "loss", float(value), step=int(step))
            said += [(lo, e.finding.code) for e in follower.poll() if e.kind == "finding"]
        (state,) = follower.runs.values()
        assert np.array_equal(state.history.series["loss"].values, v)  # every point, once
        assert "divergence" in [c for _, c in said] and not follower.ended
        client.set_terminated(rid, "FAILED")
        events = follower.poll()
        assert "run 'digits/warmup-too-far' ended: FAILED" in [e.text for e in events]
        assert follower.ended
    finally:
        _stop(server)
