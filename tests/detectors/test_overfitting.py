import numpy as np
import pytest

import traindoctor as td
from traindoctor.detectors.overfitting import early_stop_index


def _u(ep, val, train):
    return td.RunHistory.from_dict({"val_loss": val, "train_loss": train}, epochs=True)


def test_clear_rise_far_past_noise(curves):
    r = np.random.default_rng(0)
    ep = np.arange(60)
    val = 0.5 + 0.002 * (ep - 15) ** 2 + 0.01 * r.standard_normal(60)
    rep = td.diagnose(_u(ep, val, 1.0 * np.exp(-ep / 15)), only=["overfitting", "train_val_gap"])
    [f] = rep.get("overfitting")
    assert f.severity == td.Severity.WARNING and abs(f.evidence["best_epoch"] - 15) <= 3
    assert f.evidence["rise_in_noise"] > 10 and "thresholds" in f.evidence
    assert not f.evidence["checkpoint"] and "ModelCheckpoint" in f.fixes[0].code


@pytest.mark.parametrize("seed", range(6))
def test_healthy_runs_no_warning(curves, seed):
    assert not curves.warnings(td.diagnose(curves.healthy_run(40, seed), only=["overfitting"]))
    run = td.RunHistory.from_dict({"train_loss": curves.finetune(300, seed=seed),
                                   "val_loss": curves.finetune(300, seed=seed + 100) + 0.05})
    assert not curves.warnings(td.diagnose(run, only=["overfitting", "train_val_gap"]))


def test_early_stop_matches_lightning_semantics():
    v = [3, 2, 1, 1, 2, 3, 4, 5]  # a tie is not an improvement (min_delta=0, strict)
    assert early_stop_index(v, 3) == 5 and early_stop_index(v, 10) is None
    assert early_stop_index([0.1, 0.2, 0.15, 0.1], 2, higher_is_better=True) == 3


def test_edges_short_nan_constant():
    assert td.diagnose(td.RunHistory.from_dict({"val_loss": [1, 2]}), only=["overfitting"]).skipped
    nan = td.RunHistory.from_dict({"val_loss": [np.nan] * 20})
    assert not td.diagnose(nan, only=["overfitting"]).findings
    const = td.RunHistory.from_dict({"val_loss": [0.5] * 30, "train_loss": [0.5] * 30})
    assert not td.diagnose(const, only=["overfitting", "train_val_gap"]).findings


def test_small_rise_of_a_tiny_val_loss_with_steady_accuracy_is_info():
    # wine seed 2: val loss 0.52 -> best 0.0456 -> 0.0603 on 44 samples, accuracy 0.977 throughout
    ep = np.arange(15)
    val = np.array([0.5168, 0.1642, 0.0652, 0.0502, 0.0495, 0.0503, 0.0508, 0.0456, 0.0469,
                    0.0485, 0.0514, 0.0503, 0.0505, 0.0532, 0.0603])
    acc = np.array([0.977, 0.977, 1.0] + [0.977] * 12)
    train = 0.6 * np.exp(-ep / 2) + 0.01
    run = td.RunHistory.from_dict({"val_loss": val, "val_acc": acc, "train_loss": train}, epochs=True)
    [f] = td.diagnose(run, only=["overfitting"]).get("overfitting")
    ev = f.evidence
    assert f.severity == td.Severity.INFO, f.title
    assert ev["rise_share_of_improvement"] < ev["thresholds"]["min_undo"]
    assert ev["accuracy_worse"] is False and ev["best_epoch"] == 7


def test_same_small_rise_warns_when_accuracy_falls_too():
    ep = np.arange(15)
    val = np.array([0.5168, 0.1642, 0.0652, 0.0502, 0.0495, 0.0503, 0.0508, 0.0456, 0.0469,
                    0.0485, 0.0514, 0.0503, 0.0505, 0.0532, 0.0603])
    acc = np.array([0.9, 0.95, 0.977, 0.977, 0.977, 0.977, 0.977, 0.977, 0.977, 0.955, 0.955,
                    0.932, 0.932, 0.932, 0.932])
    run = td.RunHistory.from_dict({"val_loss": val, "val_acc": acc,
                                   "train_loss": 0.6 * np.exp(-ep / 2) + 0.01}, epochs=True)
    [f] = td.diagnose(run, only=["overfitting"]).get("overfitting")
    assert f.severity == td.Severity.WARNING and f.evidence["accuracy_worse"] is True


def test_val_loss_levelled_off_while_train_creeps_down_is_info():
    # wine, 40 epochs: val loss 0.89 -> 0.0355 (epoch 20) then 0.036-0.042; train 0.025 -> 0.007
    ep = np.arange(40)
    r = np.random.default_rng(5)
    val = 0.036 + 0.85 * np.exp(-ep / 3) + 0.0015 * np.abs(r.standard_normal(40))
    val[20] = 0.0355
    train = 0.9 * np.exp(-ep / 3) + 0.025 * (1 - ep / 40)
    run = td.RunHistory.from_dict({"val_loss": val, "train_loss": train}, epochs=True)
    [f] = td.diagnose(run, only=["overfitting"]).get("overfitting")
    ev = f.evidence
    assert ev["kind"] == "stalled" and f.severity == td.Severity.INFO, f.title
    assert ev["gap_widening_pct_of_improvement"] < 100 * ev["thresholds"]["min_undo"]
