"""One contract every registered detector must pass (like scikit-learn's check_estimator):
edge-case histories never raise, output is JSON-safe and deterministic, input is unchanged."""

import json

import numpy as np
import pytest

import traindoctor as td
from traindoctor.engine import run_detectors
from traindoctor.registry import detectors

ROLE_NAMES = {  # a name per role that infer_role maps back to the role
    "train_loss": "train_loss", "val_loss": "val_loss", "test_loss": "test_loss",
    "train_accuracy": "train_acc", "val_accuracy": "val_acc", "test_accuracy": "test_acc",
    "train_error": "train_mae", "val_error": "val_mae", "test_error": "test_mae",
    "lr": "lr", "grad_norm": "grad_norm", "time": "step_time", "epoch": "epoch",
}


def _all_roles():
    roles = set()
    for c in detectors():
        for req in c.requires:
            roles.update(req if isinstance(req, (tuple, list)) else (req,))
    return sorted(r for r in roles if r in ROLE_NAMES) or ["train_loss"]


def _history(kind):
    roles = _all_roles()
    series = {}
    for j, role in enumerate(roles):
        name = ROLE_NAMES[role]
        if kind == "empty":
            steps, vals = [], []
        elif kind == "one":
            steps, vals = [0], [1.0]
        elif kind == "constant":
            steps, vals = np.arange(50), np.full(50, 0.5)
        elif kind == "all_nan":
            steps, vals = np.arange(30), np.full(30, np.nan)
        elif kind == "long":
            r = np.random.default_rng(j)
            steps = np.arange(100_000)
            vals = 1 + np.exp(-steps / 20_000) + 0.05 * r.standard_normal(steps.size)
            if "accuracy" in role:
                vals = np.clip(vals / 3, 0, 1)
        elif kind == "unsorted":
            steps = np.array([5, 3, 3, 1, 9, 7, 7, 0, 2, 4, 6, 8, 10, 11, 12, 13])
            vals = np.linspace(2, 1, steps.size)[::-1].copy()
            vals[3] = np.inf
        else:
            raise AssertionError(kind)
        epochs = None
        if kind in ("constant", "unsorted"):
            epochs = np.asarray(steps) // 4
        series[name] = td.Series(name, steps, vals, epochs, role=role)
    return td.RunHistory(series, path="contract", format="test")


KINDS = ["empty", "one", "constant", "all_nan", "long", "unsorted"]


def _dicts(items):
    return [i.to_dict() for i in items]


@pytest.mark.parametrize("kind", KINDS)
def test_every_detector_through_the_engine(kind):
    run = _history(kind)
    before = {n: (s.steps.copy(), s.values.copy()) for n, s in run.series.items()}
    f1, s1 = run_detectors(run)
    f2, s2 = run_detectors(run)
    assert not [f for f in f1 if f.code == "internal_error"], [f.evidence for f in f1]
    assert _dicts(f1) == _dicts(f2) and _dicts(s1) == _dicts(s2)
    json.dumps(_dicts(f1) + _dicts(s1), allow_nan=False)
    for n, s in run.series.items():
        assert not s.values.flags.writeable
        np.testing.assert_array_equal(s.steps, before[n][0])
        np.testing.assert_array_equal(s.values, before[n][1])


RAW_KINDS = [k for k in KINDS if k != "long"]  # the long history runs once, through the engine


@pytest.mark.parametrize("kind", RAW_KINDS)
@pytest.mark.parametrize("check", detectors(), ids=lambda c: c.code)
def test_raw_function_on_unnormalized_history(kind, check):
    # Called directly, as a user or another module may: no `requires` filter, no normalising.
    # On the empty history every role is missing (history.primary(...) is None) and a detector
    # must yield nothing or a Skip, not crash.
    run = _history(kind)
    out1 = list(check.func(run) or ())
    out2 = list(check.func(run) or ())
    assert _dicts(out1) == _dicts(out2)
    for item in out1:
        assert isinstance(item, (td.Finding, td.Skip))
        json.dumps(item.to_dict(), allow_nan=False)
        if isinstance(item, td.Finding):
            assert item.code == check.code
            assert "thresholds" in item.evidence, f"{check.code} does not quote its thresholds"
    if kind == "empty":
        assert not [i for i in out1 if isinstance(i, td.Finding)], _dicts(out1)


@pytest.mark.parametrize("check", detectors(), ids=lambda c: c.code)
def test_raw_function_with_one_role_at_a_time(check):
    """Every detector, called directly on a run that has a single series, for every role:
    the roles it requires are mostly absent, and it must neither crash nor invent a finding
    about a series that is not there."""
    r = np.random.default_rng(7)
    steps = np.arange(60)
    for role, name in ROLE_NAMES.items():
        vals = 1 + np.exp(-steps / 15) + 0.02 * r.standard_normal(60)
        run = td.RunHistory({name: td.Series(name, steps, vals, steps // 6, role=role)})
        for item in check.func(run) or ():
            assert isinstance(item, (td.Finding, td.Skip)), (role, item)
            if isinstance(item, td.Finding):
                assert item.metric in (None, name), (role, item.metric)


def test_every_detector_is_registered_with_a_docstring():
    codes = [c.code for c in detectors()]
    assert len(codes) == len(set(codes))
    for code in ("overfitting", "train_val_gap", "plateau", "loss_constant", "nan_loss",
                 "underfitting", "slow_convergence"):
        assert code in codes
    assert all(c.summary for c in detectors())
