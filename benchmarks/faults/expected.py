"""What a correct diagnosis says about each injected fault, per way in - written BEFORE any run.

Committed before the benchmark was first run (git history shows it), so the zoo scores the
detectors against what the fault is, not against what the detectors happen to say. A way in maps
to None when the fault cannot be seen from it (e.g. label noise at initialisation: one batch with
wrong labels looks like any other batch); such cells are reported as "not visible", not as misses.

Sources of the operators:
  DeepCrime: Humbatova, Jahangirova, Tonella, "DeepCrime: mutation testing of deep learning
    systems based on real faults", ISSTA 2021 (operators TCL, TUD, HLR, HNE, ACH, WCI, LCH,
    HPD/ORD, RAW, ...).
  Humbatova et al., "Taxonomy of real faults in deep learning systems", ICSE 2020 (categories
    Model/Training/Data; e.g. "missing preprocessing", "wrong tensor shape/detached", "missing
    zero_grad" under Training > Optimiser).
  seeds 001 (GIoU on disjoint boxes) and 002 (detached / disconnected modules) in shared/seeds.

`onset` says when the fault first becomes visible in the curves, for the watch latency:
  "start" - from the first step;  "val_best" - at the faulty run's best validation loss
  (after which validation gets worse);  None - no curve effect to time.
"""

# probe: traindoctor.probe at initialisation (one batch); watch: td.watch during training;
# logs: td.diagnose on the written logs (TensorBoard, Lightning CSV, text: the same codes).
CURVE_SLOW = ("slow_convergence", "underfitting", "plateau")
OVERFIT = ("overfitting", "train_val_gap")
UNSTABLE = ("divergence", "nan_loss", "loss_spikes", "oscillation")

