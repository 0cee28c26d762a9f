"""divergence: a training loss that climbs far above its best, or explodes."""

import numpy as np
import pytest

import traindoctor as td
from evidence import title_numbers_in_evidence


def run(**series):
    return td.RunHistory.from_dict(series)


def test_rising_training_loss_is_divergence_with_its_numbers(curves):
    rng = np.random.default_rng(0)
    good = curves.decay(200, seed=1)
    up = np.linspace(good[-1], 4.0, 100) + 0.02 * rng.standard_normal(100)
    rep = td.diagnose(run(loss=np.r_[good, up], lr=np.full(300, 0.05)), only=["divergence"])
    (f,) = rep.get("divergence")
    assert f.severity == td.Severity.ERROR and f.metric == "loss"
    ev = f.evidence
    assert ev["unit"] == "step" and 150 <= ev["best_step"] <= 210
    assert ev["tail_median"] > 3.0 and ev["rise_in_noise_units"] >= ev["thresholds"]["z_threshold"]
    assert ev["lr_at_best"] == 0.05 and "0.05" in f.fixes[0].action
    assert f.steps == (ev["best_step"], 299)
    title_numbers_in_evidence(f)


def test_explosion_after_one_step_like_seed_002():
    # seed 002: "Loss exploded from 0.47 -> 4.22 after ONE gradient step" and stayed there.
    rng = np.random.default_rng(2)
    loss = np.r_[0.47, 4.22 + 0.05 * rng.standard_normal(30)]
    (f,) = td.diagnose(run(loss=loss), only=["divergence"]).get("divergence")
    assert f.evidence["best_value"] == 0.47 and f.evidence["best_step"] == 0
    assert f.evidence["growth_factor"] >= 8


def test_orders_of_magnitude_explosion_per_epoch_speaks_in_epochs():
    loss = np.r_[np.linspace(2.3, 1.0, 10), 1.0 * 10.0 ** np.arange(1, 7)]
    h = td.RunHistory.from_dict({"train_loss": loss}, epochs=True)
    (f,) = td.diagnose(h, only=["divergence"]).get("divergence")
    assert f.evidence["unit"] == "epoch" and "best_epoch" in f.evidence
    assert f.evidence["growth_factor"] >= f.evidence["thresholds"]["explosion_factor"]


@pytest.mark.parametrize("seed", range(6))
def test_healthy_runs_do_not_diverge(curves, seed):
    for loss in (curves.decay(400, seed=seed), curves.finetune(300, seed=seed),
                 curves.decay(30, seed=seed, noise=0.05)):
        assert not td.diagnose(run(loss=loss), only=["divergence"]).findings


def test_small_rise_near_zero_is_not_divergence():
    # 2.3 -> 0.001 then back to 0.003: three times the minimum, but 0.1% of the progress.
    loss = np.r_[np.geomspace(2.3, 0.001, 100), np.linspace(0.001, 0.003, 30)]
    assert not td.diagnose(run(loss=loss), only=["divergence"]).findings


def test_val_loss_rising_alone_is_left_to_overfitting(curves):
    tr = curves.decay(50, seed=0)
    val = np.r_[np.linspace(1.0, 0.5, 20), np.linspace(0.5, 2.0, 30)]
    assert not td.diagnose(run(train_loss=tr, val_loss=val), only=["divergence"]).findings


def test_edges_short_nan_constant():
    short = td.diagnose(run(loss=[1.0, 5.0, 50.0]), only=["divergence"])
    assert not short.findings and "need at least" in short.skipped[0].reason
    nan = td.diagnose(run(loss=[float("nan")] * 20), only=["divergence"])
    assert not nan.findings and nan.skipped
    assert not td.diagnose(run(loss=[1.0] * 50), only=["divergence"]).findings
    # NaNs inside a diverging run are ignored, the finite part still diverges
    loss = np.r_[np.linspace(2, 0.5, 30), np.nan, np.linspace(0.5, 6, 30)]
    assert td.diagnose(run(loss=loss), only=["divergence"]).has("divergence")
    assert not td.diagnose(run(val_loss=[1, 2, 3.0]), only=["divergence"]).findings
