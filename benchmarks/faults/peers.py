"""The PyPI tools a user might pick instead, run on the same zoo, their checks mapped onto our codes.

runmedic 0.1.1 and trainspotter 0.2.6 read logs (scored on the same three log files as
`diagnose`); torchtest2 0.1.0 checks a model at initialisation (scored beside `probe`). A peer
"detects" a fault when one of its checks that maps onto an expected code fires at warning or
above (runmedic: warning/critical; trainspotter: warning/error; torchtest2: WARN/FAIL); any such
check on a clean twin is a false alarm, mapped or not (the same rule as for traindoctor).
"""

from __future__ import annotations

import copy
import importlib.util

# check name -> our codes it claims to find (read from each tool's source and docs)
RUNMEDIC = {
    "non_finite": ("nan_loss",), "divergence": ("divergence",), "loss_spikes": ("loss_spikes",),
    "no_learning": ("plateau", "underfitting", "loss_constant"), "overfitting": ("overfitting", "train_val_gap"),
    "val_below_train": (), "grad_spikes": ("exploding_gradients",), "constant_lr_plateau": ("plateau",),
    "input_bound": ("throughput",), "slow_steps": ("throughput",), "slowdown": ("throughput",),
    "memory_growth": ("throughput",),
}
TRAINSPOTTER = {
    "plateau": ("plateau",), "overfitting": ("overfitting", "train_val_gap"), "grad_norm": ("exploding_gradients",),
    "lr_schedule": ("lr_schedule",), "divergence": ("divergence",), "throughput": ("throughput",),
    "loss_floor": (), "eval_noise": ("oscillation",), "spikes": ("loss_spikes",),
}
TORCHTEST2 = {
    "forward": (), "output_shape": (), "output_finite": ("nan_loss",), "output_range": ("output_range_mismatch",),
    "output_varies": ("prediction_collapse", "input_independent_output"), "eval_determinism": (),
    "loss": ("nan_loss",), "initial_loss": ("init_loss_mismatch",),
    "optimizer_coverage": ("params_not_in_optimizer",), "gradient_flow": ("dead_gradients",),
    "gradient_magnitude": ("exploding_gradients", "vanishing_gradients"),
    "params_change": ("dead_gradients", "lr_too_low"), "frozen_params": ("params_not_in_optimizer", "dead_gradients"),
    "input_dependency": ("input_independent_output",), "batch_independence": (),
    "overfit_batch": ("cannot_overfit_batch",), "gradcheck": (), "gpu": (),
}
# formats a peer has no reader for (it says so: trainspotter "cannot guess format ... pass --format
# explicitly (one of hf, csv, jsonl, wandb, lightning, tensorboard)" on a plain text log)
CANNOT_READ = {("trainspotter", "text"): "trainspotter 0.2.6 has no plain-text log reader"}
MAPS = {"runmedic": RUNMEDIC, "trainspotter": TRAINSPOTTER, "torchtest2": TORCHTEST2}


def available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def runmedic_checks(path) -> list[str]:
    """Names of runmedic's checks that fired at warning or critical on `path`."""
    from pathlib import Path

    from runmedic import loaders, roles
    from runmedic.checks import run_checks

    out = []
    for run in loaders.load(str(path)) if not Path(path).is_file() else loaders.load_file(Path(path)):
        for f in run_checks(run, roles.detect(run)):
            if f.severity in ("warning", "critical"):
                out.append(f.check.split(":")[0])
    return out


def trainspotter_checks(path) -> list[str]:
    from trainspotter import load_run, run_all

    return [f.detector for f in run_all(load_run(path)) if f.severity in ("warning", "error")]


def torchtest2_checks(model, optimizer, x, y, loss_fn) -> list[str]:
    """torchtest2 steps the optimizer; it gets a deep copy so the zoo's run is untouched."""
    import torchtest2

    model, optimizer = copy.deepcopy((model, optimizer))
    report = torchtest2.check_model(model, x, y, loss_fn=loss_fn, optimizer=optimizer, overfit_steps=50)
    return [r.name for r in report.results if r.status.name in ("WARN", "FAIL")]


def to_codes(peer: str, checks) -> list[str]:
    return sorted({c for name in checks for c in MAPS[peer].get(name, ())})
