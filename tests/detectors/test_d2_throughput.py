"""throughput: step time, epoch time, ETA, stalls and slowdowns."""

import numpy as np
import pytest

import traindoctor as td
from evidence import title_numbers_in_evidence


def tp(history, **kw):
    return td.diagnose(history, only=["throughput"], params={"throughput": kw} if kw else None)


def test_seed_001_its_and_a_33_hour_epoch():
    # seed 001: "~0.82 it/s", est. epoch time "~33 hours"; 97,000 batches an epoch
    rng = np.random.default_rng(0)
    h = td.RunHistory({"it/s": td.Series("it/s", np.arange(70), 0.82 + 0.01 * rng.standard_normal(70))})
    h = h.with_roles({"it/s": "time"})
    (f,) = tp(h, steps_per_epoch=97_000).findings
    ev = f.evidence
    assert f.severity == td.Severity.INFO and ev["measured_from"] == "rate"
    assert abs(ev["steps_per_second"] - 0.82) < 0.01
    expected = 97_000 / ev["steps_per_second"] / 3600  # ~32.9 h
    assert abs(ev["epoch_hours"] - expected) / expected < 0.002 and 32 < ev["epoch_hours"] < 34
    assert f"{ev['epoch_hours']:g} h per epoch" in f.title
    title_numbers_in_evidence(f)


def test_wall_times_give_step_time_eta_and_epochs_from_the_series():
    n = 400
    steps = np.arange(n) * 10.0  # logged every 10 steps
    walls = 1000.0 + steps * 0.25  # 0.25 s per step
    epochs = steps // 1000
    h = td.RunHistory({"train_loss": td.Series("train_loss", steps, np.linspace(2, 0.5, n), epochs, walls)},
                      hparams={"max_steps": 10_000})
    (f,) = tp(h).findings
    ev = f.evidence
    assert ev["seconds_per_step"] == 0.25 and ev["steps_per_epoch"] == 1000
    assert ev["last_step"] == 3990 and ev["eta_hours"] == pytest.approx((10_000 - 3990) * 0.25 / 3600, rel=1e-3)
    title_numbers_in_evidence(f)


def test_long_stall_is_a_warning():
    steps = np.arange(200.0)
    walls = steps * 1.0
    walls[120:] += 4 * 3600  # four hours with no step
    h = td.RunHistory({"loss": td.Series("loss", steps, np.linspace(2, 1, 200), None, walls)})
    fs = tp(h).findings
    (w,) = [f for f in fs if f.severity == td.Severity.WARNING]
    assert w.evidence["stall_count"] == 1 and w.evidence["stall_steps"] == [120]
    assert w.evidence["stall_total_hours"] == pytest.approx(4.0, rel=1e-3)
    title_numbers_in_evidence(w)


def test_slowdown_is_a_warning():
    steps = np.arange(400.0)
    per_step = np.where(steps < 200, 0.5, 2.0)  # 4x slower in the second half
    walls = np.r_[0.0, np.cumsum(per_step[1:])]
    h = td.RunHistory({"loss": td.Series("loss", steps, np.linspace(2, 1, 400), None, walls)})
    (w,) = [f for f in tp(h).findings if f.severity == td.Severity.WARNING]
    assert w.evidence["slowdown"] == 4.0 and ".item()" in w.fixes[0].code
    title_numbers_in_evidence(w)


@pytest.mark.parametrize("seed", range(5))
def test_steady_jittery_runs_give_only_info(seed):
    rng = np.random.default_rng(seed)
    steps = np.arange(500.0)
    walls = np.cumsum(0.2 * rng.gamma(4.0, 0.25, 500))  # jittery but steady
    walls[::50] += 30  # a 30 s evaluation every 50 steps is normal
    h = td.RunHistory({"loss": td.Series("loss", steps, np.linspace(2, 1, 500), None, walls)})
    assert all(f.severity == td.Severity.INFO for f in tp(h).findings)


def test_edges_nothing_to_measure():
    h = td.RunHistory.from_dict({"loss": [1.0, 0.9, 0.8]})
    assert tp(h).skipped and not tp(h).findings
    nan = td.RunHistory({"loss": td.Series("loss", np.arange(5.0), np.ones(5), None, np.full(5, np.nan))})
    assert tp(nan).skipped
    same = td.RunHistory({"loss": td.Series("loss", np.arange(10.0), np.ones(10), None, np.full(10, 7.0))})
    assert not [f for f in tp(same).findings if f.severity != td.Severity.INFO]
    samples = td.RunHistory({"train_samples_per_second": td.Series("train_samples_per_second", [0.0], [50.0])})
    assert tp(samples).skipped  # samples/s is not steps/s
