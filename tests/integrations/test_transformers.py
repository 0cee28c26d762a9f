"""DoctorCallback in a real transformers.Trainer: overfitting is found, training stops, reports are written."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import traindoctor as td  # noqa: E402
from traindoctor.integrations.core import REPORT_NAMES  # noqa: E402
from traindoctor.integrations.transformers import DoctorCallback  # noqa: E402

from .models import Net, digits  # noqa: E402

pytestmark = pytest.mark.slow


class Digits(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class HFNet(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.net = Net(width=width)

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
        return out


def hf_train(tmp_path, *, n_train, width, epochs, callback, lr=3e-3):
    from transformers import Trainer, TrainingArguments, set_seed

    torch.set_num_threads(1)
    set_seed(0)
    (x, y), (xv, yv) = digits(n_train)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"), num_train_epochs=epochs, per_device_train_batch_size=64,
        per_device_eval_batch_size=512, learning_rate=lr, lr_scheduler_type="constant", logging_steps=1,
        eval_strategy="epoch", save_strategy="no", report_to="none", use_cpu=True, seed=0,
        remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = Trainer(model=HFNet(width), args=args, train_dataset=Digits(x, y), eval_dataset=Digits(xv, yv),
                      callbacks=[callback])
    trainer.train()
    return trainer


def test_hf_overfitting_is_found_and_training_stops(tmp_path):
    cb = DoctorCallback(tmp_path / "doctor", on_finding="stop", every=1)
    trainer = hf_train(tmp_path, n_train=60, width=256, epochs=60, callback=cb)
    assert trainer.state.global_step < 60, "control.should_training_stop did not stop the run early"
    codes = [(f.code, f.metric) for f in cb.watch.findings if f.severity.rank >= 1]
    assert ("overfitting", "eval_loss") in codes, codes
    run = td.load(tmp_path / "doctor")
    assert run.format == "traindoctor" and run["eval_loss"].role == "val_loss"
    assert len(run["train_loss"]) == trainer.state.global_step and len(run["grad_norm/net.body"]) > 0
    report = json.loads((tmp_path / "doctor" / REPORT_NAMES["json"]).read_text())
    assert "overfitting" in [f["code"] for f in report["findings"]]
    assert report["meta"]["ended"] == "stopped by traindoctor"


def test_hf_disconnected_module_is_named(tmp_path):
    cb = DoctorCallback(tmp_path / "doctor", on_finding="stop", every=1)
    model = HFNet(64)
    model.net.disconnected = True
    from transformers import Trainer, TrainingArguments

    (x, y), _ = digits()
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=30, per_device_train_batch_size=64,
                             logging_steps=5, save_strategy="no", report_to="none", use_cpu=True,
                             remove_unused_columns=False, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Digits(x, y), callbacks=[cb])
    trainer.train()
    assert trainer.state.global_step < 30
    first = [f for f in cb.watch.findings if f.severity.rank >= 1][0]
    assert (first.code, first.metric) == ("dead_gradients", "net.aux")
