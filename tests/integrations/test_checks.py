"""LiveChecks on hand-made records (no torch): each probe code fires when its condition holds long enough."""

from __future__ import annotations

import math

from evidence import title_numbers_in_evidence
from traindoctor.integrations._checks import LiveChecks


def _feed(recs):
    checks = LiveChecks()
    out = []
    for i, rec in enumerate(recs, 1):
        out += [(i, f) for f in checks.update(rec, i)]
    for _, f in out:
        title_numbers_in_evidence(f)
    return out


def _grads(total, **mods):
    return {"grad_norm": total, **{f"grad_norm/{m}": v for m, v in mods.items()}}


def test_dead_gradients_need_five_zero_steps_in_a_row_and_are_said_once():
    recs = [_grads(1.0, enc=1.0, aux=0.0)] * 4 + [_grads(1.0, enc=1.0, aux=0.3)] + [_grads(1.0, enc=1.0, aux=0.0)] * 9
    out = _feed(recs)
    assert [(i, f.code, f.metric, f.severity.value) for i, f in out] == [(10, "dead_gradients", "aux", "warning")]
    assert out[0][1].evidence["since_step"] == 6


def test_exploding_gradients_above_the_probe_threshold_but_not_when_the_loss_is_nan():
    out = _feed([_grads(2.0, a=2.0), {**_grads(5e3, a=5e3), "train_loss": 3.0}])
    assert [(i, f.code, f.evidence["total_grad_norm"]) for i, f in out] == [(2, "exploding_gradients", 5e3)]
    assert _feed([{**_grads(math.nan, a=math.nan), "train_loss": math.nan}]) == []


def test_update_ratio_dead_relu_and_saturation_need_two_deep_checks_in_a_row():
    deep = {"update_ratio": 0.5, "update_ratio/a": 0.5, "act/a.relu/dead_fraction": 0.9,
            "act/b.tanh/saturated_fraction": 0.2}
    out = _feed([deep, {}, {**deep, "act/b.tanh/saturated_fraction": 0.8}, deep])
    assert sorted((i, f.code, f.metric) for i, f in out) == [
        (3, "dead_relu", "a.relu"), (3, "weight_update_ratio", "a")]
    # the tanh site was saturated once, then not: nothing


def test_prediction_collapse_after_twenty_steps_of_one_class():
    one = {"output_std": 0.01, "output_classes": 1.0, "target_classes": 7.0}
    out = _feed([one] * 19 + [{**one, "output_classes": 3.0}] + [one] * 20)
    assert [(i, f.code) for i, f in out] == [(40, "prediction_collapse")]
    reg = {"output_std": 1e-4, "target_std": 0.5}
    assert [f.evidence["ratio"] for _, f in _feed([reg] * 20)] == [2e-4]
