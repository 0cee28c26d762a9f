"""`traindoctor demo`: trains a real model with a known fault and diagnoses it end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def _demo(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "traindoctor", "demo", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_default_demo_finds_the_overfitting_and_writes_the_reports(tmp_path):
    out = tmp_path / "demo"
    proc = _demo("--out", str(out))
    assert proc.returncode in (0, 1), proc.stderr
    assert "overfitting" in proc.stdout and "val_loss has got worse" in proc.stdout
    html = (out / "report.html").read_text()
    assert "<svg" in html and "overfitting" in html and "<script" not in html
    md = (out / "report.md").read_text()
    assert "## Root cause" in md
    # the checkpoint the report tells you to keep exists and is the best epoch's
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("epoch=*.pt"))
    assert len(ckpts) == 1 and ckpts[0] in proc.stdout
    assert (out / "metrics.csv").read_text().startswith("epoch,step,train_loss,val_loss,val_acc,lr")


def test_list_names_every_fault():
    from traindoctor.demo import FAULTS

    proc = _demo("--list", timeout=60)
    assert proc.returncode == 0
    for name in FAULTS:
        assert name in proc.stdout


def test_unknown_fault_is_one_line_and_exit_2(tmp_path):
    proc = _demo("--fault", "nonsense", "--out", str(tmp_path / "x"), timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "demo --list" in proc.stderr


@pytest.mark.parametrize("name", ["overfit", "lr-high", "lr-low", "shuffled-labels", "healthy"])
def test_each_fault_gives_the_findings_it_promises(tmp_path, name):
    """What `demo --list` promises is what the diagnosis says; the healthy control gives no warning."""
    import traindoctor as td
    from traindoctor.demo import FAULTS, train

    report = td.diagnose(train(FAULTS[name], tmp_path / "a" / name))
    acting = {f.code for f in report.findings if f.severity.value != "info"}
    summary = [f"{f.severity.value} {f.code}: {f.title}" for f in report.findings]
    assert set(FAULTS[name].expect) <= acting, summary
    if not FAULTS[name].expect:
        assert not acting, summary
