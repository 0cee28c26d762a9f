"""plateau vs convergence (issue 9): a plateau warns only when the run did not learn.

Positives: a loss flat at its start or at ln C; a validation curve that never improved while
training is stuck too; token accuracy at the most-frequent-token share while the loss crawls.
Negatives over seeds: converged classifiers near 98%, noisy small-batch runs, warmup + cosine
schedules, fine-tunes evaluated every N steps, a validation stall while training improves.
"""

import numpy as np
import pytest

import traindoctor as td


def plateaus(history, **params):
    rep = td.diagnose(history, only=["plateau"], params={"plateau": params} if params else None)
    return rep.get("plateau")


def warned(fs):
    return [f for f in fs if f.severity.rank >= td.Severity.WARNING.rank]


def per_epoch(**series):
    return td.RunHistory.from_dict(series, epochs=True)


def converged_classifier(seed, n=30):
    """Val accuracy 0.96 -> 0.98 within 5 epochs, steady after; losses fall and settle."""
    r = np.random.default_rng(seed)
    ep = np.arange(n)
    acc = 0.98 - 0.02 * np.exp(-ep / 1.5) + 0.002 * r.standard_normal(n)
    val = 0.06 + 0.12 * np.exp(-ep / 2) + 0.004 * r.standard_normal(n)
    tr = 0.02 + 0.3 * np.exp(-ep / 3) + 0.003 * r.standard_normal(n)
    return per_epoch(val_acc=acc, val_loss=val, train_loss=tr)


def warmup_cosine(n, seed, start=3.0, floor=0.8, warm=0.05):
    """A loss under a linear warmup then cosine decay: fast early, flattening as the LR -> 0."""
    r = np.random.default_rng(seed)
    t = np.arange(n) / n
    lr = np.where(t < warm, t / warm, 0.5 * (1 + np.cos(np.pi * (t - warm) / (1 - warm))))
    progress = np.cumsum(lr) / np.sum(lr)
    clean = floor + (start - floor) * np.exp(-4 * progress)
    return clean * (1 + 0.03 * r.standard_normal(n)), lr * 3e-4


# -- positives ----------------------------------------------------------------------------------


def test_a_loss_flat_at_its_start_for_the_whole_run_warns():
    r = np.random.default_rng(0)
    [f] = plateaus(per_epoch(train_loss=0.7 + 0.01 * r.standard_normal(60)))
    assert f.severity == td.Severity.WARNING and f.evidence["since_epoch"] == 0
    assert abs(f.evidence["improvement_before_share"]) < f.evidence["thresholds"]["converged_drop"]


def test_validation_that_never_learned_with_training_stuck_too_warns():
    r = np.random.default_rng(1)
    run = per_epoch(train_loss=1.2 + 0.01 * r.standard_normal(40),
                    val_loss=1.25 + 0.01 * r.standard_normal(40))
    fs = {f.metric: f for f in plateaus(run)}
    assert fs["val_loss"].severity == td.Severity.WARNING
    assert fs["val_loss"].evidence["train_stuck"] is True


def test_token_accuracy_at_the_most_frequent_token_share_while_the_loss_crawls():
    # a from-scratch seq2seq: token accuracy 0.066-0.068 for 52 epochs, loss 11.2 -> 8.7
    r = np.random.default_rng(2)
    ep = np.arange(52)
    acc = 0.067 + 0.0006 * r.standard_normal(52)
    loss = 8.7 + 2.5 * np.exp(-ep / 15) + 0.02 * r.standard_normal(52)
    fs = plateaus(per_epoch(train_acc=acc, train_loss=loss))
    [f] = [f for f in fs if f.metric == "train_acc"]
    assert f.severity == td.Severity.WARNING
    # 0.067 is both the most frequent token's share and ~1/15: either way a trivial level
    ev = f.evidence
    assert ev.get("majority_class_share_guess", ev.get("chance_accuracy")) == pytest.approx(0.067, abs=0.002)


# -- negatives ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_converged_classifiers_near_98_percent_are_info(seed):
    fs = plateaus(converged_classifier(seed))
    assert not warned(fs), [f.title for f in warned(fs)]


