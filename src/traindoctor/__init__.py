"""traindoctor: what is wrong with your training run, with evidence from the run, and what to change."""

from __future__ import annotations

__version__ = "0.2.0"

# Loaded here, under another name, so that the function `compare` below keeps its name: the first
# import of a submodule binds it on the package, which used to replace td.compare by the module
# after its first call ("'module' object is not callable" on the second).
from . import compare as _compare_module
from .engine import diagnose
from .errors import InputError, MissingExtraError, TraindoctorError
from .finding import Finding, Fix, Report, Severity, Skip
from .history import Checkpoint, RunHistory, Series
from .readers import load, load_runs

__all__ = [
    "__version__",
    "diagnose",
    "probe",
    "compare",
    "watch",
    "load",
    "load_runs",
    "Finding",
    "Fix",
    "Report",
    "Severity",
    "Skip",
    "Series",
    "RunHistory",
    "Checkpoint",
    "TraindoctorError",
    "InputError",
    "MissingExtraError",
]


def compare(paths_or_runs, **kwargs):
    """Several runs side by side: best and final values, findings, hparams that differ."""
    return _compare_module.compare(paths_or_runs, **kwargs)


def probe(model, batch, **kwargs):
    """Short, side-effect-free experiments on a live PyTorch model and one batch (needs torch)."""
    from .errors import require

    require("torch", "torch", "traindoctor.probe")
    from .probes import probe as _probe

    return _probe(model, batch, **kwargs)


def watch(model, optimizer=None, **kwargs):
    """Record a live PyTorch training loop, warn on each new finding, report at the end (needs torch).

    with td.watch(model, optimizer, logdir="runs/exp1") as w: ...; w.step(loss=loss, outputs=out, targets=y)
    Options: on_finding="log" | "raise" | "stop", stop_on, every, deep_every, depth, nan_guard,
    mirror (a SummaryWriter or logger), everything=True (all statistics every step).
    """
    from .errors import require

    require("torch", "torch", "traindoctor.watch")
    from .integrations import watch as _watch

    return _watch(model, optimizer, **kwargs)
