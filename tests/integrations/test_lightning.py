"""DoctorCallback in a real lightning.Trainer: the fault is found, the Trainer stops, the report is written."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

import traindoctor as td  # noqa: E402
from traindoctor.integrations.core import REPORT_NAMES  # noqa: E402
from traindoctor.integrations.lightning import DoctorCallback  # noqa: E402

from .models import Net, digits  # noqa: E402

pytestmark = pytest.mark.slow


class Module(L.LightningModule):
    def __init__(self, net, lr):
        super().__init__()
        self.net, self.lr = net, lr

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def fit(tmp_path, *, disconnected: bool, callback, epochs: int = 4):
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    (x, y), (xv, yv) = digits()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=str(tmp_path),
                        logger=L.pytorch.loggers.CSVLogger(str(tmp_path)), log_every_n_steps=1,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        enable_checkpointing=False, callbacks=[callback] if callback else [])
    module = Module(Net(disconnected=disconnected), lr=0.1)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=64),
                DataLoader(TensorDataset(xv, yv), batch_size=512))
    return trainer


def test_lightning_disconnected_module_is_found_and_the_trainer_stops(tmp_path):
    cb = DoctorCallback(tmp_path / "doctor", on_finding="stop", every=1, mirror=True)
    trainer = fit(tmp_path, disconnected=True, callback=cb)
    assert trainer.global_step < 4 * 19, "trainer.should_stop did not stop the run early"
    assert [(f.code, f.metric) for f in cb.watch.findings][:1] == [("dead_gradients", "net.aux")]
    run = td.load(tmp_path / "doctor")
    assert run.format == "traindoctor" and len(run["train_loss"]) == trainer.global_step
    report = json.loads((tmp_path / "doctor" / REPORT_NAMES["json"]).read_text())
    assert report["findings"][0]["code"] == "dead_gradients"
    assert report["meta"]["ended"] == "stopped by traindoctor"
    # mirrored into the Trainer's own logger (CSVLogger here)
    csv = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "traindoctor/grad_norm/net.aux" in csv.splitlines()[0]


def test_lightning_healthy_run_logs_validation_and_warns_nothing(tmp_path):
    cb = DoctorCallback(tmp_path / "doctor", on_finding="stop", every=1)
    trainer = fit(tmp_path, disconnected=False, callback=cb, epochs=3)
    assert trainer.current_epoch == 3 and not cb.watch.should_stop
    assert [f.code for f in cb.watch.findings if f.severity.rank >= 1] == []
    run = td.load(tmp_path / "doctor")
    assert len(run["val_loss"]) == 3 and run["val_loss"].epochs.tolist() == [0, 1, 2]
