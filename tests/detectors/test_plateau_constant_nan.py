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
