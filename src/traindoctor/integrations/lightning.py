"""Lightning: `Trainer(callbacks=[DoctorCallback()])` records, warns, stops and reports.

A thin adapter over `Watch`: the training loss comes from what training_step returned, the
validation metrics from `trainer.callback_metrics` after each validation run, and stopping sets
`trainer.should_stop`, Lightning's own flag. The run file and reports go to the logger's folder
(`trainer.log_dir`) unless `logdir=` says otherwise; `mirror=True` also sends the statistics to
the Trainer's logger (TensorBoard, CSV, W&B... whatever it is) under `traindoctor/`.
"""

from __future__ import annotations

from ..errors import require

require("lightning", "lightning", "traindoctor.integrations.lightning")

from lightning.pytorch.callbacks import Callback  # noqa: E402

from .core import Watch  # noqa: E402

__all__ = ["DoctorCallback"]


class DoctorCallback(Callback):
    """Watch a Lightning Trainer. Keyword options are `traindoctor.watch`'s (on_finding, every, ...)."""

    def __init__(self, logdir=None, *, on_finding: str = "log", mirror: bool = False, **watch_options):
        super().__init__()
        self.logdir = logdir
        self.on_finding = on_finding
        self.mirror = mirror
        self.options = watch_options
        self.watch: Watch | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # optimizers exist from here on (configure_optimizers has run)
        logdir = self.logdir or trainer.log_dir or trainer.default_root_dir
        self.watch = Watch(pl_module, list(trainer.optimizers), logdir=logdir, on_finding=self.on_finding,
                           mirror=trainer.logger if self.mirror and trainer.logger is not None else None,
                           **self.options)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.watch is not None:
            self.watch.recorder.mark_batch_start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.watch is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        extra = outputs if isinstance(outputs, dict) else {}
        self.watch.step(loss=loss, outputs=extra.get("outputs"), targets=extra.get("targets"),
                        step=trainer.global_step, epoch=trainer.current_epoch)
        self._maybe_stop(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.watch is None or trainer.sanity_checking:
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if not k.startswith("train")}
        self.watch.log(step=trainer.global_step, epoch=trainer.current_epoch, **metrics)
        self._maybe_stop(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.watch is None:
            return
        # epoch-level training metrics (self.log(..., on_epoch=True)) are logged once an epoch
        metrics = {k: v for k, v in trainer.callback_metrics.items()
                   if k.startswith("train") and k.endswith("epoch")}
        if metrics:
            self.watch.log(step=trainer.global_step, epoch=trainer.current_epoch, **metrics)

    def _maybe_stop(self, trainer) -> None:
        if self.watch.should_stop:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self.watch is not None:
            self.watch.close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.watch is not None:
            self.watch.close(exception)
