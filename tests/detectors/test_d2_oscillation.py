"""oscillation: step-to-step swing large against the net progress (LR too high)."""

import numpy as np
import pytest

import traindoctor as td
from evidence import title_numbers_in_evidence


def osc(**series):
    return td.diagnose(td.RunHistory.from_dict(series), only=["oscillation"])


def test_bouncing_loss_with_little_progress_is_oscillation():
    rng = np.random.default_rng(0)
    n = 300
    # zig-zag across the valley: alternate high/low around a slowly falling level
    loss = np.linspace(1.6, 1.3, n) + 0.5 * np.where(np.arange(n) % 2, 1, -1) + 0.1 * rng.standard_normal(n)
    (f,) = osc(loss=loss, lr=np.full(n, 0.5)).get("oscillation")
    ev = f.evidence
    assert f.severity == td.Severity.WARNING
    assert ev["median_swing"] > 0.8 and ev["swing_to_progress"] >= ev["thresholds"]["ratio_threshold"]
    assert ev["sign_alternation"] > 0.9 and ev["lr_final"] == 0.5 and "0.5" in f.fixes[0].action
    title_numbers_in_evidence(f)


def test_only_val_loss_is_used_when_there_is_no_train_loss():
    rng = np.random.default_rng(1)
    (f,) = osc(val_loss=1.0 + 0.5 * rng.standard_normal(40) ** 2).get("oscillation")
    assert f.metric == "val_loss"


@pytest.mark.parametrize("seed", range(8))
def test_healthy_noisy_curves_do_not_oscillate(curves, seed):
    rng = np.random.default_rng(seed)
    base = curves.decay(800, seed=seed, noise=0.0)
    for loss in (base * rng.gamma(6.0, 1 / 6.0, base.size), curves.finetune(400, seed=seed),
                 curves.decay(50, seed=seed)):
        assert not osc(loss=loss).findings


def test_flat_noisy_plateau_at_chance_is_not_oscillation():
    # shuffled labels: minibatch CE around ln(10) with small noise -- a plateau, not oscillation
    rng = np.random.default_rng(3)
    assert not osc(loss=2.3026 + 0.05 * rng.standard_normal(300)).findings


def test_monotone_rise_is_not_oscillation():
    assert not osc(loss=np.linspace(0.1, 3.0, 100)).findings


def test_edges_short_nan_constant():
    assert osc(loss=[1.0, 3.0, 1.0, 3.0]).skipped
    assert not osc(loss=[2.0] * 100).findings
    assert osc(loss=[float("nan")] * 100).skipped
    zig = np.tile([0.5, 2.0], 50).astype(float)
    zig[::7] = np.nan
    assert osc(loss=zig).has("oscillation")
