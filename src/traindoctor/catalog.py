"""What every finding code means, how it is found, what fixes it, and sources (`explain`).

One plain dict per code. `traindoctor list` prints the codes; `traindoctor explain CODE` prints
the entry plus the detector's current keyword defaults (its thresholds), read from the registry
so the numbers shown are the ones the code uses, never a copy that can drift.
"""

from __future__ import annotations

import textwrap

__all__ = ["CATALOG", "FAMILIES", "entry", "explain_text", "explain_command"]

# Sources quoted by several entries.
_SMITH = "Smith 2017, 'Cyclical Learning Rates for Training Neural Networks' (LR range test), arXiv:1506.01186"
_PRECHELT = "Prechelt 1998, 'Early Stopping - But When?', Neural Networks: Tricks of the Trade"
_ES_DOCS = "Lightning EarlyStopping docs: https://lightning.ai/docs/pytorch/stable/common/early_stopping.html"
_KARPATHY = "Karpathy 2019, 'A Recipe for Training Neural Networks': https://karpathy.github.io/2019/04/25/recipe/"
_GLOROT = "Glorot & Bengio 2010, 'Understanding the difficulty of training deep feedforward neural networks'"
_PASCANU = "Pascanu, Mikolov & Bengio 2013, 'On the difficulty of training recurrent neural networks' (gradient clipping)"
_HE = "He et al. 2015, 'Delving Deep into Rectifiers' (Kaiming initialisation), arXiv:1502.01852"
_GOODFELLOW = "Goodfellow, Bengio & Courville 2016, 'Deep Learning', ch. 7 (regularisation) and 8 (optimisation)"
_CS231N = "CS231n notes, 'Neural Networks Part 3: babysitting the learning process': https://cs231n.github.io/neural-networks-3/"
_ZHANG = "Zhang et al. 2017, 'Understanding deep learning requires rethinking generalization', arXiv:1611.03530"
_ROUSSEEUW = "Rousseeuw & Croux 1993, 'Alternatives to the median absolute deviation' (robust noise scale)"
_GOYAL = "Goyal et al. 2017, 'Accurate, Large Minibatch SGD' (LR warmup and scaling), arXiv:1706.02677"
_CE_DOCS = "PyTorch CrossEntropyLoss docs (expects raw logits): https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html"
_ANOMALY = "PyTorch autograd anomaly detection: https://pytorch.org/docs/stable/autograd.html#anomaly-detection"
_AMP = "PyTorch AMP docs (GradScaler skips inf/NaN steps): https://pytorch.org/docs/stable/amp.html"
_PLATEAU_DOCS = "PyTorch ReduceLROnPlateau docs: https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html"
_SKL_WEIGHTS = "scikit-learn compute_class_weight('balanced'): n_samples / (n_classes * count_c)"
_LIN = "Lin et al. 2017, 'Focal Loss for Dense Object Detection', arXiv:1708.02002"
_LU = "Lu et al. 2019, 'Dying ReLU and Initialization: Theory and Numerical Examples', arXiv:1903.06733"
_LECUN = "LeCun et al. 1998, 'Efficient BackProp' (normalise inputs to zero mean, unit variance)"
_DIOU = "Zheng et al. 2020, 'Distance-IoU Loss', arXiv:1911.08287; Rezatofighi et al. 2019 (GIoU), arXiv:1902.09630"

FAMILIES = {
    "curve": "found in the metric histories of a run (diagnose)",
    "probe": "found by short experiments on a live model and one batch (probe)",
    "meta": "about traindoctor itself",
}


def _e(family, summary, meaning, detection, fixes, sources):
    return {"family": family, "summary": summary, "meaning": meaning, "detection": detection,
            "fixes": list(fixes), "sources": list(sources)}


