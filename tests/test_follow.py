"""`traindoctor watch PATH`: following a log that a running job is still writing.

The end-to-end test runs two real processes: a numpy MLP trained on digits with a learning-rate
warmup that overshoots (it diverges a third of the way in) writes its log line by line, and
`traindoctor watch` follows it. The in-process tests drive a Follower poll by poll, with a clock
that only moves when the test says so and reads that cost no CPU time (so the budget never holds
a read back).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from traindoctor.cli import main
from traindoctor.follow import Follower

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A small MLP (tanh, softmax) on digits, SGD with momentum and a linear LR warmup that keeps going
# up: it learns for ~100 steps, then the loss explodes (to inf by step ~225). One log line every
# 5 steps, flushed, with a pause, as a real job prints.
WRITER = r"""
import os, sys, time
import numpy as np
from sklearn.datasets import load_digits

log, pause, go = sys.argv[1], float(sys.argv[2]), sys.argv[3]
np.seterr(all="ignore")
X, y = load_digits(return_X_y=True)
X = X / 16.0
with open(log, "a") as out:
    print(f"loaded digits: {len(X)} samples", file=out)
while not os.path.exists(go):  # the test starts the watch now (imports take long on a busy machine)
    time.sleep(0.02)
rng = np.random.default_rng(0)
W1 = rng.normal(0, 0.1, (64, 64)); b1 = np.zeros(64)
W2 = rng.normal(0, 0.1, (64, 10)); b2 = np.zeros(10)
params = [W1, b1, W2, b2]
vel = [np.zeros_like(p) for p in params]
step = 0
with open(log, "a", buffering=1) as out:
    for epoch in range(6):
        order = rng.permutation(len(X))
        for i in range(0, len(X) - 31, 32):
            xb, yb = X[order[i:i + 32]], y[order[i:i + 32]]
            h = np.tanh(xb @ W1 + b1)
            z = h @ W2 + b2
            z = z - z.max(1, keepdims=True)
            p = np.exp(z); p /= p.sum(1, keepdims=True)
            loss = -np.log(p[np.arange(len(yb)), yb]).mean()
            g = p.copy(); g[np.arange(len(yb)), yb] -= 1; g /= len(yb)
            gh = g @ W2.T * (1 - h ** 2)
            grads = [xb.T @ gh, gh.sum(0), h.T @ g, g.sum(0)]
            lr = 0.1 * (1 + 0.1 * step)  # warmup that never stops: the fault
            for v, w, gr in zip(vel, params, grads):
                v *= 0.9; v += gr; w -= lr * v
            step += 1
            if step % 5 == 0:
                print(f"epoch={epoch} step={step} loss={loss:.4f} lr={lr:.4g}", file=out)
                time.sleep(pause)
"""


def _env():
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _default_sigint():
    # a background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _watch(*args):
    return subprocess.Popen([sys.executable, "-m", "traindoctor", "watch", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=_default_sigint)


class _Lines:
    """Collects a pipe's lines in a thread; `when` records what `probe()` said at each line."""

    def __init__(self, pipe, probe=lambda: None):
        self.lines: list[tuple[str, object]] = []
        self._probe = probe
        self._thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._thread.start()

    def _run(self, pipe):
        for line in pipe:
            self.lines.append((line.rstrip("\n"), self._probe()))

    def wait_for(self, text: str, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in line for line, _ in self.lines):
                return True
            time.sleep(0.02)
        return False

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "\n".join(line for line, _ in self.lines)


