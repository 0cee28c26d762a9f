"""What every finding code means, how it is found, what fixes it, and sources (`explain`).

One plain dict per code: a curve check's entry is its module's DOCS, kept beside the check (a
check's doc sits with the check); probe and meta entries are here. `traindoctor list` prints the codes; `traindoctor explain CODE` prints
the entry plus the detector's current keyword defaults (its thresholds), read from the registry
so the numbers shown are the ones the code uses, never a copy that can drift.
"""

from __future__ import annotations

import textwrap

from .detectors._sources import (
    ANOMALY,
    CE_DOCS,
    CS231N,
    DIOU,
    GLOROT,
    HE,
    KARPATHY,
    LECUN,
    LIN,
    LU,
    PASCANU,
    SKL_WEIGHTS,
    SMITH,
)

__all__ = ["CATALOG", "FAMILIES", "entry", "explain_text", "explain_command"]


FAMILIES = {
    "curve": "found in the metric histories of a run (diagnose)",
    "probe": "found by short experiments on a live model and one batch (probe)",
    "meta": "about traindoctor itself",
}


def _e(family, summary, meaning, detection, fixes, sources):
    return {"family": family, "summary": summary, "meaning": meaning, "detection": detection,
            "fixes": list(fixes), "sources": list(sources)}


