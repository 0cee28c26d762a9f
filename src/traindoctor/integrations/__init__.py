"""Watching a live run: the framework-free recorder, `traindoctor.watch` for plain PyTorch loops,
and thin adapters for Lightning (`integrations.lightning.DoctorCallback`) and the HF Trainer
(`integrations.transformers.DoctorCallback`). torch, lightning and transformers are imported only
when one of these is used, so `import traindoctor` needs numpy alone.
"""

from __future__ import annotations

__all__ = ["watch", "Watch", "TrainingFault"]


def watch(model, optimizer=None, **kwargs):
    """Record a PyTorch training loop; see `traindoctor.integrations.core.Watch` for the options."""
    from .core import Watch

    return Watch(model, optimizer, **kwargs)


def __getattr__(name):
    if name in ("Watch", "TrainingFault"):
        from . import core as _w

        return getattr(_w, name)
    raise AttributeError(name)