@pytest.mark.slow
def test_watch_reports_divergence_while_the_training_process_still_runs(tmp_path):
    log = tmp_path / "train.log"
    script = tmp_path / "train.py"
    script.write_text(WRITER)
    go = tmp_path / "go"
    writer = subprocess.Popen([sys.executable, str(script), str(log), "0.08", str(go)])
    watch = None
    try:
        end = time.monotonic() + 120
        while "loaded" not in (log.read_text() if log.exists() else "") and time.monotonic() < end:
            time.sleep(0.05)
        # 3 s without growth ends it; --cpu 25: on a busy test machine a detector pass can take
        # 0.3 s of wall time, and the default 2 % would then wait 15 s, past the writer's end
        watch = _watch(log, "--interval", "0.1", "--idle", "0.05", "--cpu", "25")
        err = _Lines(watch.stderr)
        assert err.wait_for("following"), err.text()
        out = _Lines(watch.stdout, probe=lambda: writer.poll() is None)
        go.touch()
        writer.wait(timeout=120)
        rc = watch.wait(timeout=120)  # ends by itself: nothing grew for --idle
    finally:
        for p in (watch, writer):
            if p is not None and p.poll() is None:
                p.kill()
    stdout, stderr = out.text(), err.text()
    live = [(line, running) for line, running in out.lines if line[9:].startswith("ERROR")]
    assert live, stdout + stderr
    first, writer_running = live[0]
    assert "divergence" in first or "nan_loss" in first, first
    assert writer_running, f"the finding came only after the writer ended: {first}"
    # then the final report, as `diagnose` prints it, and the exit status of an error finding
    report = stdout[stdout.index("traindoctor diagnose"):]
    assert "divergence" in report and "nan_loss" in report
    assert rc == 1, stderr


def _lines(steps, values, fmt="step={s} loss={v:.4f}\n"):
    return "".join(fmt.format(s=int(s), v=v) for s, v in zip(steps, values))


def _diverging(n=120, seed=0):
    """Falls for 60 steps, then explodes 100x: the shape of a too-high learning rate."""
    rng = np.random.default_rng(seed)
    s = np.arange(1, n + 1)
    v = np.where(s < 60, 2.3 * np.exp(-s / 20) + 0.2, 0.3 * np.exp((s - 60) / 10))
    return s, v * (1 + 0.02 * rng.standard_normal(n))


def _healthy(n=120, seed=0):
    rng = np.random.default_rng(seed)
    s = np.arange(1, n + 1)
    return s, (2.3 * np.exp(-s / 30) + 0.1) * (1 + 0.02 * rng.standard_normal(n))


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _follower(path, **kw):
    clock = _Clock()  # reads cost nothing by this CPU clock: the budget never holds a read back
    return Follower(path, clock=clock, cpu=lambda: 0.0, **kw), clock


def _codes(events):
    return [e.finding.code for e in events if e.kind == "finding"]


def test_text_log_is_read_as_a_tail_of_complete_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("step=1 loss=2.0\nstep=2 loss=1.5\nstep=3 loss=1.")  # cut mid-number
    f, clock = _follower(log)
    f.poll()
    (run,) = f.histories()
    assert run["loss"].values.tolist() == [2.0, 1.5]  # not 1.0: the last line is not finished
    with open(log, "a") as fh:
        fh.write("25\nstep=4 loss=1.1\n")
    clock.t += 1
    f.poll()
    (run,) = f.histories()
    assert run["loss"].values.tolist() == [2.0, 1.5, 1.25, 1.1]
    (unit,) = f.units.values()
    assert unit.tail.offset == log.stat().st_size


def test_a_truncated_or_rotated_log_is_followed_from_its_start(tmp_path):
    log = tmp_path / "train.log"
    s, v = _healthy(60)
    log.write_text(_lines(s, v))
    f, clock = _follower(log)
    f.poll()
    assert len(f.histories()[0]["loss"]) == 60

    log.write_text(_lines(s[:10], v[:10] + 5))  # rerun with `>`: the file shrinks
    clock.t += 1
    events = f.poll()
    assert any(e.kind == "notice" and "truncated or replaced" in e.text for e in events)
    assert f.histories()[0]["loss"].values.tolist() == pytest.approx((v[:10] + 5).round(4).tolist())

    os.rename(log, tmp_path / "train.log.1")  # logrotate: a new file under the old name
    log.write_text(_lines(s[:40], v[:40] + 7))  # bigger than what was read: only the inode says so
    clock.t += 1
    events = f.poll()
    assert any("truncated or replaced" in e.text for e in events if e.kind == "notice")
    (run,) = f.histories()
    assert run["loss"].values[0] == pytest.approx(v[0] + 7, abs=1e-4) and len(run["loss"]) == 40


