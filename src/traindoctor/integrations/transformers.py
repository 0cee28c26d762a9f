"""HF Trainer: `Trainer(..., callbacks=[DoctorCallback()])` records, warns, stops and reports.

A thin adapter over `Watch`. The Trainer does not hand callbacks the loss of each step, only
the average over `logging_steps` in `on_log`; so the per-step record holds the gradient norms,
update ratios, timings and memory (from the optimizer hooks), and the training loss arrives with
each log. Evaluation metrics (eval_loss, eval_accuracy, ...) come from `on_evaluate`. Stopping
sets `control.should_training_stop`, the Trainer's own flag. An exception inside `train()` does
not reach callbacks, so the report is then written when the interpreter exits.
"""

from __future__ import annotations

from ..errors import require

require("transformers", "transformers", "traindoctor.integrations.transformers")

from transformers import TrainerCallback  # noqa: E402

from .core import Watch  # noqa: E402

__all__ = ["DoctorCallback"]

# keys of the Trainer's logs that are bookkeeping, not metrics of the run
_SKIP = {"epoch", "step", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second",
         "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "learning_rate", "grad_norm"}


class DoctorCallback(TrainerCallback):
    """Watch an HF Trainer. Keyword options are `traindoctor.watch`'s (on_finding, every, ...)."""

    def __init__(self, logdir=None, *, on_finding: str = "log", mirror=None, **watch_options):
        self.logdir = logdir
        self.on_finding = on_finding
        self.mirror = mirror
        self.options = watch_options
        self.watch: Watch | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        opt = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        self.watch = Watch(model, opt, logdir=self.logdir or args.output_dir, on_finding=self.on_finding,
                           mirror=self.mirror, **self.options)
        # the Trainer counts in optimizer steps; so does the run file

    def on_step_begin(self, args, state, control, **kwargs):
        if self.watch is not None:
            self.watch.recorder.mark_batch_start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.watch is None:
            return
        self.watch.step(step=state.global_step, epoch=_epoch(state))
        self._maybe_stop(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.watch is None or not logs or "train_runtime" in logs:
            return  # the end-of-training summary: its train_loss is the whole run's mean, not a point
        metrics = {("train_loss" if k == "loss" else k): v for k, v in logs.items()
                   if k not in _SKIP and not k.startswith("eval_")}
        if metrics:
            self.watch.log(step=state.global_step, epoch=_epoch(state), **metrics)
            self._maybe_stop(control)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.watch is None or not metrics:
            return
        self.watch.log(step=state.global_step, epoch=_epoch(state),
                       **{k: v for k, v in metrics.items() if k not in _SKIP})
        self._maybe_stop(control)

    def _maybe_stop(self, control) -> None:
        if self.watch.should_stop:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        if self.watch is not None:
            self.watch.close()


def _epoch(state):
    # HF's state.epoch is fractional (1.5 = half-way through the second epoch); the run file's
    # epoch is the whole epoch a point belongs to, as Lightning and Keras count it.
    return None if state.epoch is None else int(state.epoch - 1e-9) if state.epoch > 0 else 0