@pytest.mark.parametrize("seed", range(4))
def test_validation_stall_while_training_improves_is_a_gap_not_a_plateau(seed):
    # seed 004 rebuilt one point per epoch: train 15.6 -> 10.4, validation stalls near 16
    r = np.random.default_rng(seed)
    ep = np.arange(50)
    tr = 10.4 + 5.2 * np.exp(-ep / 15) + 0.05 * r.standard_normal(50)
    val = 16 + 8 * np.exp(-ep / 2) + 0.1 * r.standard_normal(50)
    fs = {f.metric: f for f in plateaus(per_epoch(train_loss=tr, val_loss=val))}
    assert fs["val_loss"].severity == td.Severity.INFO
    assert fs["val_loss"].evidence["train_stuck"] is False
    assert "Run an LR range test" not in " ".join(x.action for x in fs["val_loss"].fixes)


@pytest.mark.parametrize("seed", range(4))
def test_noisy_small_batch_runs_are_not_plateau_warnings(seed, curves):
    r = np.random.default_rng(seed)
    base = curves.decay(2000, seed=seed, noise=0.0, floor=0.3)
    noisy = base * r.gamma(4.0, 1 / 4.0, base.size)  # batch of 8: heavy-tailed minibatch noise
    assert not warned(plateaus(td.RunHistory.from_dict({"train_loss": noisy})))


@pytest.mark.parametrize("seed", range(4))
def test_warmup_cosine_schedules_are_not_plateau_warnings(seed):
    loss, lr = warmup_cosine(1500, seed)
    fs = plateaus(td.RunHistory.from_dict({"loss": loss, "learning_rate": lr}))
    assert not warned(fs), [f.title for f in warned(fs)]


@pytest.mark.parametrize("seed", range(4))
def test_finetunes_evaluated_every_n_steps_are_not_plateau_warnings(seed, curves):
    # HF-style: train loss every 10 steps, eval every 200, a quick early drop then convergence
    r = np.random.default_rng(seed)
    steps = np.arange(10, 4010, 10)
    tr = curves.finetune(steps.size, start=1.3, floor=0.45, seed=seed)
    ev_steps = np.arange(200, 4001, 200)
    ev = 0.73 + 0.25 * np.exp(-ev_steps / 700) + 0.004 * r.standard_normal(ev_steps.size)
    run = td.RunHistory({"loss": td.Series("loss", steps, tr),
                         "eval_loss": td.Series("eval_loss", ev_steps, ev)})
    assert not warned(plateaus(run))


def test_an_accuracy_judged_by_its_error_not_its_raw_change():
    # 0.90 -> 0.99 is a raw change of 0.09 but removes 90% of the errors: convergence
    r = np.random.default_rng(5)
    ep = np.arange(40)
    acc = 0.99 - 0.09 * np.exp(-ep / 2) + 0.001 * r.standard_normal(40)
    [f] = plateaus(per_epoch(train_acc=acc))
    assert f.severity == td.Severity.INFO
    assert f.evidence["improvement_before_share"] > 0.8
    assert "first error" in f.evidence["improvement_measured_against"]


def test_every_logged_point_is_a_point_not_an_epoch_bin():
    # 3000 step-level points over 10 epochs: judged on 3000 points, not 10 epoch means
    r = np.random.default_rng(6)
    n = 3000
    loss = 2.0 + 0.05 * r.standard_normal(n)
    run = td.RunHistory({"loss": td.Series("loss", np.arange(n), loss, np.arange(n) // 300)})
    [f] = plateaus(run)
    assert f.evidence["points"] == n and f.evidence["unit"] == "step"


def test_a_curve_that_rose_and_stayed_is_not_a_plateau_warning():
    r = np.random.default_rng(7)
    v = np.r_[[2.5], 3.6 + 0.1 * r.standard_normal(19)]  # best first, then worse for good
    fs = [f for f in plateaus(per_epoch(eval_loss=v)) if f.metric == "eval_loss"]
    assert not warned(fs)


# -- edges --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    {"train_loss": []}, {"train_loss": [1.0] * 3}, {"train_loss": [np.nan] * 30},
    {"train_loss": [0.5] * 40}, {"val_acc": [0.5] * 2},
    {"train_loss": list(np.linspace(2, 1, 20)) + [np.nan] * 5},
])
def test_short_nan_and_constant_inputs_never_crash_or_warn(data):
    rep = td.diagnose(td.RunHistory.from_dict(data), only=["plateau"])
    assert not [f for f in rep.findings if f.code == "internal_error"]
    assert not warned(rep.get("plateau")) or data == {"train_loss": [0.5] * 40}
