"""overfitting and train_val_gap with component pairing (issue 9).

Each validation component is judged against its own training component (YOLO val/cls_loss with
train/cls_loss, detectron2 loss_cls, fairseq nll_loss); a validation box loss is never called
overfitting because the class loss fell. Best values are logged values, at logged steps.
"""

import numpy as np
import pytest

import traindoctor as td
from traindoctor.detectors.overfitting import train_twin


def yolo_run(seed=0, n=60, cls_overfits=True):
    """YOLO-style results.csv: three train and three val components per epoch."""
    r = np.random.default_rng(seed)
    ep = np.arange(n)
    noise = lambda s: s * r.standard_normal(n)  # noqa: E731
    data = {
        "train/box_loss": 0.8 + 0.6 * np.exp(-ep / 15) + noise(0.01),
        "train/cls_loss": 0.03 + 3.0 * np.exp(-ep / 8) + noise(0.01),
        "train/dfl_loss": 1.0 + 0.4 * np.exp(-ep / 15) + noise(0.01),
        "val/box_loss": 1.1 + 0.5 * np.exp(-ep / 12) + noise(0.005),
        "val/dfl_loss": 1.2 + 0.3 * np.exp(-ep / 12) + noise(0.005),
    }
    if cls_overfits:  # falls to its best at epoch 8, then climbs 3.44 -> 6.21-like
        data["val/cls_loss"] = 3.44 + 0.06 * np.abs(ep - 8) + noise(0.005)
    else:
        data["val/cls_loss"] = 1.0 + 2.0 * np.exp(-ep / 8) + noise(0.01)
    return td.RunHistory.from_dict(data, epochs=True)


def overfit(history, **kw):
    rep = td.diagnose(history, only=["overfitting"], params={"overfitting": kw} if kw else None)
    return rep.get("overfitting")


def test_each_validation_component_pairs_with_its_own_training_component():
    h = yolo_run()
    for val, train in (("val/box_loss", "train/box_loss"), ("val/cls_loss", "train/cls_loss"),
                       ("val/dfl_loss", "train/dfl_loss")):
        assert train_twin(h, h[val]).name == train
    hf = td.RunHistory.from_dict({"loss": [1, 2], "eval_loss": [1, 2]})
    assert train_twin(hf, hf["eval_loss"]).name == "loss"
    d2 = td.RunHistory.from_dict({"loss_cls": [1, 2], "loss_box_reg": [1, 2],
                                  "val_loss_cls": [1, 2], "total_loss": [1, 2]})
    assert train_twin(d2, d2["val_loss_cls"]).name == "loss_cls"
    fs = td.RunHistory.from_dict({"train_nll_loss": [1, 2], "train_loss": [1, 2],
                                  "valid_nll_loss": [1, 2], "valid_loss": [1, 2]})
    assert train_twin(fs, fs["valid_nll_loss"]).name == "train_nll_loss"
    assert train_twin(fs, fs["valid_loss"]).name == "train_loss"


def test_a_val_component_with_no_training_twin_is_never_paired_with_another_component():
    h = td.RunHistory.from_dict({"train/cls_loss": [3, 2, 1], "train/box_loss": [2, 2, 2],
                                 "val/obj_loss": [1, 1, 1]})
    assert train_twin(h, h["val/obj_loss"]) is None


def test_a_rising_class_loss_is_overfitting_while_box_and_dfl_are_not():
    fs = {f.metric: f for f in overfit(yolo_run())}
    f = fs["val/cls_loss"]
    assert f.severity == td.Severity.WARNING and f.evidence["kind"] == "rising"
    assert f.evidence["train_series"] == "train/cls_loss"
    assert f.evidence["best_epoch"] == 8 and f.evidence["best_step"] == 8
    assert "val/box_loss" not in fs and "val/dfl_loss" not in fs


@pytest.mark.parametrize("seed", range(5))
def test_healthy_multi_component_runs_have_no_overfitting(seed):
    assert not [f for f in overfit(yolo_run(seed, cls_overfits=False))
                if f.severity.rank >= td.Severity.WARNING.rank]


def test_a_validation_loss_that_rises_with_its_training_loss_is_instability_not_overfitting():
    # both blow up before a NaN (an EEG transformer: val 1.17 -> 4.19, train 1.13 -> 1.82)
    r = np.random.default_rng(3)
    ep = np.arange(30)
    tr = np.r_[1.4 - 0.01 * ep[:26], [1.3, 1.45, 1.6, 1.82]] + 0.003 * r.standard_normal(30)
    val = np.r_[1.4 - 0.009 * ep[:26], [1.4, 2.0, 3.0, 4.19]] + 0.003 * r.standard_normal(30)
    assert not overfit(td.RunHistory.from_dict({"train_loss": tr, "val_loss": val}, epochs=True))


def test_best_value_and_step_are_logged_ones_not_epoch_means():
    # two evaluations an epoch (HF eval_steps): the best is a logged evaluation at its step
    r = np.random.default_rng(4)
    steps = np.arange(50, 2050, 50)
    ep = steps / 100.0
    val = 0.8 + 0.0000004 * (steps - 600) ** 2 + 0.002 * r.standard_normal(steps.size)
    tr_steps = np.arange(10, 2010, 10)
    tr = 0.9 * np.exp(-tr_steps / 600) + 0.05
    h = td.RunHistory({"eval_loss": td.Series("eval_loss", steps, val, ep),
                       "loss": td.Series("loss", tr_steps, tr, tr_steps / 100.0)})
    [f] = overfit(h)
    b = int(np.argmin(val))
    assert f.evidence["best_step"] == int(steps[b])
    assert f.evidence["best_value"] == pytest.approx(val[b], rel=1e-3)


@pytest.mark.parametrize("data", [
    {"val_loss": []}, {"val_loss": [1.0, 0.9]}, {"val_loss": [np.nan] * 10},
    {"val_loss": [0.5] * 20, "train_loss": [0.4] * 20},
    {"val/cls_loss": [1, np.nan, 2, 3, 4, 5, 6], "train/cls_loss": [np.nan] * 7},
])
def test_short_nan_and_constant_inputs(data):
    rep = td.diagnose(td.RunHistory.from_dict(data), only=["overfitting", "train_val_gap"])
    assert not [f for f in rep.findings if f.code == "internal_error"]
    assert not [f for f in rep.findings if f.severity.rank >= td.Severity.WARNING.rank] or \
        "val/cls_loss" in data
