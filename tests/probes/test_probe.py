"""probe(): every check on a real small model with its fault, healthy twins, and the restore contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import traindoctor as td
from traindoctor.errors import InputError

from . import zoo
from .contract import assert_unchanged, capture, prepare


def run_probe(factory, **kwargs):
    """Probe what factory() builds, after giving it mid-training state, and check the contract."""
    model, batch, loss_fn, opt = factory()
    prepare(model, batch, loss_fn, opt)
    before = capture(model, opt)
    report = td.probe(model, batch, loss_fn=loss_fn, optimizer=opt, **kwargs)
    assert_unchanged(before, capture(model, opt))
    return report


def assert_well_formed(report):
    for f in report.findings:
        assert f.code != "internal_error", f.evidence
        assert "thresholds" in f.evidence, f.code
        f.to_dict()
    report.to_json()


@pytest.mark.parametrize("code", sorted(zoo.FAULTS))
def test_fault_is_found_and_state_restored(code):
    report = run_probe(zoo.FAULTS[code])
    assert code in report.codes(), (report.codes(), report.skipped)
    finding = report.get(code)[0]
    assert finding.severity.value in ("warning", "error") or code == "class_imbalance"
    assert_well_formed(report)


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer", "regression", "binary", "autoencoder"])
def test_healthy_twins_give_no_warning(name):
    report = run_probe(zoo.HEALTHY[name])
    assert not report.fails("warning"), [(f.code, f.title) for f in report.findings]
    assert report.meta["timings"] and all(v >= 0 for v in report.meta["timings"].values())
    assert_well_formed(report)


@pytest.mark.parametrize("factory, code", [
    (zoo.healthy_box_l1, "weak_loss_gradient"),     # same tiny boxes, SmoothL1 instead of GIoU
    (zoo.healthy_binary, "class_imbalance"),        # 50/50 instead of 66/34
    (zoo.healthy_autoencoder, "output_range_mismatch"),  # pixels scaled into the sigmoid's range
    (zoo.healthy_regression, "prediction_collapse"),
])
def test_specific_twins_do_not_trigger(factory, code):
    report = run_probe(factory, checks=[code])
    assert not report.has(code)
    assert code not in [s.code for s in report.skipped]


# -- the numbers the seeds quote -------------------------------------------------------------

def test_dead_gradients_names_the_disconnected_modules():
    f = run_probe(zoo.dead_gradients, checks=["dead_gradients"]).get("dead_gradients")[0]
    assert f.evidence["modules"] == ["working_memory", "foveation", "gate"]
    kinds = {row["module"]: row["gradient"] for row in f.evidence["table"]}
    assert kinds == {"working_memory": "none", "foveation": "none", "gate": "zero"}
    assert "backbone" not in f.title and "head" not in f.evidence["modules"]


def test_class_weights_are_computed_not_copied():
    f = run_probe(zoo.class_imbalance, checks=["class_imbalance"]).get("class_imbalance")[0]
    # seed 003: 66% / 34% -> w = N / (C n_c) = 100 / (2*34), 100 / (2*66)
    assert f.evidence["weights"] == [1.471, 0.7576]
    assert f.evidence["focal_alpha"] == [0.66, 0.34]
    assert "N / (C * n_c)" in f.evidence["weight_formula"]
    assert f.severity.value == "info"


def test_seed000_piecewise_loss_jump_and_slope_drop():
    f = run_probe(zoo.piecewise_loss, checks=["weak_loss_gradient"]).get("weak_loss_gradient")[0]
    ev = f.evidence
    assert ev["jump_at_distance"] == 0.1
    assert (ev["loss_before_jump"], ev["loss_after_jump"]) == (0.01, 0.02)
    assert (ev["slope_before"], ev["slope_after"]) == (0.2, 0.1)
    assert "jump" in ev["issues"] and "slope_drop" in ev["issues"]
    assert "0.01 to 0.02" in f.title


def test_giou_on_non_overlapping_boxes_has_a_weak_gradient():
    f = run_probe(zoo.weak_loss_gradient, checks=["weak_loss_gradient"]).get("weak_loss_gradient")[0]
    assert "weak" in f.evidence["issues"]
    assert f.evidence["slope_to_drop_ratio"] < f.evidence["thresholds"]["min_slope_ratio"]


def test_lr_too_high_quotes_both_losses_and_merges_the_range_test():
    report = run_probe(zoo.lr_too_high)
    [f] = report.get("lr_too_high")
    ev = f.evidence
    assert ev["loss_after_step"] > ev["thresholds"]["max_rise"] * ev["loss_before_step"]
    assert str(ev["loss_before_step"]) in f.title and str(ev["loss_after_step"]) in f.title
    assert "range_test_suggested_lr" in ev and not report.has("lr_too_low")


def test_lr_too_low_gives_the_ratio():
    f = run_probe(zoo.lr_too_low).get("lr_too_low")[0]
    assert f.evidence["configured_lr"] == 1e-6
    assert f.evidence["ratio"] == pytest.approx(f.evidence["suggested_lr"] / 1e-6, rel=1e-3)
    assert len(f.evidence["range_test_raw_losses"]) == len(f.evidence["range_test_lrs"])


def test_prediction_collapse_quotes_both_spreads():
    f = run_probe(zoo.prediction_collapse, checks=["prediction_collapse"]).get("prediction_collapse")[0]
    assert f.evidence["pred_std"] < 0.01 * f.evidence["target_std"]
    f = run_probe(zoo.prediction_collapse_classes, checks=["prediction_collapse"]).get("prediction_collapse")[0]
    assert f.evidence["predicted_class"] == 3 and f.evidence["label_classes"] == 10


def test_saturated_tanh_head_is_named():
    f = run_probe(zoo.saturated_activations, checks=["saturated_activations"]).get("saturated_activations")[0]
    assert f.evidence["worst_site"].endswith(":tanh") and f.evidence["worst_saturated_percent"] == 100.0


def test_nan_inputs_skip_the_meaningless_checks():
    report = run_probe(zoo.nan_inputs)
    assert report.codes() == ["nan_inputs"] and report.findings[0].severity.value == "error"
    assert {s.code for s in report.skipped} >= {"dead_gradients", "lr_too_high", "cannot_overfit_batch"}


# -- selection, budget, batch shapes ----------------------------------------------------------

def test_checks_and_skip_by_code():
    report = run_probe(zoo.dead_relu, checks=["dead_relu", "dead_gradients"], skip=["dead_gradients"])
    assert report.codes() == ["dead_relu"]
    assert [s.code for s in report.skipped] == ["dead_gradients"]
    assert set(report.meta["timings"]) == {"dead_relu"}


def test_unknown_code_and_bad_batch_are_input_errors():
    model, batch, loss_fn, opt = zoo.healthy("mlp")
    with pytest.raises(InputError, match="unknown probe check"):
        td.probe(model, batch, checks=["no_such_check"])
    with pytest.raises(InputError, match="batch must be"):
        td.probe(model, (batch[0], batch[1], batch[1]))
    with pytest.raises(InputError, match="nn.Module"):
        td.probe(lambda x: x, batch)


def test_spent_budget_skips_with_a_reason():
    report = run_probe(lambda: zoo.healthy("mlp"), budget=0.0)
    assert not report.findings
    assert all("budget" in s.reason for s in report.skipped) and len(report.skipped) >= 10


def test_no_optimizer_and_no_targets_are_skipped_not_guessed():
    model, (x, y), loss_fn, _ = zoo.healthy("mlp")
    before = capture(model, None)
    report = td.probe(model, x)  # a tensor batch: no targets, no loss
    assert_unchanged(before, capture(model, None))
    reasons = {s.code: s.reason for s in report.skipped}
    assert "dead_gradients" in reasons and "params_not_in_optimizer" in reasons
    assert not report.fails("warning")


class DictModel(nn.Module):
    """HF style: a dict batch with labels in, a dict with loss and logits out."""

    def __init__(self, fault=False):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(64, 32)
        self.unused = nn.Linear(32, 32)
        self.classifier = nn.Linear(32, 10)
        self.fault = fault

    def forward(self, pixel_values, labels=None):
        h = torch.relu(self.body(pixel_values))
        if not self.fault:
            h = h + 0.1 * torch.relu(self.unused(h))
        logits = self.classifier(h)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


@pytest.mark.parametrize("fault", [False, True])
def test_dict_batch_and_model_returned_loss(fault):
    x, y = zoo.digits()
    model = DictModel(fault)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = capture(model, opt)
    report = td.probe(model, {"pixel_values": x, "labels": y}, optimizer=opt)
    assert_unchanged(before, capture(model, opt))
    assert report.meta["loss_source"] == "model"
    assert report.meta["loss"] == pytest.approx(math.log(10), rel=0.2)
    assert report.has("dead_gradients") == fault
    if fault:
        assert report.get("dead_gradients")[0].evidence["modules"] == ["unused"]
    else:
        assert not report.fails("warning"), report.codes()


def test_same_answer_twice():
    a = run_probe(zoo.lr_too_high)
    b = run_probe(zoo.lr_too_high)
    assert [f.to_dict() for f in a.findings] == [f.to_dict() for f in b.findings]


def test_param_groups_with_different_lrs_are_restored():
    model, batch, loss_fn, _ = zoo.healthy("mlp")
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.05},
                           {"params": model[2].parameters(), "lr": 0.25}], momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    prepare(model, batch, loss_fn, opt)
    sched.step()
    before = capture(model, opt)
    report = td.probe(model, batch, loss_fn=loss_fn, optimizer=opt)
    assert_unchanged(before, capture(model, opt))
    assert [g["lr"] for g in opt.param_groups] == [0.025, 0.125]
    assert_well_formed(report)


def test_a_crashing_check_is_reported_and_the_model_still_restored():
    model, batch, _, opt = zoo.healthy("mlp")

    def picky_loss(pred, target):  # fails on the no-grad passes some checks make after a step
        if not pred.requires_grad:
            raise ValueError("picky loss needs a graph")
        return nn.functional.cross_entropy(pred, target)

    prepare(model, batch, picky_loss, opt)
    before = capture(model, opt)
    report = td.probe(model, batch, loss_fn=picky_loss, optimizer=opt)
    assert_unchanged(before, capture(model, opt))
    crashed = {f.evidence["check"] for f in report.get("internal_error")}
    assert "weight_update_ratio" in crashed and "picky loss" in report.get("internal_error")[0].evidence["error"]
    assert "dead_gradients" not in crashed


class NeedsExtraArg(torch.optim.SGD):
    """An optimizer whose constructor takes a required extra argument: probe cannot clone it."""

    def __init__(self, params, tag, lr=0.1):
        super().__init__(params, lr=lr, momentum=0.9)
        self.tag = tag


def test_uncloneable_optimizer_is_stepped_in_place_and_restored():
    model, batch, loss_fn, _ = zoo.healthy("mlp")
    opt = NeedsExtraArg(model.parameters(), "x")
    prepare(model, batch, loss_fn, opt)
    before = capture(model, opt)
    report = td.probe(model, batch, loss_fn=loss_fn, optimizer=opt)
    assert_unchanged(before, capture(model, opt))
    assert opt.tag == "x" and "weight_update_ratio" in report.meta["timings"]
    assert_well_formed(report)


def test_params_override_thresholds():
    report = run_probe(zoo.dead_relu, checks=["dead_relu"], params={"dead_relu": {"max_dead_fraction": 1.0}})
    assert not report.has("dead_relu")
    with pytest.raises(InputError, match="unknown probe check"):
        run_probe(zoo.dead_relu, params={"not_a_check": {}})


def test_feature_scales_far_apart_are_unnormalized():
    x, y = zoo.breast_cancer(50, 50)
    from sklearn.datasets import load_breast_cancer

    raw = torch.tensor(load_breast_cancer().data[:100], dtype=torch.float32)  # area ~1e3, smoothness ~0.1
    model = zoo.binary_mlp()
    f = td.probe(model, (raw, y), loss_fn=nn.CrossEntropyLoss(), checks=["unnormalized_inputs"]).findings[0]
    assert f.evidence["tensors"][0]["feature_std_spread"] > f.evidence["thresholds"]["max_feature_spread"]
    assert not td.probe(model, (x, y), loss_fn=nn.CrossEntropyLoss(), checks=["unnormalized_inputs"]).findings


def test_class_imbalance_with_bce_gives_pos_weight():
    x, y = zoo.breast_cancer(66, 34)  # 66 positives (class 1), 34 negatives
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 1))
    report = td.probe(model, (x, y.float().unsqueeze(1)), loss_fn=nn.BCEWithLogitsLoss(), checks=["class_imbalance"])
    f = report.get("class_imbalance")[0]
    assert f.evidence["bce_pos_weight"] == 0.5152  # n_negative / n_positive = 34 / 66
    assert "pos_weight=torch.tensor(0.5152)" in f.fixes[0].code
    assert [row["percent"] for row in f.evidence["classes"]] == [34.0, 66.0]


EXPENSIVE = ["lr_too_high", "lr_too_low", "cannot_overfit_batch"]


@pytest.mark.parametrize("seed", [1, 2, 3, 5])  # seed 5: a transformer predicting one class at init
@pytest.mark.parametrize("kind", ["mlp", "cnn", "transformer"])
def test_healthy_twins_over_seeds_give_no_warning(kind, seed):
    x, y = zoo.digits(64, seed=seed)
    model = {"mlp": zoo.mlp, "cnn": zoo.SmallCNN, "transformer": zoo.SmallTransformer}[kind](seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    report = td.probe(model, (x, y), loss_fn=nn.CrossEntropyLoss(), optimizer=opt, skip=EXPENSIVE)
    assert not report.fails("warning"), [(f.code, f.title) for f in report.findings]


class TwoInputs(nn.Module):
    """Seed 001's shape: model(piece, puzzle); a clamp head; one input ignored when `fault`."""

    def __init__(self, fault=False):
        super().__init__()
        torch.manual_seed(0)
        self.piece = nn.Linear(64, 16)
        self.puzzle = nn.Linear(64, 16)
        self.head = nn.Linear(32, 4)
        self.fault = fault

    def forward(self, piece, puzzle):
        a = self.piece(piece).clamp(min=0)  # a rectifier written as a one-sided clamp
        b = self.puzzle(puzzle).clamp(min=0)
        out = self.head(torch.cat([a, b], dim=1))
        return out.clamp(-2, 2) if not self.fault else (out * 100).clamp(-2, 2)


@pytest.mark.parametrize("fault", [False, True])
def test_tuple_inputs_and_clamp_heads(fault):
    x, t = zoo.boxes()
    model = TwoInputs(fault)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = capture(model, opt)
    report = td.probe(model, ((x, x.flip(0)), t), loss_fn=nn.SmoothL1Loss(), optimizer=opt, skip=EXPENSIVE)
    assert_unchanged(before, capture(model, opt))
    assert report.has("saturated_activations") == fault, report.codes()
    if fault:
        assert report.get("saturated_activations")[0].evidence["worst_site"] == "(root):clamp#3"
    assert not report.has("input_independent_output")


def test_mixed_train_eval_modes_are_kept():
    model, batch, loss_fn, opt = zoo.healthy("cnn")
    model.features[1].eval()  # a frozen BatchNorm inside a training model
    model.dropout.eval()
    before = capture(model, opt)
    report = td.probe(model, batch, loss_fn=loss_fn, optimizer=opt, skip=EXPENSIVE)
    assert_unchanged(before, capture(model, opt))
    assert model.training and not model.features[1].training and not model.dropout.training
    assert not report.fails("warning")
