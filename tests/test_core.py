"""The core contract: Finding/Report serialisation, roles, RunHistory, engine behaviour."""

import json

import numpy as np
import pytest

import traindoctor as td
from traindoctor.engine import _internal_error
from traindoctor.history import infer_role


@pytest.mark.parametrize(
    "name, role",
    [
        ("val_loss", "val_loss"), ("eval_loss", "val_loss"), ("Loss/val", "val_loss"),
        ("val/loss", "val_loss"), ("validation loss", "val_loss"), ("loss", "train_loss"),
        ("train/position_loss", "train_loss"), ("train_loss_epoch", "train_loss"),
        ("validation/epoch_loss", "val_loss"), ("val_acc", "val_accuracy"),
        ("epoch_accuracy", "train_accuracy"), ("lr-Adam", "lr"), ("learning_rate", "lr"),
        ("grad_norm", "grad_norm"), ("val/epe", "val_error"), ("epoch", "epoch"),
        ("test_accuracy", "test_accuracy"), ("global_step", "other"),
    ],
)
def test_infer_role(name, role):
    assert infer_role(name) == role


def test_finding_to_dict_has_exactly_the_contract_keys_and_is_json_safe():
    f = td.Finding("nan_loss", "error", "Loss became NaN at step 3", "train_loss",
                   {"first_step": np.int64(3), "value": float("nan"), "window": np.array([1.0, 2.0])},
                   steps=(np.float64(0), 3), fixes=[{"action": "lower the LR", "why": "it exploded"}])
    d = f.to_dict()
    assert list(d) == ["code", "severity", "title", "metric", "evidence", "steps", "explanation", "fixes",
                       "explained_by"]
    assert d["severity"] == "error" and d["evidence"]["value"] == "nan" and d["evidence"]["first_step"] == 3
    assert d["fixes"][0] == {"action": "lower the LR", "why": "it exploded", "code": None}
    json.dumps(d, allow_nan=False)


def test_report_orders_by_severity_and_fail_on():
    info = td.Finding("plateau", "info", "a")
    err = td.Finding("nan_loss", "error", "b")
    r = td.Report([info, err])
    assert r.codes() == ["nan_loss", "plateau"]
    assert r.fails("error") and r.fails("warning")
    assert not td.Report([info]).fails("warning")
    assert td.Report([info]).fails("info")
    assert r.filtered(ignore=["nan_loss"]).codes() == ["plateau"]


def test_series_normalized_sorts_and_keeps_last_duplicate():
    s = td.Series("loss", [3, 1, 2, 2], [30.0, 10.0, 20.0, 21.0])
    n = s.normalized()
    assert n.steps.tolist() == [1, 2, 3] and n.values.tolist() == [10.0, 21.0, 30.0]
    assert s.steps.tolist() == [3, 1, 2, 2]  # input untouched
    with pytest.raises(ValueError):
        s.values[0] = 1.0  # read-only


def test_per_epoch_means():
    s = td.Series("train_loss", np.arange(6), [1, 3, 2, 4, 5, 7], epochs=[0, 0, 1, 1, 2, 2])
    pe = s.per_epoch()
    assert pe.values.tolist() == [2.0, 3.0, 6.0] and pe.epochs.tolist() == [0, 1, 2]
    assert pe.is_per_epoch and pe.unit == "epoch"


def test_primary_prefers_canonical_name():
    run = td.RunHistory.from_dict({"val_loss_x": [1, 2], "val_loss": [3, 4], "val_loss_y": [5, 6]})
    assert run.primary("val_loss").name == "val_loss"
    run = td.RunHistory.from_dict({"train/position_loss": [1], "train/total_loss": [2]})
    assert run.primary("train_loss").name == "train/total_loss"


def test_with_roles_override_and_errors():
    run = td.RunHistory.from_dict({"val/epe": [1, 2]})
    assert run.with_roles({"val/epe": "val_loss"})["val/epe"].role == "val_loss"
    with pytest.raises(KeyError, match="this run has: val/epe"):
        run.with_roles({"nope": "val_loss"})
    with pytest.raises(ValueError, match="unknown role"):
        run.with_roles({"val/epe": "banana"})


def test_internal_error_finding_is_visible():
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError as exc:
        f = _internal_error("plateau", exc)
    assert f.code == "internal_error" and "plateau" in f.title and "boom" in f.evidence["error"]


def test_checkpoints_found_in_run_and_beside_logs_but_not_in_sibling_runs(tmp_path):
    from traindoctor.readers import find_checkpoints

    run = tmp_path / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch=9-step=1230.ckpt").write_bytes(b"")
    found = find_checkpoints(run)
    assert [(c.epoch, c.step) for c in found] == [(9, 1230)]

    # seed 000's layout: W&B logs two folders down, best/latest checkpoint folders beside them
    exp = tmp_path / "model_hinge_loss"
    logs = exp / "wandb" / "offline-run-1"
    logs.mkdir(parents=True)
    (exp / "best_checkpoint").mkdir()
    (exp / "latest_checkpoint").mkdir()
    sibling = exp / "other_run" / "checkpoints"
    sibling.mkdir(parents=True)
    (sibling / "epoch=3.pt").write_bytes(b"")
    tags = sorted(c.tag for c in find_checkpoints(logs))
    assert tags == ["best", "latest"]  # the sibling run's epoch=3.pt is not ours


def test_load_runs_reports_progress_per_unit(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text(
            "\n".join(f'{{"step": {i}, "loss": {1.0 / (i + 1)}}}' for i in range(5)))
    calls = []
    runs = td.load_runs(tmp_path, progress=lambda done, total, unit: calls.append((done, total)))
    assert len(runs) == 2
    assert calls == [(0, 2), (1, 2), (2, 2)]


def test_a_plateau_that_overfitting_explains_is_demoted_to_info():
    from traindoctor.engine import demote_explained

    over = td.Finding("overfitting", "warning", "val_loss rose", "val_loss")
    flat_val = td.Finding("plateau", "warning", "val_loss flat", "val_loss")
    flat_train = td.Finding("plateau", "warning", "train_loss flat", "train_loss")
    out = demote_explained([over, flat_val, flat_train])
    assert [f.severity.value for f in out] == ["warning", "info", "warning"]
    assert "overfitting finding on val_loss explains" in out[1].explanation
    # an info-level overfitting explains nothing away
    out = demote_explained([td.Finding("overfitting", "info", "t", "val_loss"), flat_val])
    assert out[1].severity == td.Severity.WARNING
