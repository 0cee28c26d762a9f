import numpy as np
import pytest

import traindoctor as td


def test_plateau_at_chance_level():
    r = np.random.default_rng(0)
    run = td.RunHistory.from_dict({"train_loss": np.log(10) + 0.01 * r.standard_normal(60)},
                                  hparams={"num_classes": 10})
    [f] = td.diagnose(run, only=["plateau"]).get("plateau")
    assert f.severity == td.Severity.WARNING and f.evidence["chance_loss"] == 2.303
    assert "ln 10" in f.title


def test_accuracy_flat_not_one_over_c_is_majority_class():
    r = np.random.default_rng(1)
    run = td.RunHistory.from_dict({"val_acc": 0.66 + 0.003 * r.standard_normal(50)}, epochs=True)
    [f] = td.diagnose(run, only=["plateau"]).get("plateau")
    assert f.severity == td.Severity.WARNING and f.evidence["majority_class_share_guess"] == pytest.approx(0.66, abs=0.01)


@pytest.mark.parametrize("seed", range(6))
def test_healthy_converged_runs_no_plateau_warning(curves, seed):
    rep = td.diagnose(curves.healthy_run(40, seed), only=["plateau", "loss_constant", "nan_loss"])
    assert not curves.warnings(rep)


def test_loss_constant_names_the_stuck_component():
    r = np.random.default_rng(2)
    rot = 1.4 + 0.05 * r.standard_normal(300)
    run = td.RunHistory.from_dict({"train/position_loss": [1.0] * 300, "train/rotation_loss": rot,
                                   "train/total_loss": rot + 1.0})
    [f] = td.diagnose(run, only=["loss_constant"]).get("loss_constant")
    assert f.metric == "train/position_loss" and f.evidence["points"] == 300
    assert f.severity == td.Severity.WARNING and "train/rotation_loss" in f.evidence["others_moving"]


def test_loss_constant_on_main_loss_is_error_and_zero_is_info():
    assert td.diagnose(td.RunHistory.from_dict({"loss": [0.7] * 50}),
                       only=["loss_constant"]).findings[0].severity == td.Severity.ERROR
    z = td.diagnose(td.RunHistory.from_dict({"loss": [1, 0.5] + [0.0] * 50}), only=["loss_constant"])
    assert z.findings[0].severity == td.Severity.INFO


def test_nan_loss_first_step_and_context():
    loss = list(np.linspace(1, 3, 20)) + [np.nan] * 5
    lr = [1e-3] * 25
    gn = [1.0] * 18 + [50.0, 80.0] + [np.nan] * 5
    [f] = td.diagnose(td.RunHistory.from_dict({"loss": loss, "lr": lr, "grad_norm": gn}),
                      only=["nan_loss"]).findings
    ev = f.evidence
    assert f.severity == td.Severity.ERROR and ev["first_step"] == 20 and ev["value"] == "nan"
    assert ev["lr"] == 0.001 and ev["grad_norm_exploding"] is True and ev["trend_change"] > 0


def test_edges():
    for data in ({"loss": []}, {"loss": [1.0]}, {"loss": [np.nan] * 3}):
        rep = td.diagnose(td.RunHistory.from_dict(data), only=["plateau", "loss_constant"])
        assert not rep.findings


def _acc_run(acc, val_loss):
    return td.RunHistory.from_dict({"val_acc": acc, "val_loss": val_loss}, epochs=True)


def test_converged_accuracy_is_not_a_plateau_warning():
    # digits-like: accuracy 0.84 -> 0.96 in 3 epochs then flat; most of the errors are gone
    r = np.random.default_rng(3)
    ep = np.arange(15)
    acc = np.minimum(0.965, 0.84 + 0.06 * ep) + 0.003 * r.standard_normal(15)
    loss = 0.1 + 0.5 * np.exp(-ep / 2)
    fs = td.diagnose(_acc_run(acc, loss), only=["plateau"]).get("plateau")
    acc_f = [f for f in fs if f.metric == "val_acc"]
    assert acc_f and all(f.severity == td.Severity.INFO for f in fs)
    assert acc_f[0].evidence["improvement_before_share"] >= acc_f[0].evidence["thresholds"]["converged_drop"]


def test_accuracy_high_from_the_first_check_with_a_falling_loss_is_convergence():
    # wine-like: 0.977 (43 of 44) from epoch 0 while the val loss falls 0.38 -> 0.05
    ep = np.arange(15)
    acc = np.full(15, 0.9773)
    acc[:2] = 1.0
    loss = 0.05 + 0.33 * np.exp(-ep)
    fs = td.diagnose(_acc_run(acc, loss), only=["plateau"]).get("plateau")
    assert not [f for f in fs if f.severity.rank >= td.Severity.WARNING.rank], [f.title for f in fs]
    [f] = [f for f in fs if f.metric == "val_acc"]
    assert "majority_class_share_guess" not in f.evidence
    assert f.evidence["loss_partner"] == "val_loss" and f.evidence["loss_partner_drop_share"] > 0.5


def test_accuracy_flat_with_a_flat_loss_is_still_majority_class():
    r = np.random.default_rng(4)
    acc = 0.9 + 0.002 * r.standard_normal(40)
    loss = 0.33 + 0.003 * r.standard_normal(40)
    fs = td.diagnose(_acc_run(acc, loss), only=["plateau"]).get("plateau")
    [f] = [f for f in fs if f.metric == "val_acc"]
    assert f.severity == td.Severity.WARNING and f.evidence["majority_class_share_guess"] == 0.9
