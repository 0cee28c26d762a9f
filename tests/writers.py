"""Real training runs written by the real libraries, for tests that need genuine log files.

Every writer trains a small torch MLP on scikit-learn's bundled digits (no downloads), with a
fixed seed and one CPU thread, and returns the folder the library wrote. Other test files import
these: `from writers import write_lightning_run` (pytest puts tests/ on sys.path) or
`from tests.writers import ...` under `python -m pytest`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_lightning_run", "write_hf_run", "digits_split"]


def digits_split(seed: int = 0, n_train: int | None = None, n_val: int = 400):
    """Digits scaled to [0, 1], shuffled with `seed`: (x_train, y_train, x_val, y_val) tensors."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.long)
    x_val, y_val = x[:n_val], y[:n_val]
    x_tr, y_tr = x[n_val:], y[n_val:]
    if n_train is not None:
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    return x_tr, y_tr, x_val, y_val


def _mlp(hidden: int, depth: int = 1):
    import torch.nn as nn

    layers, width = [], 64
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def write_lightning_run(tmp_path, *, epochs: int | None = None, overfit: bool = False, seed: int = 0) -> Path:
    """A real lightning.Trainer + CSVLogger run on digits; returns the `version_N` folder.

    Logs `train_loss` per step and per epoch (`train_loss_step`, `train_loss_epoch`), `val_loss`
    and `val_acc` per epoch, and saves checkpoints with ModelCheckpoint (best on val_loss + last).

    overfit=False (default 12 epochs): the whole train split (1397 samples), a 32-unit MLP, Adam
    1e-2, batches of 128: val_loss falls from ~1.7 and flattens near 0.15 (seeds 0-2).
    overfit=True (default 40 epochs): 60 training samples in one full batch, a 512x512 MLP,
    Adam 3e-3, no regularisation: train loss goes to ~0, val_loss is best around epoch 12 and
    then rises steadily to ~2x its best by epoch 40 (seeds 0-1). Fewer epochs may not show it.
    """
    import lightning as L
    import torch
    import torch.nn.functional as F
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    L.seed_everything(seed, verbose=False)
    if epochs is None:
        epochs = 40 if overfit else 12
    x_tr, y_tr, x_val, y_val = digits_split(seed, n_train=60 if overfit else None)
    lr = 3e-3 if overfit else 1e-2
    net = _mlp(512, depth=2) if overfit else _mlp(32)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"lr": lr, "overfit": overfit, "seed": seed})
            self.net = net

        def training_step(self, batch, _):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True)
            self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=60 if overfit else 128, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(TensorDataset(x_val, y_val), batch_size=len(x_val))
    logger = CSVLogger(str(tmp_path), name="lightning_logs")
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1, save_last=True)],
        deterministic=True,
    )
    trainer.fit(Module(), train, val)
    return Path(logger.log_dir)


def write_hf_run(tmp_path, *, epochs: int = 3, seed: int = 0, eval_steps: int | None = None) -> Path:
    """A real transformers.Trainer run on digits; returns its output_dir.

    A tiny torch module returning {"loss", "logits"}; logs every 10 steps, evaluates and saves a
    checkpoint (checkpoint-N/ with its own trainer_state.json) each epoch (every `eval_steps`
    steps when given: several evaluations an epoch), and writes the final
    trainer_state.json into output_dir. No network (report_to="none", use_cpu=True).
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from transformers import Trainer, TrainingArguments, set_seed

    torch.set_num_threads(1)
    set_seed(seed)
    x_tr, y_tr, x_val, y_val = digits_split(seed)

    class Digits(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp(32)

        def forward(self, x, labels=None):
            logits = self.net(x)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = F.cross_entropy(logits, labels)
            return out

    out_dir = Path(tmp_path) / "hf_out"
    args = TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=epochs, per_device_train_batch_size=64,
        per_device_eval_batch_size=400, learning_rate=3e-3, logging_steps=10,
        eval_strategy="steps" if eval_steps else "epoch", save_strategy="steps" if eval_steps else "epoch",
        eval_steps=eval_steps, save_steps=eval_steps, report_to="none", use_cpu=True,
        seed=seed, remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0,
        metric_for_best_model="eval_loss", greater_is_better=False,  # fills best_metric/_checkpoint
    )
    trainer = Trainer(model=Net(), args=args, train_dataset=Digits(x_tr, y_tr),
                      eval_dataset=Digits(x_val, y_val))
    result = trainer.train()
    trainer.save_state()  # output_dir/trainer_state.json, the final state
    trainer.save_metrics("train", result.metrics)  # train_results.json + all_results.json
    trainer.save_metrics("eval", trainer.evaluate())
    return out_dir
