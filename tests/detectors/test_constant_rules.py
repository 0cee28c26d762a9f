"""loss_constant: exact repeats, losses exactly 0, scores exactly 0 (issue 9)."""

import numpy as np
import pytest

import traindoctor as td
from traindoctor.detectors.constant import significant_digits


def constant(data, epochs=True, **kw):
    h = td.RunHistory.from_dict(data, epochs=epochs)
    return td.diagnose(h, only=["loss_constant"], params={"loss_constant": kw} if kw else None)


def test_significant_digits():
    assert significant_digits(3.3540122509002686) == 17
    assert significant_digits(10.3735) == 6
    assert significant_digits(1.0) == 1 and significant_digits(0.0) == 0
    assert significant_digits(0.00125) == 3


def test_a_test_loss_identical_to_the_last_digit_at_every_evaluation_is_an_error():
    # a dead network: the same 3.3540122509002686 at all 10 evaluations
    r = np.random.default_rng(0)
    data = {"test_loss": [3.3540122509002686] * 10, "train_loss": 3.35 + 0.05 * r.standard_normal(10)}
    [f] = constant(data).get("loss_constant")
    assert f.metric == "test_loss" and f.severity == td.Severity.ERROR
    assert f.evidence["exact_repeats"] is True and f.evidence["points"] == 10


def test_a_rounded_value_repeating_a_few_times_is_not_enough():
    # "1.000" five times is the print resolution, not a stuck loss
    r = np.random.default_rng(1)
    data = {"train_loss": list(1.2 + 0.05 * r.standard_normal(20)) + [1.0] * 6}
    assert not constant(data).get("loss_constant")


def test_a_main_loss_exactly_zero_from_its_first_point_was_never_computed():
    # all labels masked: loss 0.0 at every logged step while the LR follows its schedule
    data = {"loss": [0.0] * 100, "learning_rate": np.linspace(2e-4, 0, 100)}
    [f] = constant(data, epochs=False).get("loss_constant")
    assert f.severity == td.Severity.ERROR and f.evidence["kind"] == "zero_never_computed"


def test_a_box_loss_exactly_zero_with_scores_exactly_zero_is_a_data_bug():
    r = np.random.default_rng(2)
    data = {"train/box_loss": [0.0] * 20, "train/cls_loss": 4.8 + 0.1 * r.standard_normal(20),
            "metrics/precision": [0.0] * 20, "metrics/recall": [0.0] * 20}
    fs = {f.metric: f for f in constant(data).get("loss_constant")}
    assert fs["train/box_loss"].severity.rank >= td.Severity.WARNING.rank
    assert fs["train/box_loss"].evidence["kind"] == "zero_never_computed"
    assert fs["metrics/precision"].evidence["kind"] == "score_zero"
    # stuck over the same checks as the box loss: a warning, or listed under it as one fault
    rec = fs["metrics/recall"]
    assert rec.severity == td.Severity.WARNING or "explains this" in rec.explanation


@pytest.mark.parametrize("seed", range(4))
def test_a_class_loss_zero_by_design_while_map_learns_is_info(seed):
    # single-class YOLO: cls_loss is 0 by construction, mAP climbs 0.0002 -> 0.93
    r = np.random.default_rng(seed)
    ep = np.arange(50)
    data = {"train/cls_loss": [0.0] * 50, "val/cls_loss": [0.0] * 50,
            "train/box_loss": 0.03 + 0.1 * np.exp(-ep / 10) + 0.002 * r.standard_normal(50),
            "metrics/mAP_0.5": 0.93 * (1 - np.exp(-ep / 8)) + 0.005 * r.standard_normal(50)}
    fs = constant(data).get("loss_constant")
    assert fs and all(f.severity == td.Severity.INFO for f in fs)
    assert {f.evidence["kind"] for f in fs} == {"zero_by_design"}


def test_a_loss_that_fell_to_zero_is_convergence():
    z = constant({"loss": [1, 0.5] + [0.0] * 50}, epochs=False)
    assert z.findings[0].severity == td.Severity.INFO
    assert z.findings[0].evidence["kind"] == "zero_converged"


@pytest.mark.parametrize("seed", range(4))
def test_healthy_noisy_and_converged_runs_have_no_constant_finding(seed, curves):
    data = {"train_loss": curves.decay(300, seed=seed), "val_acc": np.linspace(0.5, 0.98, 300)}
    assert not constant(data, epochs=False).get("loss_constant")


@pytest.mark.parametrize("data", [
    {"train_loss": []}, {"train_loss": [1.0] * 3}, {"train_loss": [np.nan] * 30},
    {"val_acc": [np.nan, 0.0, 0.0]}, {"train_loss": [2.0] * 4 + [np.nan] * 10},
])
def test_short_and_nan_inputs(data):
    rep = constant(data)
    assert not [f for f in rep.findings if f.code == "internal_error"]
    assert not rep.get("loss_constant")
