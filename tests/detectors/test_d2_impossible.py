"""impossible_value: a value its metric cannot take."""

import numpy as np
import pytest

import traindoctor as td
from evidence import title_numbers_in_evidence


def imp(**series):
    return td.diagnose(td.RunHistory.from_dict(series), only=["impossible_value"])


def test_negative_nll_is_a_warning_naming_first_step_and_count():
    # NLLLoss fed raw probabilities: -p, between -1 and 0
    loss = -np.linspace(0.1, 0.9, 50)
    (f,) = imp(train_nll=loss).findings
    assert f.severity == td.Severity.WARNING and f.metric == "train_nll"
    assert f.evidence["count"] == 50 and f.evidence["first_step"] == 0 and f.evidence["bound"] == 0
    assert "log_softmax" in f.fixes[0].action
    title_numbers_in_evidence(f)


@pytest.mark.parametrize("name", ["val_mse", "train/bce_loss", "cross_entropy_loss", "val_mae"])
def test_every_nonnegative_loss_name_is_checked(name):
    (f,) = imp(**{name: [0.5, 0.2, -0.3, 0.1]}).findings
    assert f.severity == td.Severity.WARNING and f.evidence["count"] == 1 and f.evidence["first_step"] == 2


def test_generic_negative_loss_is_info_only():
    (f,) = imp(loss=np.linspace(1.0, -3.0, 20)).findings  # an ELBO-style loss may be negative
    assert f.severity == td.Severity.INFO


def test_accuracy_above_one_and_percent_scale():
    (w,) = imp(val_acc=[0.5, 0.9, 130.0, 0.95]).findings
    assert w.severity == td.Severity.WARNING and w.evidence["count"] == 1
    (i,) = imp(val_acc=[50.0, 80.0, 93.5]).findings
    assert i.severity == td.Severity.INFO and i.evidence["scale"] == 100 and "percentage" in i.title
    (n,) = imp(val_accuracy=[-0.1, 0.5]).findings
    assert n.severity == td.Severity.WARNING


def test_negative_lr_and_low_perplexity():
    (f,) = imp(lr=np.linspace(0.1, -0.01, 12)).findings
    assert f.severity == td.Severity.WARNING and f.evidence["count"] == 1
    (p,) = imp(val_perplexity=[30.0, 5.0, 0.8]).findings
    assert p.evidence["bound"] == 1.0


def test_legitimate_values_give_nothing(curves):
    for seed in range(5):
        loss = curves.decay(200, seed=seed)
        assert not imp(train_loss=loss, val_nll=loss, val_acc=np.linspace(0.1, 0.99, 200),
                       lr=np.geomspace(1e-3, 1e-6, 200), val_r2=np.linspace(-2, 0.9, 200),
                       val_mcc=np.linspace(-0.5, 0.8, 200), val_mse=loss * 0).findings
    # float32 rounding of a clamped loss is not negative
    assert not imp(val_mse=[0.1, -1e-8, 0.0]).findings


def test_edges_empty_nan_constant():
    assert not imp(train_nll=[float("nan")] * 5).findings
    assert not imp(val_acc=[]).findings
    assert imp(val_acc=[200.0, 200.0, float("nan")]).findings[0].evidence["count"] == 2
