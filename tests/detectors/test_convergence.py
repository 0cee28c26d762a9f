import numpy as np
import pytest

import traindoctor as td


def test_slow_convergence_linear_fall():
    r = np.random.default_rng(0)
    t = np.arange(100)
    run = td.RunHistory.from_dict({"train_loss": 2 - 0.015 * t + 0.01 * r.standard_normal(100),
                                   "val_loss": 2.1 - 0.015 * t + 0.01 * r.standard_normal(100)},
                                  epochs=True)
    [f] = td.diagnose(run, only=["slow_convergence"]).findings
    assert f.severity == td.Severity.WARNING and f.evidence["late_share_of_gain"] > 0.15
    assert f.evidence["projected_gain"] > 0


@pytest.mark.parametrize("seed", range(6))
def test_converged_runs_are_not_slow(curves, seed):
    assert not td.diagnose(curves.healthy_run(40, seed),
                           only=["slow_convergence", "underfitting"]).findings


def test_underfitting_near_chance_loss():
    r = np.random.default_rng(1)
    run = td.RunHistory.from_dict({"train_loss": 2.2 + 0.02 * r.standard_normal(40)},
                                  hparams={"num_classes": 10})
    [f] = td.diagnose(run, only=["underfitting"]).findings
    assert f.severity == td.Severity.WARNING and f.evidence["chance_loss"] == 2.303


def test_underfitting_needs_a_reference():
    rep = td.diagnose(td.RunHistory.from_dict({"train_loss": [2.0] * 30}), only=["underfitting"])
    assert not rep.findings and rep.skipped
