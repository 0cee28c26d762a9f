"""Issue 2 acceptance: real Lightning runs on digits, read back and diagnosed."""

import numpy as np
import pytest

import traindoctor as td

pytest.importorskip("lightning")
from writers import write_lightning_run  # noqa: E402


def test_healthy_lightning_run_has_no_warning(tmp_path):
    report = td.diagnose(write_lightning_run(tmp_path, seed=0))
    bad = [f"{f.code}: {f.title}" for f in report.findings if f.severity.rank >= 1]
    assert not bad, bad


def test_overfitting_lightning_run_reports_best_epoch_of_logged_val_loss(tmp_path):
    run_dir = write_lightning_run(tmp_path, overfit=True, seed=0)
    run = td.load(run_dir)
    report = td.diagnose(run)
    [f] = report.get("overfitting")
    val = run.primary("val_loss").finite()
    ep = val.epochs if val.epochs is not None else val.steps
    assert f.evidence["best_" + f.evidence["unit"]] == int(ep[int(np.argmin(val.values))])
    assert f.severity == td.Severity.WARNING