def test_a_restarted_log_gets_its_findings_again(tmp_path):
    log = tmp_path / "train.log"
    s, v = _diverging()
    log.write_text(_lines(s, v))
    f, clock = _follower(log)
    assert "divergence" in _codes(f.poll())
    log.write_text(_lines(s, v))  # the same broken job started again, into the same file
    os.truncate(log, 0)
    clock.t += 1
    f.poll()
    log.write_text(_lines(s, v))
    clock.t += 1
    assert "divergence" in _codes(f.poll())  # a new run: said again


def _tb_write(logdir, tag, steps, values):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir))
    for s, v in zip(steps, values):
        w.add_scalar(tag, float(v), int(s))
    w.flush()
    return w


def test_tensorboard_logdir_grows_and_a_new_run_appears(tmp_path):
    s, v = _healthy(100)
    w1 = _tb_write(tmp_path / "run1", "train/loss", s[:50], v[:50])
    f, clock = _follower(tmp_path)
    events = f.poll()
    assert any(e.kind == "notice" and "run1" in e.text for e in events)
    assert len(f.histories()[0]["train/loss"]) == 50
    for a, b in zip(s[50:], v[50:]):  # the same writer goes on: the events file grows
        w1.add_scalar("train/loss", float(b), int(a))
    w1.flush()
    clock.t += 1
    assert not _codes(f.poll())  # healthy: nothing to say
    assert len(f.histories()[0]["train/loss"]) == 100

    ds, dv = _diverging()
    _tb_write(tmp_path / "run2", "train/loss", ds, dv).close()  # a second job starts beside it
    clock.t += 20  # past the rescan interval, should the folder's mtime not have moved
    events = f.poll()
    assert any(e.kind == "notice" and "'run2'" in e.text for e in events), [e.text for e in events]
    found = [e for e in events if e.kind == "finding"]
    assert found and {e.run for e in found} == {"run2"}
    assert "divergence" in _codes(found)
    w1.close()


def test_metrics_csv_grows_row_by_row_and_overfitting_is_said_once(tmp_path):
    csv = tmp_path / "metrics.csv"
    epochs = np.arange(40)
    train = 2.0 * np.exp(-epochs / 6) + 0.01
    val = 0.6 + 0.002 * (epochs - 12) ** 2  # best at epoch 12, then rising
    csv.write_text("epoch,loss,val_loss\n")
    f, clock = _follower(csv)
    said = []
    for e in epochs:
        with open(csv, "a") as fh:
            fh.write(f"{e},{train[e]:.5f},{val[e]:.5f}\n")
        clock.t += 1
        said += [(int(e), c) for c in _codes(f.poll())]
    over = [e for e, c in said if c == "overfitting"]
    assert len(over) == 1 and over[0] < 39, said  # said while the run went on, and once
    # a row cut mid-write waits for its newline
    with open(csv, "a") as fh:
        fh.write("40,0.01")
    clock.t += 1
    f.poll()
    assert len(f.histories()[0]["loss"]) == 40
    with open(csv, "a") as fh:
        fh.write("5,1.0\n")
    clock.t += 1
    f.poll()
    assert f.histories()[0]["val_loss"].values[-1] == 1.0


