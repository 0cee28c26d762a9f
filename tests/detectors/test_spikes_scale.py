"""loss_spikes relative to the curve's own scale, on a log scale across decades (issue 9)."""

import numpy as np
import pytest

import traindoctor as td
from traindoctor.detectors.spikes import log_scale


def spikes(data, **kw):
    h = td.RunHistory.from_dict(data)
    return td.diagnose(h, only=["loss_spikes"], params={"loss_spikes": kw} if kw else None)


def llm_curve(n=1500, seed=0, noise=0.01):
    r = np.random.default_rng(seed)
    t = np.arange(n)
    return 2.5 + 8.0 * np.exp(-t / 150) + noise * r.standard_normal(n)


def test_a_64_percent_jump_decaying_over_15_steps_on_a_smooth_llm_curve_is_a_spike():
    loss = llm_curve()
    i = 1000
    loss[i:i + 15] += 1.6 * np.exp(-np.arange(15) / 4)  # 2.5 -> 4.1, back in ~15 steps
    [f] = spikes({"loss": loss}).get("loss_spikes")
    assert f.evidence["steps"][0] == i and f.evidence["largest_step"] == i
    assert f.evidence["peak_to_level"][0] == pytest.approx(1.64, abs=0.05)


def test_a_loss_spanning_14_decades_is_judged_on_a_log_scale():
    # falls 1e8 -> 1e-6, then blows up by 4-6 orders of magnitude three times and recovers
    r = np.random.default_rng(1)
    n = 600
    logv = np.linspace(8, -6, n) + 0.05 * r.standard_normal(n)
    logv[300:] = -6 + 0.05 * r.standard_normal(n - 300)
    for i, k in ((350, 4), (450, 6), (520, 5)):
        logv[i:i + 3] += k
    loss = 10.0 ** logv
    assert log_scale(loss, 3.0)
    [f] = spikes({"loss": loss}).get("loss_spikes")
    assert f.evidence["scale"] == "log10" and f.evidence["count"] == 3
    assert f.evidence["explosions"] == 3 and f.severity == td.Severity.WARNING


def test_an_explosion_that_recovers_is_still_a_warning():
    r = np.random.default_rng(2)
    loss = 0.02 + 0.002 * np.abs(r.standard_normal(170))
    loss[31] = 9.67e11  # a 12-orders jump at one epoch, then back
    [f] = spikes({"Train Loss": loss}).get("loss_spikes")
    assert f.severity == td.Severity.WARNING and f.evidence["recovered"] == [True]


def test_a_validation_loss_explosion_is_a_spike_too():
    r = np.random.default_rng(3)
    val = 2.5 + 0.1 * r.standard_normal(80)
    val[30:34] = [110.0, 312.0, 90.0, 40.0]
    h = td.RunHistory.from_dict({"train_loss": 1.5 + 0.01 * r.standard_normal(80), "val_loss": val})
    fs = td.diagnose(h, only=["loss_spikes"]).get("loss_spikes")
    assert [f.metric for f in fs] == ["val_loss"] and fs[0].severity == td.Severity.WARNING


def test_spikes_that_cost_progress_warn():
    # each spike returns to the level just before it, but the level creeps up: 3.34 -> 3.8
    r = np.random.default_rng(4)
    n = 1000
    loss = 3.34 + 0.05 * r.standard_normal(n)
    for step in (600, 700, 800):
        loss[step:] += 0.15
        loss[step] += 3.0
    [f] = spikes({"loss": loss}).get("loss_spikes")
    assert f.severity == td.Severity.WARNING and "best_before_spikes" in f.evidence


@pytest.mark.parametrize("seed", range(6))
def test_healthy_runs_have_no_spike_warning(seed, curves):
    r = np.random.default_rng(seed)
    small_batch = curves.decay(3000, seed=seed, noise=0.0) * r.gamma(4.0, 1 / 4.0, 3000)
    for loss in (llm_curve(seed=seed), small_batch, curves.finetune(400, seed=seed)):
        fs = spikes({"loss": loss}).get("loss_spikes")
        assert not [f for f in fs if f.severity.rank >= td.Severity.WARNING.rank]


def test_log_scale_needs_positive_values_spanning_decades():
    assert not log_scale(np.array([1.0, 2.0, 3.0]), 3.0)
    assert not log_scale(np.array([-1.0, 1e5, 1.0]), 3.0)
    assert log_scale(np.array([1e-4, 1.0, np.nan]), 3.0)


def _blowup_run(seed, *, blow=True, aux=False):
    """A classifier's loss from ln 2 = 0.69: with `blow`, an LR far too high throws it to ~5000 in the
    first ten steps before it comes back down (breast_cancer at 300x the LR); `aux` adds a KL-like
    term that rightly grows from 0.001 to 0.05."""
    r = np.random.default_rng(seed)
    n = 120
    t = np.arange(n, dtype=float)
    loss = 0.1 + 0.59 * np.exp(-t / 25) + 0.01 * r.standard_normal(n)
    if blow:
        loss[2:12] = np.geomspace(50, 5000, 10) * (1 + 0.05 * r.standard_normal(10))
        loss[12:30] = np.geomspace(500, 0.3, 18)
    series = {"train_loss": td.Series("train_loss", t, loss)}
    if aux:
        series["train/kl_loss"] = td.Series("train/kl_loss", t, 0.001 + 0.05 * (1 - np.exp(-t / 10)))
    return td.RunHistory(series)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_blowup_from_the_first_point_warns_even_when_the_loss_comes_back(seed):
    (f,) = [f for f in td.diagnose(_blowup_run(seed)).findings if f.code == "loss_spikes"]
    assert f.severity == td.Severity.WARNING and f.metric == "train_loss"
    assert f.evidence["explosions"] == 1 and f.evidence["largest_level_before"] == pytest.approx(
        _blowup_run(seed).series["train_loss"].values[0], rel=1e-3)
    assert f.evidence["peak_to_level"][0] >= f.evidence["thresholds"]["explosion_factor"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_healthy_main_loss_beside_a_growing_auxiliary_term_is_no_explosion(seed):
    report = td.diagnose(_blowup_run(seed, blow=False, aux=True))
    assert not [f for f in report.findings if f.code == "loss_spikes" and f.metric == "train_loss"]
    # the rule is the main loss's: the auxiliary term's 50x rise from its first value is not an explosion
    assert all(f.evidence["explosions"] == 0 for f in report.findings
               if f.code == "loss_spikes" and f.metric == "train/kl_loss")
