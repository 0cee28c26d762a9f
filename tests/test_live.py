"""LiveDiagnosis: a growing run is re-diagnosed at bounded cost, each finding said once."""

import numpy as np
import pytest

import traindoctor as td
from traindoctor.live import LiveDiagnosis


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _run(n, blow_at=None, seed=0):
    """A train loss that decays; from `blow_at` on it climbs by decades (a divergence)."""
    r = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    loss = 0.3 + 2.0 * np.exp(-t / 60) + 0.01 * r.standard_normal(n)
    if blow_at is not None and n > blow_at:
        loss[blow_at:] = loss[blow_at] * np.exp((t[blow_at:] - blow_at) / 8)
    return td.RunHistory({"train_loss": td.Series("train_loss", t, loss)})


def test_each_finding_is_reported_once_as_the_run_grows():
    clock = FakeClock()
    live = LiveDiagnosis(clock=clock, growth=0.0)
    said = []
    for n in range(20, 400, 10):
        clock.t += 100.0  # plenty of wall time between calls: only growth and identity decide
        said += live.update(_run(n, blow_at=250))
    codes = [f.code for f in said]
    assert "divergence" in codes, codes
    assert len(codes) == len({(f.code, f.metric) for f in said}), codes  # nothing said twice
    assert not any(f.code == "divergence" for f in live.update(_run(400, blow_at=250), force=True))


def test_healthy_growing_run_says_nothing_at_warning():
    clock = FakeClock()
    live = LiveDiagnosis(clock=clock)
    said = []
    for n in range(20, 600, 20):
        clock.t += 100.0
        said += live.update(_run(n, seed=3))
    assert [f for f in said if f.severity.rank >= td.Severity.WARNING.rank] == []


def test_end_of_run_checks_wait_for_the_end():
    """A run 40 steps in is still falling steeply: that is 'slow convergence' only if it ended there."""
    live = LiveDiagnosis(clock=FakeClock())
    assert not any(f.code == "slow_convergence" for f in live.update(_run(40, seed=3)))
    assert any(f.code == "slow_convergence" for f in live.update(_run(40, seed=3), final=True))


def test_duty_budget_spaces_the_reruns():
    clock = FakeClock()
    live = LiveDiagnosis(clock=clock, duty=0.01, growth=0.0)
    real = live.clock
    # Make each diagnose "take" 0.05 s of the fake clock: the next may start 5 s later.
    import traindoctor.engine as engine

    orig = engine.diagnose

    def slow(*a, **k):
        clock.t += 0.05
        return orig(*a, **k)

    engine.diagnose = slow
    try:
        live.update(_run(50))
        assert live.runs == 1 and real is clock
        clock.t += 4.0
        assert not live.due(60)
        assert live.update(_run(60)) == [] and live.runs == 1
        clock.t += 1.1
        assert live.due(60)
        live.update(_run(60))
        assert live.runs == 2
    finally:
        engine.diagnose = orig


def test_growth_budget_waits_for_new_points():
    live = LiveDiagnosis(growth=0.5, clock=FakeClock())
    live.update(_run(100))
    assert not live.due(120)  # 20 % more: not yet
    assert live.due(150)


@pytest.mark.parametrize("bad", [{"duty": 0}, {"duty": 1.5}, {"growth": -1}])
def test_bad_budgets_are_refused(bad):
    with pytest.raises(ValueError):
        LiveDiagnosis(**bad)