_OTHER: dict[str, dict] = {
    # -- probes ---------------------------------------------------------------------------
    "dead_gradients": _e(
        "probe", "parameters with no or all-zero gradient",
        "Named parameters get no gradient: their module is disconnected from the loss (unused "
        "output, .detach(), torch.no_grad, a non-differentiable op), so they never learn.",
        "One forward/backward on the batch; lists parameters whose .grad is None or exactly zero.",
        ["Follow the module's output to the loss and remove the detach/no_grad/argmax on the way",
         "Delete the module if it is not needed"],
        [KARPATHY],
    ),
    "vanishing_gradients": _e(
        "probe", "gradients shrink to almost nothing in early layers",
        "Early layers learn orders of magnitude slower than late ones: saturating activations, "
        "deep stacks without normalisation or residual connections, bad initialisation.",
        "Ratio of per-layer gradient norms (first vs last layers) below a threshold.",
        ["Use ReLU/GELU instead of sigmoid/tanh in hidden layers", "Add normalisation or residual connections",
         "Use Kaiming/Xavier initialisation"],
        [GLOROT, HE],
    ),
    "exploding_gradients": _e(
        "probe", "gradient norm far too large",
        "Huge gradients make single steps destroy the weights; training diverges or turns NaN.",
        "Total gradient norm above a threshold, or growing layer by layer.",
        ["Clip gradients: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)", "Lower the LR",
         "Check the loss scale (sum vs mean reduction)"],
        [PASCANU],
    ),
    "lr_too_high": _e(
        "probe", "the loss rises after one step on the same batch",
        "A single optimizer step on a batch should lower that batch's loss; if it rises, the LR is "
        "past the point where the loss diverges.",
        "Takes one step on a copy of the state, re-evaluates the same batch, restores everything; an "
        "LR range test locates where the loss starts to diverge.",
        ["Lower the LR below the divergence point of the LR range test (often 10x lower)", "Add warmup"],
        [SMITH],
    ),
    "lr_too_low": _e(
        "probe", "a step barely changes the loss",
        "Each update is so small that training will take far longer than needed.",
        "Relative loss change after a few steps on the same batch, and the LR range test's steepest-descent LR.",
        ["Raise the LR toward the LR range test's suggestion"],
        [SMITH],
    ),
    "cannot_overfit_batch": _e(
        "probe", "the model cannot memorise one batch",
        "Any working model should drive the loss on a single small batch near zero; if it cannot, "
        "there is a bug (wrong loss, wrong targets, frozen parameters, broken model).",
        "Trains on a few examples of the batch (at most 8, and 128 predictions) with a fresh Adam for up "
        "to a fixed number of steps, then restores the weights; checks the loss falls 10x from its start.",
        ["Check loss/target shapes and dtypes", "Check all parameters are in the optimizer",
         "Remove regularisation and augmentation while debugging"],
        [KARPATHY],
    ),
    "prediction_collapse": _e(
        "probe", "outputs barely vary across the batch",
        "The model predicts almost the same output for every input (a mean or a corner): a degenerate "
        "solution that minimises the average loss.",
        "Ratio of the output spread across the batch to the target spread below a threshold.",
        ["Check the inputs reach the head (input_independent_output)",
         "Use a loss with gradient at this point (MSE/CIoU instead of L1/GIoU)",
         "Initialise the output bias to the target mean"],
        [DIOU, KARPATHY],
    ),
    "input_independent_output": _e(
        "probe", "outputs do not change when the inputs do",
        "The model ignores its inputs: a broken data path, an input multiplied by zero, a bottleneck "
        "that saturates.",
        "Compares outputs on the real batch and on zeroed/shuffled inputs.",
        ["Trace the input through forward() and check it is used"],
        [KARPATHY],
    ),
    "saturated_activations": _e(
        "probe", "sigmoid/tanh outputs stuck at their limits",
        "Saturated units pass almost no gradient, so the layers before them stop learning.",
        "Share of sigmoid/tanh outputs within a small distance of their limits.",
        ["Normalise inputs", "Lower the init scale", "Use ReLU/GELU in hidden layers"],
        [GLOROT],
    ),
    "dead_relu": _e(
        "probe", "ReLU units that never fire",
        "A unit whose input is negative for every sample outputs 0 and gets no gradient: it is dead for good.",
        "Share of ReLU units with zero output for the whole batch.",
        ["Lower the LR", "Use LeakyReLU/GELU", "Use Kaiming initialisation"],
        [LU, HE],
    ),
    "init_loss_mismatch": _e(
        "probe", "loss at start far from chance level",
        "At initialisation a classifier should give about log(number of classes); far above means "
        "over-confident initial outputs (large init scale, a bias), far below suggests a leak.",
        "Initial loss against log(C) for C classes.",
        ["Initialise the last layer with small weights and a bias matching the class frequencies"],
        [KARPATHY],
    ),
    "class_imbalance": _e(
        "probe", "some classes are far rarer than others",
        "The model can score well by predicting the majority class; the loss gives the rare classes little weight.",
        "Class frequencies in the targets; weights computed as n_samples / (n_classes * count_c).",
        ["Pass the computed weights to the loss (CrossEntropyLoss(weight=...))",
         "Resample (WeightedRandomSampler)", "Use focal loss"],
        [SKL_WEIGHTS, LIN],
    ),
    "output_range_mismatch": _e(
        "probe", "targets outside what the output layer can produce",
        "A sigmoid head cannot reach targets outside [0, 1], tanh outside [-1, 1]: the loss can never reach zero.",
        "Compares the target range with the output activation's range.",
        ["Rescale the targets or change the output activation"],
        [KARPATHY],
    ),
    "double_softmax": _e(
        "probe", "softmax applied before a loss that applies it again",
        "CrossEntropyLoss applies log-softmax itself; feeding it probabilities squashes the gradients.",
        "Outputs that are non-negative and sum to 1 per row, passed to a logits loss.",
        ["Remove the final softmax from the model; apply it only at inference"],
        [CE_DOCS],
    ),
    "unnormalized_inputs": _e(
        "probe", "input features on very different or large scales",
        "Badly scaled inputs make the loss surface ill-conditioned and slow or destabilise training.",
        "Per-feature mean and standard deviation of the batch against thresholds.",
        ["Standardise inputs (zero mean, unit variance) with statistics from the training set"],
        [LECUN],
    ),
    "nan_inputs": _e(
        "probe", "NaN or infinite values in the batch",
        "One NaN input makes the loss NaN.",
        "Counts non-finite values in inputs and targets.",
        ["Clean or impute the data; assert torch.isfinite(x).all() in the data pipeline"],
        [ANOMALY],
    ),
    "ignored_labels": _e(
        "probe", "every label in the batch is ignored, or most are padding",
        "Positions labelled with the ignore index (-100) carry no loss. With none left the loss is 0/0 "
        "= NaN (or 0) and the step gives no signal; with more than 90% ignored and mostly padding, "
        "most of the batch's compute is discarded.",
        "Counts labels equal to the loss's ignore_index; padding is where attention_mask is 0 (or "
        "runs at the row ends when there is no mask). Deliberate masking inside the sequence (masked "
        "LM, prompt tokens) is not flagged unless every label is ignored.",
        ["Drop examples left without labelled tokens (check max_length against prompt + answer)",
         "Pad to the longest sequence per batch; group by length or pack sequences"],
        ["PyTorch CrossEntropyLoss docs (ignore_index; mean over non-ignored targets): "
         "https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html",
         "HF docs, data collators and padding: https://huggingface.co/docs/transformers/main_classes/data_collator"],
    ),
    "params_not_in_optimizer": _e(
        "probe", "trainable parameters the optimizer does not update",
        "Parameters with requires_grad=True that are in no optimizer param group never change "
        "(e.g. a module created after the optimizer).",
        "Compares model.parameters() with the optimizer's param groups.",
        ["Create the optimizer after the whole model is built, from model.parameters()"],
        [KARPATHY],
    ),
    "weak_loss_gradient": _e(
        "probe", "the loss gives little or no gradient at this operating point",
        "Some losses are flat where the model starts: GIoU on non-overlapping boxes, a piecewise "
        "loss whose slope drops past its threshold. The loss then barely moves.",
        "Gradient of the loss with respect to the outputs at the current predictions.",
        ["Use a loss with gradient everywhere (DIoU/CIoU plus L1)", "Check piecewise losses are continuous"],
        [DIOU],
    ),
    "weight_update_ratio": _e(
        "probe", "updates far too large or small relative to the weights",
        "An update/weight norm ratio near 1e-3 is healthy; far above, the LR is too high; far below, too low.",
        "Norm of one optimizer step divided by the norm of the weights, per parameter.",
        ["Adjust the LR toward a ratio around 1e-3"],
        [CS231N],
    ),
    # -- live (watch) ---------------------------------------------------------------------
    "rank_divergence": _e(
        "curve", "DDP ranks disagree: a NaN on one rank, losses or gradient norms apart, a stalled rank",
        "Under DDP every rank holds the same weights and, after the all-reduce, the same gradients. A NaN "
        "on one rank only is that rank's data or numerics (and it spreads to all through the all-reduce); "
        "gradient norms that differ mean the gradients are not averaged and the replicas drift; losses far "
        "apart mean the ranks see different data; a rank waiting much longer for data slows every rank.",
        "From the per-rank series `traindoctor.watch` gathers to rank 0 (rank/<r>/train_loss, grad_norm, "
        "data_time): the first step with a loss finite on some ranks and not others; medians over the last "
        "steps compared across ranks (loss ratio and gap against the step-to-step noise, relative gradient "
        "norm difference, data-wait time against the other ranks').",
        ["Check the batch the NaN rank had at that step for NaN/Inf",
         "Wrap the model in DDP before building the optimizer; use a DistributedSampler with set_epoch",
         "Give a stalling rank's DataLoader more workers, or check its node"],
        ["PyTorch DDP notes: https://pytorch.org/docs/stable/notes/ddp.html",
         "PyTorch DistributedSampler docs: https://pytorch.org/docs/stable/data.html#torch.utils.data.distributed.DistributedSampler"],
    ),
    # -- meta -----------------------------------------------------------------------------
    "internal_error": _e(
        "meta", "a check crashed (a traindoctor bug)",
        "One check raised an exception; its result is missing from the report, the others ran.",
        "The engine catches the exception and reports it with the file and line.",
        ["Report it with the run's logs if you can share them"],
        [],
    ),
}


