"""loss_spikes: count, steps, size in robust z-scores, recovered or not."""

import numpy as np
import pytest

import traindoctor as td
from evidence import title_numbers_in_evidence


def spikes(loss, **kw):
    h = td.RunHistory.from_dict({"loss": loss})
    return td.diagnose(h, only=["loss_spikes"], params={"loss_spikes": kw} if kw else None)


def test_recovered_spikes_are_counted_located_and_sized(curves):
    loss = curves.decay(400, seed=3)
    loss[[120, 250]] += 1.0  # two one-step spikes, far past 8 robust z, ~4x the level
    (f,) = spikes(loss).get("loss_spikes")
    ev = f.evidence
    assert ev["count"] == 2 and ev["steps"] == [120, 250]
    assert ev["recovered"] == [True, True] and ev["unrecovered_count"] == 0
    assert min(ev["z_scores"]) > ev["thresholds"]["z_threshold"]
    assert f.severity == td.Severity.INFO  # two recovered spikes: context, not an alarm
    title_numbers_in_evidence(f)


def test_spike_the_loss_never_recovers_from_is_a_warning(curves):
    loss = curves.decay(400, seed=4)
    loss[300:] += 2.0
    (f,) = spikes(loss).get("loss_spikes")
    assert f.severity == td.Severity.WARNING
    assert f.evidence["recovered"][0] is False and f.evidence["first_unrecovered"] == 300
    assert "did not come back" in f.explanation


def test_many_spikes_warn(curves):
    loss = curves.decay(500, seed=5)
    loss[60::60] += 3.0
    (f,) = spikes(loss).get("loss_spikes")
    assert f.evidence["count"] == 8 and f.severity == td.Severity.WARNING


def test_spike_at_the_very_end_has_unknown_recovery(curves):
    loss = curves.decay(200, seed=6)
    loss[-1] += 1.0  # ~4x the level: a spike, not an explosion
    (f,) = spikes(loss).get("loss_spikes")
    assert f.evidence["recovered"] == [None] and f.severity == td.Severity.INFO


@pytest.mark.parametrize("seed", range(8))
def test_healthy_noisy_minibatch_losses_have_no_spike_warning(curves, seed):
    rng = np.random.default_rng(seed)
    # heavy right tail like real minibatch losses: gamma noise around the trend
    base = curves.decay(600, seed=seed, noise=0.0)
    noisy = base * rng.gamma(8.0, 1 / 8.0, base.size)
    for loss in (noisy, curves.finetune(500, seed=seed), curves.decay(60, seed=seed)):
        assert not curves.warnings(spikes(loss))


def test_edges_short_nan_constant():
    assert spikes([1.0, 9.0, 1.0]).skipped
    assert not spikes([float("nan")] * 50).findings
    assert not spikes([0.7] * 100).findings
    loss = np.full(100, 0.5)
    loss[50] = np.nan
    loss[70] = 3.0
    (f,) = spikes(loss).get("loss_spikes")  # a perfectly flat loss: any jump is a spike
    assert f.evidence["steps"] == [70]


def test_spike_on_a_perfectly_flat_loss_has_a_finite_sane_z():
    import traindoctor as td

    vals = [1.0] * 60 + [3.0] + [1.0] * 40
    rep = td.diagnose(td.RunHistory.from_dict({"train_loss": vals}), only=["loss_spikes"])
    (f,) = rep.get("loss_spikes")
    # noise is 0, so z is measured against the 0.1% floor: (3 - 1) / 0.001 = 2000, not 1e10
    assert f.evidence["largest_z"] == 2000