CATALOG: dict[str, dict] = {
    # -- curve detectors ----------------------------------------------------------------
    "overfitting": _e(
        "curve", "validation got worse (or stopped improving) while training kept improving",
        "The model is fitting the training set more closely at the cost of unseen data: it has "
        "started to memorise. The checkpoint from the best validation epoch is better than the last one.",
        "Finds the best validation value, then checks that validation has since risen by more than "
        "its own noise (or stalled) while the training loss kept falling. Replays Lightning's "
        "EarlyStopping (min_delta=0) for patience 3/5/10/15 to show where it would have stopped, and "
        "names the checkpoint on disk nearest before the best epoch.",
        ["Use the checkpoint from the best epoch, not the last one",
         "Add early stopping on the validation metric (patience 3-10 checks)",
         "Regularise: weight decay, dropout, data augmentation, or a smaller model",
         "Get more training data"],
        [_PRECHELT, _ES_DOCS, _GOODFELLOW],
    ),
    "train_val_gap": _e(
        "curve", "validation loss sits far above training loss",
        "A large, persistent gap between training and validation loss means the model generalises "
        "poorly, or that train and validation data differ (distribution shift, augmentation only on "
        "one side, dropout/batch-norm mode mistakes).",
        "Compares training and validation loss at the same epochs/steps; reports the ratio and the "
        "difference at the end of the run when they exceed the thresholds.",
        ["Regularise (weight decay, dropout, augmentation)",
         "Check that validation data is preprocessed exactly like training data",
         "Check model.eval() / model.train() are called in the right places"],
        [_GOODFELLOW, _KARPATHY],
    ),
    "plateau": _e(
        "curve", "no meaningful improvement since a step",
        "The loss has stopped going down: the optimiser is stuck (learning rate too low or too high "
        "to make progress), the model has reached its capacity, or it has converged.",
        "Measures the best value in a trailing window against the best before it; an improvement "
        "smaller than the series' own noise (robust MAD of differences) and a relative threshold "
        "counts as none.",
        ["Lower the LR when progress stops (ReduceLROnPlateau) or try a higher LR with warmup",
         "Run an LR range test to find a working LR",
         "If the model is small for the task, add capacity"],
        [_SMITH, _PLATEAU_DOCS, _ROUSSEEUW],
    ),
    "loss_constant": _e(
        "curve", "a series is exactly or almost exactly constant",
        "A loss that does not move at all means nothing is being learned: zero gradients (a "
        "detached graph, a saturated activation, a loss with no slope at this point), an optimizer "
        "that is never stepped, or a learning rate of zero.",
        "Relative spread (max - min over |mean|) of the series below a tiny tolerance across enough points.",
        ["Check that optimizer.step() is called and the LR is not zero",
         "Check gradients reach the parameters (run `traindoctor probe`)",
         "Check the loss has a slope at this operating point (e.g. GIoU on non-overlapping boxes)"],
        [_KARPATHY, _DIOU],
    ),
    "divergence": _e(
        "curve", "the loss trends upwards or explodes",
        "Training is unstable: the steps are too large for the curvature of the loss, so the loss "
        "grows instead of shrinking. Usually the learning rate is too high, or there is no warmup "
        "or gradient clipping.",
        "A rising robust trend over the end of the run, or a final loss far above the best, relative "
        "to the series' own noise.",
        ["Lower the learning rate (try 3-10x lower)", "Add LR warmup",
         "Clip gradients: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)"],
        [_SMITH, _PASCANU, _GOYAL],
    ),
    "nan_loss": _e(
        "curve", "a loss became NaN or infinite",
        "Once a loss is NaN every later update is NaN too: the weights are ruined. Causes: LR too "
        "high, log(0) or division by zero in the loss, fp16 overflow, bad inputs.",
        "The first step at which a loss series is not finite.",
        ["Lower the LR and clip gradients", "Guard the loss: clamp before log, add eps to divisions",
         "Use torch.autograd.set_detect_anomaly(True) for one run to find the operation",
         "With fp16, use torch.amp.GradScaler or bf16"],
        [_ANOMALY, _AMP, _PASCANU],
    ),
    "loss_spikes": _e(
        "curve", "sudden short jumps in the loss",
        "Isolated batches produce huge losses: outliers or mislabeled samples, a too-high LR that "
        "occasionally overshoots, or Adam's epsilon/second-moment instability.",
        "Points whose robust z-score (distance from a rolling median in units of MAD noise) exceeds a threshold.",
        ["Clip gradients", "Inspect the batches at the spike steps for bad data",
         "Lower the LR or raise Adam's eps"],
        [_ROUSSEEUW, _PASCANU],
    ),
    "oscillation": _e(
        "curve", "step-to-step noise large against the trend",
        "The loss moves up and down far more than it moves down overall: the LR is high for the "
        "batch size, or the batch is too small for a stable gradient estimate.",
        "Ratio of the point-to-point noise (MAD of differences) to the overall trend.",
        ["Lower the LR or raise the batch size", "Use LR decay"],
        [_ROUSSEEUW, _GOYAL],
    ),
    "slow_convergence": _e(
        "curve", "still improving steeply when the run ended",
        "Training was stopped while the loss was still going down fast: the run was too short or "
        "the LR too low.",
        "The slope over the last part of the run, relative to the total improvement, is above a threshold.",
        ["Train for more epochs", "Raise the LR (an LR range test tells how far)"],
        [_SMITH, _KARPATHY],
    ),
    "underfitting": _e(
        "curve", "training loss stays high",
        "The model cannot even fit its training data: it lacks capacity, the LR is wrong, or the "
        "features/labels carry little signal (shuffled labels end here too).",
        "Final training loss compared with the chance-level loss (log of the class count when known) "
        "and with its own start.",
        ["Check the model can overfit one batch (`traindoctor probe`)", "Add capacity",
         "Tune the LR with an LR range test", "Check labels are aligned with inputs"],
        [_KARPATHY, _ZHANG],
    ),
    "lr_schedule": _e(
        "curve", "what the learning-rate changes did to the loss",
        "Relates each LR change (decay, warmup end, restart) to how the loss responded, e.g. the "
        "loss only improves after the LR was cut, so the initial LR was too high.",
        "Detects steps where the logged LR changes and compares the loss trend before and after.",
        ["Start from the LR that worked", "Use warmup or a schedule that decays earlier"],
        [_SMITH, _PLATEAU_DOCS, _GOYAL],
    ),
    "metric_disagreement": _e(
        "curve", "validation loss and accuracy tell different stories",
        "Loss rising while accuracy rises means growing over-confidence on the mistakes; a loss near "
        "0 with accuracy at chance means the loss is not measuring the task (wrong targets, leak).",
        "Compares the trends of val loss and val accuracy, and accuracy with chance level.",
        ["Pick the checkpoint on the metric you care about",
         "Check the loss and the metric use the same targets"],
        [_GOODFELLOW],
    ),
    "impossible_value": _e(
        "curve", "a value its metric cannot take",
        "A negative cross-entropy or MSE, or an accuracy outside [0, 1], means the loss or the "
        "targets are wrong (e.g. NLLLoss on probabilities instead of log-probabilities).",
        "Compares each series with the range its role allows.",
        ["Check the loss function matches the model's outputs (logits vs probabilities)",
         "Check the metric's normalisation"],
        [_CE_DOCS],
    ),
    "throughput": _e(
        "curve", "step time, ETA and stalls",
        "Slow or stalling steps waste time: data loading bottlenecks, evaluation inside the loop, "
        "checkpoint saving, or a machine under load.",
        "Wall-clock time per step from the logs' timestamps; stalls are steps far slower than the median.",
        ["Raise DataLoader num_workers / pin_memory", "Evaluate and checkpoint less often"],
        ["PyTorch performance tuning guide: https://pytorch.org/tutorials/recipes/recipes/tuning_guide.html"],
    ),
    # -- probes ---------------------------------------------------------------------------
    "dead_gradients": _e(
        "probe", "parameters with no or all-zero gradient",
        "Named parameters get no gradient: their module is disconnected from the loss (unused "
        "output, .detach(), torch.no_grad, a non-differentiable op), so they never learn.",
        "One forward/backward on the batch; lists parameters whose .grad is None or exactly zero.",
        ["Follow the module's output to the loss and remove the detach/no_grad/argmax on the way",
         "Delete the module if it is not needed"],
        [_KARPATHY],
    ),
    "vanishing_gradients": _e(
        "probe", "gradients shrink to almost nothing in early layers",
        "Early layers learn orders of magnitude slower than late ones: saturating activations, "
        "deep stacks without normalisation or residual connections, bad initialisation.",
        "Ratio of per-layer gradient norms (first vs last layers) below a threshold.",
        ["Use ReLU/GELU instead of sigmoid/tanh in hidden layers", "Add normalisation or residual connections",
         "Use Kaiming/Xavier initialisation"],
        [_GLOROT, _HE],
    ),
    "exploding_gradients": _e(
        "probe", "gradient norm far too large",
        "Huge gradients make single steps destroy the weights; training diverges or turns NaN.",
        "Total gradient norm above a threshold, or growing layer by layer.",
        ["Clip gradients: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)", "Lower the LR",
         "Check the loss scale (sum vs mean reduction)"],
        [_PASCANU],
    ),
    "lr_too_high": _e(
        "probe", "the loss rises after one step on the same batch",
        "A single optimizer step on a batch should lower that batch's loss; if it rises, the LR is "
        "past the point where the loss diverges.",
        "Takes one step on a copy of the state, re-evaluates the same batch, restores everything; an "
        "LR range test locates where the loss starts to diverge.",
        ["Lower the LR below the divergence point of the LR range test (often 10x lower)", "Add warmup"],
        [_SMITH],
    ),
    "lr_too_low": _e(
        "probe", "a step barely changes the loss",
        "Each update is so small that training will take far longer than needed.",
        "Relative loss change after a few steps on the same batch, and the LR range test's steepest-descent LR.",
        ["Raise the LR toward the LR range test's suggestion"],
        [_SMITH],
    ),
    "cannot_overfit_batch": _e(
        "probe", "the model cannot memorise one batch",
        "Any working model should drive the loss on a single small batch near zero; if it cannot, "
        "there is a bug (wrong loss, wrong targets, frozen parameters, broken model).",
        "Trains on a few examples of the batch (at most 8, and 128 predictions) with a fresh Adam for up "
        "to a fixed number of steps, then restores the weights; checks the loss falls 10x from its start.",
        ["Check loss/target shapes and dtypes", "Check all parameters are in the optimizer",
         "Remove regularisation and augmentation while debugging"],
        [_KARPATHY],
    ),
    "prediction_collapse": _e(
        "probe", "outputs barely vary across the batch",
        "The model predicts almost the same output for every input (a mean or a corner): a degenerate "
        "solution that minimises the average loss.",
        "Ratio of the output spread across the batch to the target spread below a threshold.",
        ["Check the inputs reach the head (input_independent_output)",
         "Use a loss with gradient at this point (MSE/CIoU instead of L1/GIoU)",
         "Initialise the output bias to the target mean"],
        [_DIOU, _KARPATHY],
    ),
    "input_independent_output": _e(
        "probe", "outputs do not change when the inputs do",
        "The model ignores its inputs: a broken data path, an input multiplied by zero, a bottleneck "
        "that saturates.",
        "Compares outputs on the real batch and on zeroed/shuffled inputs.",
        ["Trace the input through forward() and check it is used"],
        [_KARPATHY],
    ),
    "saturated_activations": _e(
        "probe", "sigmoid/tanh outputs stuck at their limits",
        "Saturated units pass almost no gradient, so the layers before them stop learning.",
        "Share of sigmoid/tanh outputs within a small distance of their limits.",
        ["Normalise inputs", "Lower the init scale", "Use ReLU/GELU in hidden layers"],
        [_GLOROT],
    ),
    "dead_relu": _e(
        "probe", "ReLU units that never fire",
        "A unit whose input is negative for every sample outputs 0 and gets no gradient: it is dead for good.",
        "Share of ReLU units with zero output for the whole batch.",
        ["Lower the LR", "Use LeakyReLU/GELU", "Use Kaiming initialisation"],
        [_LU, _HE],
    ),
    "init_loss_mismatch": _e(
        "probe", "loss at start far from chance level",
        "At initialisation a classifier should give about log(number of classes); far above means "
        "over-confident initial outputs (large init scale, a bias), far below suggests a leak.",
        "Initial loss against log(C) for C classes.",
        ["Initialise the last layer with small weights and a bias matching the class frequencies"],
        [_KARPATHY],
    ),
    "class_imbalance": _e(
        "probe", "some classes are far rarer than others",
        "The model can score well by predicting the majority class; the loss gives the rare classes little weight.",
        "Class frequencies in the targets; weights computed as n_samples / (n_classes * count_c).",
        ["Pass the computed weights to the loss (CrossEntropyLoss(weight=...))",
         "Resample (WeightedRandomSampler)", "Use focal loss"],
        [_SKL_WEIGHTS, _LIN],
    ),
    "output_range_mismatch": _e(
        "probe", "targets outside what the output layer can produce",
        "A sigmoid head cannot reach targets outside [0, 1], tanh outside [-1, 1]: the loss can never reach zero.",
        "Compares the target range with the output activation's range.",
        ["Rescale the targets or change the output activation"],
        [_KARPATHY],
    ),
    "double_softmax": _e(
        "probe", "softmax applied before a loss that applies it again",
        "CrossEntropyLoss applies log-softmax itself; feeding it probabilities squashes the gradients.",
        "Outputs that are non-negative and sum to 1 per row, passed to a logits loss.",
        ["Remove the final softmax from the model; apply it only at inference"],
        [_CE_DOCS],
    ),
    "unnormalized_inputs": _e(
        "probe", "input features on very different or large scales",
        "Badly scaled inputs make the loss surface ill-conditioned and slow or destabilise training.",
        "Per-feature mean and standard deviation of the batch against thresholds.",
        ["Standardise inputs (zero mean, unit variance) with statistics from the training set"],
        [_LECUN],
    ),
    "nan_inputs": _e(
        "probe", "NaN or infinite values in the batch",
        "One NaN input makes the loss NaN.",
        "Counts non-finite values in inputs and targets.",
        ["Clean or impute the data; assert torch.isfinite(x).all() in the data pipeline"],
        [_ANOMALY],
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
        [_KARPATHY],
    ),
    "weak_loss_gradient": _e(
        "probe", "the loss gives little or no gradient at this operating point",
        "Some losses are flat where the model starts: GIoU on non-overlapping boxes, a piecewise "
        "loss whose slope drops past its threshold. The loss then barely moves.",
        "Gradient of the loss with respect to the outputs at the current predictions.",
        ["Use a loss with gradient everywhere (DIoU/CIoU plus L1)", "Check piecewise losses are continuous"],
        [_DIOU],
    ),
    "weight_update_ratio": _e(
        "probe", "updates far too large or small relative to the weights",
        "An update/weight norm ratio near 1e-3 is healthy; far above, the LR is too high; far below, too low.",
        "Norm of one optimizer step divided by the norm of the weights, per parameter.",
        ["Adjust the LR toward a ratio around 1e-3"],
        [_CS231N],
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
