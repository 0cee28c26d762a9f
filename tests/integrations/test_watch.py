"""td.watch in a plain PyTorch loop: faults found live, stopping, the run file, reports, no side effects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import traindoctor as td  # noqa: E402
from evidence import title_numbers_in_evidence  # noqa: E402
from traindoctor.integrations.core import REPORT_NAMES, TrainingFault  # noqa: E402
from traindoctor.readers.traindoctor_run import FILE_NAME  # noqa: E402

from .models import Net, train  # noqa: E402

pytestmark = pytest.mark.slow
SRC = str(Path(td.__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: fast and deterministic
    yield
    torch.set_num_threads(n)


def _watch(tmp_path, **kw):
    kw.setdefault("every", 1)  # every step recorded: counts and steps below are exact
    return lambda m, o: td.watch(m, o, logdir=tmp_path, **kw)


@pytest.mark.parametrize("fault, code, metric", [
    ("high_lr", "divergence", "train_loss"),
    ("disconnected", "dead_gradients", "aux"),
    ("overfit", "overfitting", "val_loss"),
])
def test_a_known_fault_is_found_reported_and_stops_the_run(tmp_path, fault, code, metric, caplog):
    full, _ = train(fault)
    caplog.set_level("WARNING", logger="traindoctor.watch")
    losses, w = train(fault, make_watch=_watch(tmp_path, on_finding="stop"))
    assert len(losses) < len(full), "on_finding='stop' did not stop the run early"
    hit = [f for f in w.findings if f.code == code and f.metric == metric]
    assert hit, [(f.code, f.metric) for f in w.findings]
    assert sum(f"[{code}]" in r.message for r in caplog.records) == 1  # said once, through logging
    for f in w.findings:
        title_numbers_in_evidence(f)
    # the run file: diagnose reads it (our reader), pandas reads it
    run = td.load(tmp_path)
    assert run.format == "traindoctor" and len(run["train_loss"]) == len(losses)
    pd = pytest.importorskip("pandas")
    frame = pd.read_json(tmp_path / FILE_NAME, lines=True)
    assert frame["train_loss"].dropna().size == len(losses)
    # the report on the way out names the fault
    md = (tmp_path / REPORT_NAMES["md"]).read_text()
    assert f"`{code}`" in md
    data = json.loads((tmp_path / REPORT_NAMES["json"]).read_text())
    assert code in [f["code"] for f in data["findings"]]
    assert data["meta"]["ended"] == "stopped by traindoctor" and run.status == "FINISHED"
    assert "<html" in (tmp_path / REPORT_NAMES["html"]).read_text().lower()


def test_a_healthy_run_gets_no_warning(tmp_path):
    losses, w = train("healthy", make_watch=_watch(tmp_path, on_finding="stop"))
    assert not w.should_stop
    assert [f.code for f in w.findings if f.severity.rank >= 1] == []
    assert len(losses) == 6 * 19


def test_watch_never_changes_the_training_numbers(tmp_path):
    plain, _ = train("healthy", epochs=2)
    watched, _ = train("healthy", epochs=2, make_watch=_watch(tmp_path, everything=True))
    assert plain == watched  # bit for bit, with every statistic on every step
    defaults, _ = train("healthy", epochs=2, make_watch=_watch(tmp_path / "d", deep_every=3))
    assert plain == defaults


def test_raise_mode_raises_a_training_fault_and_still_writes_the_report(tmp_path):
    with pytest.raises(TrainingFault) as err:
        train("disconnected", make_watch=_watch(tmp_path, on_finding="raise"))
    assert err.value.finding.code == "dead_gradients" and "aux" in str(err.value)
    assert json.loads((tmp_path / REPORT_NAMES["json"]).read_text())["meta"]["ended"].startswith(
        "exception: TrainingFault")


@pytest.mark.parametrize("exc", [RuntimeError("CUDA out of memory"), KeyboardInterrupt()])
def test_an_exception_or_ctrl_c_leaves_the_report(tmp_path, exc):
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    with pytest.raises(type(exc)):
        with td.watch(model, opt, logdir=tmp_path, every=1) as w:
            for i in range(5):
                out = model(x)
                loss = torch.nn.functional.cross_entropy(out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss=loss, outputs=out, targets=y)
                if i == 3:
                    raise exc
    meta = json.loads((tmp_path / REPORT_NAMES["json"]).read_text())["meta"]
    want = "interrupted (KeyboardInterrupt)" if isinstance(exc, KeyboardInterrupt) else "exception: RuntimeError"
    assert meta["ended"].startswith(want) and meta["steps"] == 4
    assert td.load(tmp_path).status == ("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
    assert (tmp_path / REPORT_NAMES["md"]).exists() and (tmp_path / REPORT_NAMES["html"]).exists()


def test_nan_guard_names_the_first_module_with_a_non_finite_output(tmp_path):
    class Blows(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.Linear(8, 8)
            self.boom = torch.nn.Linear(8, 8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, x):
            h = self.enc(x)
            h = self.boom(h)
            if self.arm:
                h = h * float("inf")  # inside boom's output path: head is the first with NaN/Inf... see below
            return self.head(h)

    torch.manual_seed(0)
    model = Blows()
    model.arm = False
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    with td.watch(model, opt, logdir=tmp_path, every=1, nan_guard="every_step") as w:
        for i in range(4):
            model.arm = i == 2
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss=loss, outputs=out, targets=y)
    guard = [f for f in w.findings if f.code == "nan_loss" and f.metric not in ("train_loss",)]
    # enc and boom were finite in step 3; the multiplication happens between boom and head
    assert guard and guard[0].metric == "head" and guard[0].evidence["step"] == 3, [
        (f.code, f.metric, f.title) for f in w.findings]


@pytest.mark.parametrize("guard, module, step", [
    ("every_step", "body.2", 4),  # the very step: the ruined weight's module is the first non-finite
    ("lazy", "body.0", 5),  # the forward after: step 4's NaN update has reached every layer by then
])
def test_nan_guard_after_a_weight_becomes_nan(tmp_path, guard, module, step):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    with td.watch(model, opt, logdir=tmp_path, every=1, nan_guard=guard) as w:
        for i in range(6):
            if i == 3:
                with torch.no_grad():
                    model.body[2].weight[0, 0] = float("nan")  # a weight ruined before step 4
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss=loss, outputs=out, targets=y)
    found = [f for f in w.findings if f.code == "nan_loss" and f.metric != "train_loss"]
    assert [(f.metric, f.evidence["step"]) for f in found] == [(module, step)]
    assert any(f.code == "nan_loss" and f.metric == "train_loss" for f in w.report_obj.findings)


def test_statistics_in_the_run_file(tmp_path):
    losses, w = train("healthy", epochs=1, make_watch=_watch(tmp_path, deep_every=5))
    run = td.load(tmp_path)
    names = set(run.names())
    assert {"train_loss", "lr", "grad_norm", "grad_norm/body", "grad_norm/aux", "grad_norm/head",
            "update_ratio", "step_time", "data_time", "output_std", "val_loss"} <= names
    assert {"act/body.1/dead_fraction", "act/body.3/dead_fraction"} <= names
    assert any(n.startswith("mem/") for n in names)
    assert run["grad_norm"].role == "grad_norm" and run["update_ratio"].role == "other"
    assert len(run["update_ratio"]) == len(losses) // 5  # deep steps only
    # the fused global norm is the norm of all gradients
    g = run["grad_norm"].values
    per = [run[f"grad_norm/{m}"].values for m in ("body", "aux", "head")]
    assert abs(g[-1] - sum(p[-1] ** 2 for p in per) ** 0.5) < 1e-4 * g[-1]


def test_auto_interval_averages_the_losses_it_does_not_record(tmp_path):
    # a recorder made expensive (10 ms a record) against fast steps: "auto" must record less often
    import traindoctor.integrations.recorder as rec_mod

    slow = rec_mod.Recorder.record

    def record(self, *a, **k):
        time.sleep(0.01)
        return slow(self, *a, **k)

    rec_mod.Recorder.record = record
    try:
        losses, w = train("healthy", epochs=1, make_watch=_watch(tmp_path, every="auto"))
    finally:
        rec_mod.Recorder.record = slow
    run = td.load(tmp_path)
    s = run["train_loss"]
    assert 1 < len(s) < len(losses) // 2 and w.every > 1
    prev = 0
    for step, value in zip(s.steps.astype(int), s.values):
        assert value == pytest.approx(sum(losses[prev:step]) / (step - prev), rel=1e-5)
        prev = step


def test_every_n_steps_and_depth(tmp_path):
    losses, _ = train("healthy", epochs=1, make_watch=_watch(tmp_path, every=4, depth=2))
    run = td.load(tmp_path)
    assert run["train_loss"].steps.tolist() == list(range(1, len(losses) + 1, 4))  # 1, 5, 9, ...
    assert "grad_norm/body.0" in run.names() and "grad_norm/body" not in run.names()


def test_mirror_into_a_summary_writer(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(tmp_path / "tb"))
    train("healthy", epochs=1, make_watch=_watch(tmp_path / "w", mirror=tb))
    tb.close()
    run = td.load(tmp_path / "tb")
    assert "traindoctor/grad_norm" in run.names() and len(run["traindoctor/train_loss"]) == 19


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    sys.path[:0] = [{src!r}]
    import traindoctor as td
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    w = td.watch(model, opt, logdir={logdir!r}, every=1)
    step = 0
    while True:
        step += 1
        out = model(x); loss = torch.nn.functional.cross_entropy(out, y)
        opt.zero_grad(); loss.backward(); opt.step()
        w.step(loss=loss, outputs=out, targets=y)
        print(step, flush=True)  # after the record: every printed step must be in the file
        time.sleep(0.002)
""")


