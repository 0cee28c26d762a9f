"""Curve builders shared by the detector tests (fixed seeds, realistic noise)."""

from types import SimpleNamespace

import numpy as np
import pytest

import traindoctor as td


def decay(n, start=2.3, floor=0.2, tau=None, noise=0.02, seed=0):
    """A healthy exponential decay with multiplicative-looking noise."""
    r = np.random.default_rng(seed)
    tau = tau or n / 5
    t = np.arange(n)
    clean = floor + (start - floor) * np.exp(-t / tau)
    return clean + noise * clean * r.standard_normal(n) * 2


def finetune(n, start=1.0, floor=0.3, seed=0, noise=0.015):
    """Quick drop in the first 10%, then a slow decline: a typical fine-tuning curve."""
    r = np.random.default_rng(seed)
    t = np.arange(n)
    clean = floor + (start - floor) * np.exp(-t / (n / 20)) - 0.05 * floor * t / n
    return clean + noise * r.standard_normal(n)


def healthy_run(n_epochs=40, seed=0, steps_per_epoch=20):
    """Train loss per step, val loss per epoch, both decaying, val slightly above train."""
    r = np.random.default_rng(seed)
    n = n_epochs * steps_per_epoch
    steps = np.arange(n)
    tr = decay(n, seed=seed, tau=n / 5)
    ep_steps = steps[steps_per_epoch - 1::steps_per_epoch]
    val = 0.25 + 2.05 * np.exp(-ep_steps / (n / 5)) + 0.01 * r.standard_normal(n_epochs)
    return td.RunHistory({
        "train_loss": td.Series("train_loss", steps, tr, steps // steps_per_epoch),
        "val_loss": td.Series("val_loss", ep_steps, val, np.arange(n_epochs)),
    })


def warnings(report):
    return [f for f in report.findings if f.severity.rank >= td.Severity.WARNING.rank]


@pytest.fixture
def curves():
    return SimpleNamespace(decay=decay, finetune=finetune, healthy_run=healthy_run, warnings=warnings)