def test_exec_runs_on_each_finding_at_or_above_its_severity(tmp_path, capsys):
    log = tmp_path / "train.log"
    s, v = _diverging()
    log.write_text(_lines(s, v))
    out = tmp_path / "exec.txt"
    cmd = f'printf "%s|%s|%s\\n" "$TRAINDOCTOR_CODE" "$TRAINDOCTOR_SEVERITY" "$TRAINDOCTOR_TITLE" >> {out}'
    dump = tmp_path / "finding.json"
    rc = main(["watch", str(log), "--interval", "0.05", "--idle", "0.002", "--exec",
               f'{cmd} && printf "%s\\n" "$TRAINDOCTOR_FINDING" >> {dump}', "--exec-on", "error"])
    assert rc == 1
    findings = [json.loads(line) for line in dump.read_text().splitlines()]
    assert {f["code"] for f in findings} >= {"divergence"} and all(f["severity"] == "error" for f in findings)
    assert all(f["evidence"] and f["fixes"] for f in findings)  # the whole finding, as --json has it
    rows = [line.split("|") for line in out.read_text().splitlines()]
    assert rows and all(sev == "error" for _, sev, _ in rows)
    assert "divergence" in [code for code, _, _ in rows]
    title = next(t for c, _, t in rows if c == "divergence")
    assert title in capsys.readouterr().out  # the same finding the live line printed

    out.unlink()
    main(["watch", str(log), "--interval", "0.05", "--idle", "0.002", "--exec", cmd, "--exec-on", "info"])
    sevs = {sev for _, sev, _ in (line.split("|") for line in out.read_text().splitlines())}
    assert "error" in sevs and len(sevs) > 1


def test_json_report_stays_valid_json_with_live_lines_on_stderr(tmp_path, capsys):
    log = tmp_path / "train.log"
    s, v = _diverging()
    log.write_text(_lines(s, v))
    rc = main(["watch", str(log), "--interval", "0.05", "--idle", "0.002", "--json"])
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert rc == 1 and "divergence" in [x["code"] for x in data["findings"]]
    assert "ERROR   divergence" in captured.err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["watch", str(tmp_path / "nope.log"), "--idle", "0.001"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.log" in err and "\n" not in err
    log = tmp_path / "train.log"
    log.write_text("step=1 loss=1.0\n")
    assert main(["watch", str(log), "--run", "abc", "--idle", "0.001"]) == 2  # not an MLflow store
    assert "--run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["watch", str(tmp_path), "--interval", "0"])
    assert exc.value.code == 2 and "--interval" in capsys.readouterr().err


def test_a_log_that_never_gets_a_metric_line_ends_with_a_clear_error(tmp_path, capsys):
    log = tmp_path / "train.log"
    log.write_text("loading data...\n")
    assert main(["watch", str(log), "--interval", "0.05", "--idle", "0.002"]) == 2
    assert "no metric lines" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_or_kill_ends_with_the_final_report(tmp_path, sig):
    log = tmp_path / "train.log"
    s, v = _diverging()
    log.write_text(_lines(s, v))
    watch = _watch(log, "--interval", "0.1", "--idle", "0")  # only Ctrl-C ends it
    try:
        err = _Lines(watch.stderr)
        out = _Lines(watch.stdout)
        assert out.wait_for("ERROR"), err.text()
        watch.send_signal(sig)
        rc = watch.wait(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert rc == 1, err.text()
    assert "traindoctor diagnose" in out.text() and "Traceback" not in err.text()


def test_a_utf16_log_is_followed_by_whole_rereads(tmp_path):
    log = tmp_path / "train.log"  # PowerShell's `python train.py > train.log` writes UTF-16LE + BOM
    s, v = _healthy(40)
    log.write_bytes(b"\xff\xfe" + _lines(s[:20], v[:20]).encode("utf-16-le"))
    f, clock = _follower(log)
    f.poll()
    assert len(f.histories()[0]["loss"]) == 20
    with open(log, "ab") as fh:
        fh.write(_lines(s[20:], v[20:]).encode("utf-16-le"))
    clock.t += 1
    f.poll()
    assert f.histories()[0]["loss"].values.tolist() == pytest.approx(v.round(4).tolist())