def test_kill_9_loses_at_most_the_last_step(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(src=SRC, logdir=str(tmp_path / "logs")))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    printed = 0
    deadline = time.monotonic() + 60
    while printed < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        printed = int(line)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run, no chance to flush or clean up
    proc.wait()
    assert printed >= 40, "the training script did not get going"
    run = td.load(tmp_path / "logs")
    steps = run["train_loss"].steps
    assert steps[-1] >= printed  # every step it reported done is on disk (one may be in flight)
    assert list(steps) == list(range(1, len(steps) + 1))
    assert not (tmp_path / "logs" / REPORT_NAMES["md"]).exists()  # kill -9: no report, the run file holds
    assert run.status == ""  # nobody could say how it ended


def test_an_uncaught_exception_without_a_with_block_still_leaves_the_report(tmp_path):
    # what the HF callback relies on: an exception inside trainer.train() reaches no callback
    code = KILL_SCRIPT.format(src=SRC, logdir=str(tmp_path)).replace(
        "    time.sleep(0.002)", "    if step == 5:\n        raise ValueError('boom in the loop')")
    assert "boom" in code
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "boom in the loop" in out.stderr
    meta = json.loads((tmp_path / REPORT_NAMES["json"]).read_text())["meta"]
    assert meta["ended"] == "exception: ValueError: boom in the loop" and meta["steps"] == 5


def test_import_traindoctor_needs_numpy_alone(tmp_path):
    code = ("import sys\nfor m in ('torch', 'lightning', 'transformers', 'pytorch_lightning'):\n"
            "    sys.modules[m] = None\nimport traindoctor as td\nimport traindoctor.integrations\n"
            "try:\n    td.watch(object())\nexcept td.MissingExtraError as e:\n    print('ok', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok") and "pip install" in out.stdout