def _curve_entries() -> dict[str, dict]:
    """The curve checks' documentation, kept beside each check as its module's DOCS."""
    import importlib
    import pkgutil

    from . import detectors

    out: dict[str, dict] = {}
    for info in sorted(pkgutil.iter_modules(detectors.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{detectors.__name__}.{info.name}")
        for code, doc in getattr(mod, "DOCS", {}).items():
            out[code] = _e("curve", doc["summary"], doc["meaning"], doc["detection"],
                           doc["fixes"], doc["sources"])
    return out


# Curve checks first (gathered from beside each check), then probes and meta entries.
CATALOG: dict[str, dict] = {**_curve_entries(), **_OTHER}


def entry(code: str) -> dict:
    """The catalog entry for a code, or a minimal one built from the registry for codes that a
    detector registers but the catalog does not know yet (so `explain` never lies or crashes)."""
    if code in CATALOG:
        return CATALOG[code]
    from .registry import get_check

    check = get_check(code)
    if check is None:
        from .errors import InputError

        raise InputError(None, f"unknown finding code {code!r}; run `traindoctor list` to see every code")
    family = "curve" if check.kind == "detector" else "probe"
    return _e(family, check.summary or "(no summary)", "", "", [], [])


def explain_text(code: str) -> str:
    e = entry(code)
    from .registry import get_check

    check = get_check(code)

    def wrap(text, indent="  "):
        return textwrap.fill(text, 96, initial_indent=indent, subsequent_indent=indent)

    lines = [f"{code}  ({e['family']}: {FAMILIES.get(e['family'], '')})", wrap(e["summary"], "")]
    if e["meaning"]:
        lines += ["", "What it means:", wrap(e["meaning"])]
    if e["detection"]:
        lines += ["", "How it is detected:", wrap(e["detection"])]
    if check is not None:
        defaults = check.defaults
        lines += ["", "Current thresholds (keyword defaults of "
                  f"{check.func.__module__}.{check.func.__name__}):"]
        lines += [f"  {k} = {v!r}" for k, v in defaults.items()] or ["  (none)"]
        if check.requires:
            req = [" or ".join(r) if isinstance(r, (tuple, list)) else r for r in check.requires]
            lines.append(f"  requires: {', '.join(req)}")
    if e["fixes"]:
        lines += ["", "Typical fixes:"] + [f"  {i}. {f}" for i, f in enumerate(e["fixes"], 1)]
    if e["sources"]:
        lines += ["", "Sources:"] + [f"  - {s}" for s in e["sources"]]
    return "\n".join(lines)


def explain_command(args) -> int:
    print(explain_text(args.code.strip()))
    return 0
