"""metric_disagreement: val loss up while val accuracy up; a loss near 0 at chance accuracy."""

import numpy as np
import pytest

import traindoctor as td
from evidence import title_numbers_in_evidence


def dis(hparams=None, **series):
    h = td.RunHistory.from_dict(series, epochs=True, hparams=hparams or {})
    return td.diagnose(h, only=["metric_disagreement"])


def test_val_loss_rising_while_val_accuracy_rises_is_overconfidence():
    rng = np.random.default_rng(0)
    e = np.arange(40)
    val_loss = np.r_[np.linspace(1.2, 0.4, 10), np.linspace(0.4, 0.9, 30)] + 0.005 * rng.standard_normal(40)
    val_acc = 0.6 + 0.3 * (1 - np.exp(-e / 15)) + 0.002 * rng.standard_normal(40)
    (f,) = dis(val_loss=val_loss, val_acc=val_acc, train_loss=np.geomspace(1.2, 0.01, 40)).findings
    ev = f.evidence
    assert f.severity == td.Severity.INFO and f.metric == "val_loss" and ev["unit"] == "epoch"
    assert 8 <= ev["loss_best_epoch"] <= 11 and ev["accuracy_gain"] > 0.05
    assert "label_smoothing" in f.fixes[1].code
    title_numbers_in_evidence(f)


def test_percent_scale_accuracy_is_read_as_percent():
    val_loss = np.r_[np.linspace(1.2, 0.4, 10), np.linspace(0.4, 0.9, 30)]
    val_acc = np.linspace(60, 90, 40)
    (f,) = dis(val_loss=val_loss, val_acc=val_acc).findings
    assert f.evidence["accuracy_scale"] == 100 and f.evidence["accuracy_final"] <= 1


def test_loss_near_zero_with_chance_accuracy_is_a_warning():
    rng = np.random.default_rng(1)
    loss = np.geomspace(2.3, 0.001, 30)
    acc = 0.1 + 0.01 * rng.standard_normal(30)
    (f,) = dis(hparams={"num_classes": 10}, train_loss=loss, train_acc=acc).findings
    assert f.severity == td.Severity.WARNING and f.evidence["chance_accuracy"] == 0.1
    assert f.evidence["num_classes"] == 10 and f.evidence["loss_final"] < 0.05
    title_numbers_in_evidence(f)
    # classes unknown: falls back to "accuracy never improved"
    (g,) = dis(train_loss=loss, train_acc=acc).findings
    assert g.severity == td.Severity.WARNING and "num_classes" not in g.evidence


@pytest.mark.parametrize("seed", range(6))
def test_healthy_loss_and_accuracy_agree(seed):
    rng = np.random.default_rng(seed)
    e = np.arange(30)
    loss = 0.3 + 2.0 * np.exp(-e / 6) + 0.01 * rng.standard_normal(30)
    acc = 0.95 - 0.85 * np.exp(-e / 6) + 0.005 * rng.standard_normal(30)
    assert not dis(val_loss=loss, val_acc=acc, train_loss=loss * 0.9, train_acc=acc).findings
    # a well-trained model: loss near 0 and accuracy near 1 is no disagreement
    assert not dis(hparams={"num_classes": 10}, train_loss=np.geomspace(2.3, 0.001, 30),
                   train_acc=np.linspace(0.1, 1.0, 30)).findings


def test_val_loss_and_accuracy_both_worsening_is_overfitting_not_this():
    val_loss = np.r_[np.linspace(1.2, 0.4, 10), np.linspace(0.4, 0.9, 30)]
    val_acc = np.r_[np.linspace(0.6, 0.9, 10), np.linspace(0.9, 0.8, 30)]
    assert not dis(val_loss=val_loss, val_acc=val_acc).findings


def test_edges_short_nan_constant():
    assert dis(val_loss=[1.0, 0.5], val_acc=[0.5, 0.6]).skipped
    assert dis(val_loss=[float("nan")] * 10, val_acc=[0.5] * 10).skipped
    assert not dis(val_loss=[0.5] * 20, val_acc=[0.5] * 20).findings
