"""rank_divergence on per-rank series (numpy only): each kind of disagreement, and silence on agreement."""

from __future__ import annotations

import numpy as np
import pytest

from evidence import title_numbers_in_evidence
from traindoctor import RunHistory, Series, diagnose
from traindoctor.detectors.ranks import rank_divergence


def _run(loss, grad=None, data=None):
    series = {}
    steps = np.arange(1, loss.shape[1] + 1, dtype=float)
    for r in range(loss.shape[0]):
        for stat, arr in (("train_loss", loss), ("grad_norm", grad), ("data_time", data)):
            if arr is not None:
                name = f"rank/{r}/{stat}"
                series[name] = Series(name, steps, arr[r], role="other")
    series["train_loss"] = Series("train_loss", steps, np.nanmean(loss, axis=0))
    return RunHistory(series)


def _healthy(seed, ranks=2, n=60):
    rng = np.random.default_rng(seed)
    trend = 2.0 * np.exp(-np.arange(n) / 20) + 0.3
    loss = trend + 0.05 * rng.standard_normal((ranks, n))
    grad = np.tile(1.0 + 0.2 * rng.standard_normal(n) ** 2, (ranks, 1))  # all-reduced: equal
    data = 0.002 + 0.001 * rng.random((ranks, n))
    return loss, grad, data


@pytest.mark.parametrize("seed", range(5))
def test_agreeing_ranks_are_quiet(seed):
    assert list(rank_divergence(_run(*_healthy(seed, ranks=2 + seed % 3)))) == []


def test_a_single_process_run_is_not_checked():
    assert "rank_divergence" not in [s.code for s in diagnose(RunHistory.from_dict({"loss": [1, 0.5, 0.4]})).skipped]
    assert list(rank_divergence(RunHistory.from_dict({"loss": [1, 0.5, 0.4]}))) == []


def test_gradients_not_averaged():
    loss, grad, data = _healthy(0)
    grad[1] *= 1.3
    (f,) = rank_divergence(_run(loss, grad, data))
    assert f.metric == "rank/1/grad_norm" and "not being averaged" in f.title
    title_numbers_in_evidence(f)


def test_losses_apart():
    loss, grad, data = _healthy(1)
    loss[0, 30:] *= 3
    (f,) = rank_divergence(_run(loss, grad, data))
    assert f.metric == "rank/0/train_loss" and f.evidence["ratio"] > 2.5
    title_numbers_in_evidence(f)


def test_nan_on_one_rank_names_it_and_the_step():
    loss, grad, data = _healthy(2, ranks=4)
    loss[2, 17:] = np.nan
    (f,) = rank_divergence(_run(loss, grad, data))
    assert f.severity.value == "error" and f.evidence["step"] == 18 and f.evidence["non_finite_ranks"] == [2]
    title_numbers_in_evidence(f)


def test_a_straggler_that_recovered():
    loss, grad, data = _healthy(3, ranks=3)
    data[1, 10:35] = 0.5
    (f,) = rank_divergence(_run(loss, grad, data))
    assert f.metric == "rank/1/data_time" and f.evidence["data_seconds"] == pytest.approx(0.5)
    title_numbers_in_evidence(f)
