"""lr_schedule: each LR change and what the loss did; warmup; a constant LR at a plateau."""

import numpy as np
import pytest

import traindoctor as td
from evidence import title_numbers_in_evidence


def sched(**series):
    return td.diagnose(td.RunHistory.from_dict(series), only=["lr_schedule"])


def test_step_decay_changes_and_their_effect_on_the_loss():
    rng = np.random.default_rng(0)
    n = 300
    lr = np.r_[np.full(100, 0.1), np.full(100, 0.01), np.full(100, 0.001)]
    # first drop helps a lot, second one does nothing
    loss = np.r_[np.full(100, 1.0), np.full(200, 0.5)] + 0.02 * rng.standard_normal(n)
    (f,) = sched(loss=loss, lr=lr).findings
    assert f.severity == td.Severity.INFO and f.evidence["schedule"] == "piecewise constant"
    c1, c2 = f.evidence["changes"]
    assert (c1["step"], c1["lr_before"], c1["lr_after"], c1["effect"]) == (100, 0.1, 0.01, "improved")
    assert (c2["step"], c2["effect"]) == (200, "no change")
    assert abs(c1["loss_before"] - 1.0) < 0.02 and abs(c1["loss_after"] - 0.5) < 0.02
    assert "no change" in f.explanation
    title_numbers_in_evidence(f)


def test_lr_increase_that_makes_the_loss_worse_is_a_warning():
    rng = np.random.default_rng(1)
    lr = np.r_[np.full(150, 1e-4), np.full(150, 5e-3)]
    loss = np.r_[np.linspace(1.0, 0.5, 150), np.linspace(0.8, 1.5, 150)] + 0.01 * rng.standard_normal(300)
    rep = sched(loss=loss, lr=lr)
    (w,) = [f for f in rep.findings if f.severity == td.Severity.WARNING]
    assert w.evidence["effect"] == "got worse" and w.evidence["step"] == 150
    assert w.evidence["worse_by"] >= w.evidence["thresholds"]["worse_warn"]
    assert "0.0001" in w.fixes[0].action
    title_numbers_in_evidence(w)


def test_warmup_then_cosine_is_summarised(curves):
    n = 1000
    t = np.arange(n)
    lr = np.where(t < 100, 1e-3 * (t + 1) / 100, 1e-3 * 0.5 * (1 + np.cos(np.pi * (t - 100) / 900)))
    (f,) = sched(loss=curves.decay(n, seed=2), lr=lr).findings
    assert f.severity == td.Severity.INFO and f.evidence["warmup_end_step"] == 98  # first step at 99% of the peak
    assert f.evidence["schedule"] == "warmup then continuous"
    title_numbers_in_evidence(f)


def test_constant_lr_while_the_loss_plateaus_is_info():
    rng = np.random.default_rng(3)
    loss = np.r_[np.linspace(2.0, 0.6, 100), np.full(200, 0.6)] + 0.01 * rng.standard_normal(300)
    (f,) = sched(loss=loss, lr=np.full(300, 0.01)).findings
    assert f.severity == td.Severity.INFO and f.evidence["schedule"] == "constant"
    assert "ReduceLROnPlateau" in f.fixes[0].code


@pytest.mark.parametrize("seed", range(5))
def test_constant_lr_on_a_still_improving_run_says_nothing(curves, seed):
    assert not sched(loss=curves.decay(400, seed=seed, tau=300), lr=np.full(400, 0.01)).findings


@pytest.mark.parametrize("seed", range(5))
def test_healthy_schedules_give_no_warning(curves, seed):
    n = 600
    lr = np.r_[np.full(200, 0.1), np.full(200, 0.01), np.full(200, 0.001)]
    assert not curves.warnings(sched(loss=curves.decay(n, seed=seed), lr=lr))


def test_edges_short_nan_constant():
    assert sched(loss=[1.0, 0.5], lr=[0.1, 0.1]).skipped
    assert sched(loss=[float("nan")] * 10, lr=[0.1] * 10).skipped
    assert not sched(loss=[1.0] * 10, lr=[float("nan")] * 10).findings
    # a change with too few loss points around it is listed, not judged
    (f,) = sched(loss=[1.0, 0.9, 0.8, 0.7, 0.6], lr=[0.1, 0.1, 0.1, 0.1, 0.01]).findings
    assert f.evidence["changes"][0]["effect"] == "not enough loss points"
