"""Which finding explains which (engine.EXPLAINS): the root cause leads, what it explains is info."""

import numpy as np

import traindoctor as td
from traindoctor.engine import demote_explained


def F(code, metric, severity="warning", steps=None, **ev):
    return td.Finding(code, severity, f"{code} on {metric}", metric, ev, steps)


def test_overfitting_explains_a_plateau_of_any_validation_metric():
    out = demote_explained([F("overfitting", "val/cls_loss"), F("plateau", "val/box_loss"),
                            F("plateau", "val_acc"), F("plateau", "train/box_loss")])
    assert [f.severity.value for f in out] == ["warning", "info", "info", "warning"]
    assert "overfitting finding on val/cls_loss explains" in out[1].explanation


def test_no_learning_explains_the_other_flat_curves():
    out = demote_explained([F("underfitting", "train_loss"), F("plateau", "train/cls_loss"),
                            F("plateau", "val_loss")])
    assert [f.severity.value for f in out] == ["warning", "info", "info"]
    out = demote_explained([F("loss_constant", "test_loss", "error"), F("plateau", "train_loss")])
    assert out[1].severity == td.Severity.INFO


def test_a_nan_explains_what_follows_it_not_what_came_before():
    nan = F("nan_loss", "val/box_loss", "error", (13, 13), unit="epoch", first_epoch=13)
    before = F("loss_spikes", "val/cls_loss", "warning", (6, 16), unit="epoch")
    after = F("overfitting", "val_loss", "warning", (20, 50), unit="epoch")
    other_unit = F("plateau", "loss", "warning", (20, 50), unit="step")
    out = demote_explained([nan, before, after, other_unit])
    assert [f.severity.value for f in out] == ["error", "warning", "info", "warning"]


def test_an_info_cause_explains_nothing():
    out = demote_explained([F("underfitting", "train_loss", "info"), F("plateau", "val_loss")])
    assert out[1].severity == td.Severity.WARNING


def test_diagnose_applies_it_with_the_runs_roles():
    # a validation loss overfits; a custom-named validation accuracy plateaus at chance
    r = np.random.default_rng(0)
    ep = np.arange(40)
    run = td.RunHistory.from_dict({
        "train_loss": 2.3 * np.exp(-ep / 6) + 0.01 + 0.005 * r.standard_normal(40),
        "val_loss": 2.31 + 0.03 * ep + 0.01 * r.standard_normal(40),
        "val_acc": 0.1 + 0.005 * r.standard_normal(40),
    }, epochs=True)
    rep = td.diagnose(run)
    assert rep.findings[0].code == "overfitting"
    assert all(f.severity == td.Severity.INFO for f in rep.get("plateau"))