EXPECTED = {
    # Data faults
    "label_noise": {  # DeepCrime TCL (change labels), 40 % of training labels shuffled
        "source": "DeepCrime TCL; Humbatova Data>Training data quality",
        "probe": None,  # one batch with some wrong labels looks like any batch
        "watch": OVERFIT, "logs": OVERFIT, "onset": "val_best"},
    "unbalanced": {  # DeepCrime TUD (unbalance train data): one class keeps 95 % of the rows
        "source": "DeepCrime TUD; seed 003",
        "probe": ("class_imbalance",),
        "watch": ("class_imbalance", "plateau", "underfitting", "metric_disagreement"),
        "logs": ("plateau", "underfitting", "metric_disagreement"), "onset": "start"},
    "no_input_norm": {  # Humbatova Data>Preprocessing: missing normalisation (raw feature scales)
        "source": "Humbatova Data>Preprocessing of training data (missing normalisation)",
        "probe": ("unnormalized_inputs",),
        "watch": ("unnormalized_inputs",) + UNSTABLE + CURVE_SLOW,
        "logs": UNSTABLE + CURVE_SLOW, "onset": "start"},
    # Training hyper-parameters
    "lr_high": {  # DeepCrime HLR (change learning rate), x300
        "source": "DeepCrime HLR; seed 002 (loss exploded after one step)",
        "probe": ("lr_too_high", "weight_update_ratio", "exploding_gradients"),
        "watch": ("lr_too_high", "weight_update_ratio", "exploding_gradients") + UNSTABLE + ("plateau", "underfitting", "loss_constant"),
        "logs": UNSTABLE + ("plateau", "underfitting", "loss_constant"), "onset": "start"},
    "lr_low": {  # DeepCrime HLR, /1000
        "source": "DeepCrime HLR",
        "probe": ("lr_too_low", "weight_update_ratio"),
        "watch": ("lr_too_low", "weight_update_ratio") + CURVE_SLOW + ("loss_constant",),
        "logs": CURVE_SLOW + ("loss_constant",), "onset": "start"},
    "few_epochs": {  # DeepCrime HNE (change epochs): 1/8 of the epochs
        "source": "DeepCrime HNE",
        "probe": None,  # the epoch count is not in the model or the batch
        "watch": ("slow_convergence", "underfitting"), "logs": ("slow_convergence", "underfitting"),
        "onset": "start"},
    "many_epochs": {  # DeepCrime HNE: 6x the epochs on a small training split
        "source": "DeepCrime HNE",
        "probe": None,
        "watch": OVERFIT, "logs": OVERFIT, "onset": "val_best"},
    "wrong_optimizer": {  # DeepCrime "change optimisation function": plain SGD at Adam's LR
        "source": "DeepCrime (change optimiser); Humbatova Training>Optimiser",
        "probe": ("lr_too_low", "weight_update_ratio"),
        "watch": ("lr_too_low", "weight_update_ratio") + CURVE_SLOW + ("loss_constant",),
        "logs": CURVE_SLOW + ("loss_constant",), "onset": "start"},
    "heavy_reg": {  # DeepCrime RAW/HPD: weight decay 1.0 and dropout 0.7
        "source": "DeepCrime (add weights regularisation / change dropout rate)",
        "probe": ("cannot_overfit_batch",),
        "watch": ("cannot_overfit_batch",) + CURVE_SLOW, "logs": CURVE_SLOW, "onset": "start"},
    "no_reg": {  # DeepCrime RAW (remove regularisation), small split, long run: memorises
        "source": "DeepCrime (remove weights regularisation / dropout); seed 004",
        "probe": None,
        "watch": OVERFIT, "logs": OVERFIT, "onset": "val_best"},
    "missing_zero_grad": {  # Humbatova Training>Optimiser: gradients accumulate across steps
        "source": "Humbatova Training>Optimiser (missing zero_grad)",
        "probe": None,  # the probe runs its own zero_grad: the fault is in the user's loop
        "watch": ("exploding_gradients", "weight_update_ratio") + UNSTABLE,
        "logs": UNSTABLE, "onset": "start"},
    # Model faults
    "softmax_ce": {  # DeepCrime ACH (change activation) on the head: softmax before CrossEntropyLoss
        "source": "DeepCrime ACH; Humbatova Model>Layers>Activation function",
        "probe": ("double_softmax",),
        "watch": ("double_softmax",) + CURVE_SLOW, "logs": CURVE_SLOW, "onset": "start"},
    "tanh_unscaled": {  # DeepCrime ACH: tanh head on targets in pixels (0..64)
        "source": "DeepCrime ACH; seed 002 (tanh saturation)",
        "probe": ("output_range_mismatch", "saturated_activations"),
        "watch": ("output_range_mismatch", "saturated_activations", "loss_constant") + CURVE_SLOW,
        "logs": ("loss_constant",) + CURVE_SLOW, "onset": "start"},
    "zero_init": {  # DeepCrime WCI (change weights initialisation): all weights and biases 0
        "source": "DeepCrime WCI",
        "probe": ("dead_gradients", "prediction_collapse", "input_independent_output", "vanishing_gradients"),
        "watch": ("dead_gradients", "prediction_collapse", "vanishing_gradients", "loss_constant") + CURVE_SLOW,
        "logs": ("loss_constant",) + CURVE_SLOW, "onset": "start"},
    "wrong_loss": {  # DeepCrime LCH (change loss): NLLLoss on raw logits (no log_softmax)
        "source": "DeepCrime LCH; Humbatova Model>Loss function",
        "probe": ("init_loss_mismatch", "impossible_value"),
        "watch": ("init_loss_mismatch", "impossible_value", "divergence"),
        "logs": ("impossible_value", "divergence"), "onset": "start"},
    "frozen": {  # Humbatova Training>"layers not trained": the optimizer holds only the head
        "source": "Humbatova Model>Layers (frozen layers); DeepCrime (freeze layer)",
        "probe": ("params_not_in_optimizer",),
        "watch": ("params_not_in_optimizer", "dead_gradients") + CURVE_SLOW,
        "logs": CURVE_SLOW, "onset": "start"},
    "disconnected": {  # seed 002: a module computed but not used by the output
        "source": "seed 002 (working_memory: 0.000000); Humbatova Model>Layers (missing/redundant)",
        "probe": ("dead_gradients",),
        "watch": ("dead_gradients",),
        "logs": None,  # the rest of the network trains normally: nothing in the curves
        "onset": None},
    "detached": {  # seed 002: the trunk's features .detach()-ed before the head
        "source": "seed 002; Humbatova Model>Wrong tensor handling (detach)",
        "probe": ("dead_gradients",),
        "watch": ("dead_gradients",) + CURVE_SLOW,
        "logs": CURVE_SLOW, "onset": "start"},
    "giou_disjoint": {  # seed 001: GIoU loss, tiny boxes, predictions start far from them
        "source": "seed 001",
        "probe": ("weak_loss_gradient", "prediction_collapse"),
        "watch": ("weak_loss_gradient", "prediction_collapse", "loss_constant") + CURVE_SLOW,
        "logs": ("loss_constant",) + CURVE_SLOW, "onset": "start"},
}

WAYS = ("probe", "watch", "tensorboard", "csv", "text")
# the three log formats share the "logs" expectation
def expected_codes(op: str, way: str):
    e = EXPECTED[op]
    return e["logs"] if way in ("tensorboard", "csv", "text") else e[way]
