"""Live-model probes (need torch). Public entry point: probe(model, batch, ...).

probe() snapshots the model (parameters, buffers, .grad tensors, train/eval modes), the
optimizer (state, param groups) and the torch / numpy / Python RNG states, runs the checks against
one shared ProbeContext, and restores everything bit for bit, even when a check fails.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InputError, require
from ..finding import Finding, Fix, Report, Severity, Skip
from ..registry import probes as _registered
from . import activations, data, gradients, labels, loss, training  # noqa: F401  (registers the checks)
from ._context import ProbeContext, restore, snapshot, split_batch, to_device, unwrap

__all__ = ["probe", "DEFAULT_BUDGET", "DEFAULT_STEP_BUDGET", "ORDER"]

# With no budget= given the probe may take DEFAULT_BUDGET seconds or DEFAULT_STEP_BUDGET times
# its own base forward/backward (about one training step), whichever is longer: on a 17M-parameter
# language model every check fits in about 12 steps (benchmarks/probe.py), and a machine that is
# busy or slow slows the unit and the work alike. An explicit budget= is a hard limit in seconds.
DEFAULT_BUDGET = 10.0
DEFAULT_STEP_BUDGET = 20.0

# Ordered by value for the cost. Everything up to weight_update_ratio reads the one shared
# forward/backward (plus a forward or two; weight_update_ratio's step reuses the base gradient and
# adds one forward); then the multi-step experiments on a few examples: overfitting them (the most
# telling) before the LR sweep that lr_too_high and lr_too_low share (the least certain). A tight
# budget drops the tail first.
ORDER = (
    "nan_inputs", "ignored_labels", "dead_gradients", "vanishing_gradients", "exploding_gradients",
    "params_not_in_optimizer", "prediction_collapse", "input_independent_output",
    "saturated_activations", "dead_relu", "init_loss_mismatch", "class_imbalance",
    "output_range_mismatch", "double_softmax", "unnormalized_inputs", "weak_loss_gradient",
    "weight_update_ratio", "cannot_overfit_batch", "lr_too_high", "lr_too_low",
)


def probe(
    model,
    batch,
    *,
    loss_fn=None,
    optimizer=None,
    checks: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    budget: float | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> Report:
    """Run side-effect-free checks on `model` with one `batch`; returns a Report.

    batch: a tensor (no targets), an (inputs, targets) pair, or an HF-style dict with "labels"
    (and "attention_mask"). Models wrapped by DistributedDataParallel, DataParallel or
    torch.compile are probed through the module they wrap.
    checks / skip: finding codes to run / leave out. budget: seconds (default: 10 s or 20
    training-step equivalents of this model, whichever is longer).
    params: keyword overrides by code, e.g. {"dead_relu": {"max_dead_fraction": 0.8}}.
    """
    torch = require("torch", "torch", "traindoctor.probe")
    if not isinstance(model, torch.nn.Module):
        raise InputError(None, f"probe needs a torch.nn.Module as model; got {type(model).__name__}")
    available = {c.code: c for c in _registered()}
    chosen = list(checks) if checks is not None else [c for c in ORDER if c in available]
    chosen += [c for c in available if checks is None and c not in chosen]
    unknown = sorted(set(chosen) - set(available)) + sorted(set(skip or ()) - set(available))
    if unknown:
        raise InputError(None, f"unknown probe check(s) {', '.join(unknown)}; "
                               f"known: {', '.join(c for c in ORDER if c in available)}")
    params = dict(params or {})
    bad = set(params) - set(available)
    if bad:
        raise InputError(None, f"params given for unknown probe check(s): {', '.join(sorted(bad))}")
    skip_set = set(skip or ())
    step_budget = DEFAULT_STEP_BUDGET if budget is None else None
    budget = DEFAULT_BUDGET if budget is None else float(budget)

    t0 = time.perf_counter()
    inputs, targets, kind = split_batch(batch)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    inputs, targets = to_device(inputs, device), to_device(targets, device)

    snap = snapshot(model, optimizer)  # the wrapper too: its own training flag is restored
    inner, wrappers = unwrap(model)
    ctx = ProbeContext(inner, inputs, targets, loss_fn, optimizer, device, t0 + budget, snap, kind,
                       step_budget=step_budget, start=t0)
    findings: list[Finding] = []
    skipped: list[Skip] = [Skip(c, "left out by skip=") for c in chosen if c in skip_set]
    timings: dict[str, float] = {}
    try:
        for code in [c for c in chosen if c not in skip_set]:
            check = available[code]
            if "blocked" in ctx.cache:  # nan_inputs or ignored_labels: the loss has no meaning
                by, why = ctx.cache["blocked"]
                skipped.append(Skip(code, f"not run: {why} (see {by})"))
                continue
            if ctx.time_left() <= 0:
                skipped.append(Skip(code, f"not run: the {max(ctx.deadline - t0, 0):.3g} s budget was spent"))
                continue
            start = time.perf_counter()
            try:
                for item in check.func(ctx, **params.get(code, {})) or ():
                    (skipped if isinstance(item, Skip) else findings).append(item)
            except InputError:
                raise
            except Exception as exc:  # one broken check must not hide the others
                findings.append(_internal_error(code, exc))
                ctx.reset_experiment()  # it may have stopped mid-experiment; the next check needs clean weights
            finally:
                timings[code] = round(time.perf_counter() - start, 4)
    finally:
        restore(snap, optimizer)
    findings = _one_per_code(findings)
    meta = {
        "seconds": round(time.perf_counter() - t0, 4),
        "budget": budget if step_budget is None else round(max(budget, ctx.deadline - t0), 4),
        "base_pass_seconds": round(ctx.cache["base"].seconds, 4) if "base" in ctx.cache else None,
        "device": str(device),
        "timings": timings,
        "loss": ctx.cache["base"].loss if "base" in ctx.cache else None,
        "loss_source": ctx.cache["base"].loss_source if "base" in ctx.cache else None,
    }
    source = {"path": None, "format": "probe", "model": type(inner).__name__, "wrappers": wrappers,
              "optimizer": type(optimizer).__name__ if optimizer is not None else None,
              "loss_fn": _name(loss_fn), "batch": kind}
    return Report(findings, skipped, source, "probe", meta)


def _name(obj) -> str | None:
    if obj is None:
        return None
    return getattr(obj, "__name__", None) or type(obj).__name__


def _one_per_code(findings: list[Finding]) -> list[Finding]:
    # Checks yield at most one finding per code by construction; keep the first should two slip.
    seen, out = set(), []
    for f in findings:
        if f.code not in seen or f.code == "internal_error":
            seen.add(f.code)
            out.append(f)
    return out


def _internal_error(code: str, exc: Exception) -> Finding:
    where = traceback.extract_tb(exc.__traceback__)[-1]
    msg = f"{type(exc).__name__}: {exc}"
    return Finding(
        code="internal_error",
        severity=Severity.WARNING,
        title=f"The {code} probe crashed, so its result is missing from this report",
        evidence={"check": code, "error": msg[:300],
                  "at": f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno}"},
        explanation="This is a bug in traindoctor or an unusual model; the other checks ran and "
                    "the model was restored.",
        fixes=(Fix("Report it with a small script that reproduces it", "so the check can be fixed"),),
    )

