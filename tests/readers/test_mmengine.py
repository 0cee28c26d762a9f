"""OpenMMLab logs: MMEngine's vis_data/scalars.json (written here by a real MMEngine Runner) and
mmcv 1.x's <timestamp>.log.json.

mmcv 1.x does not install here (it compiles ops against torch), so its file is written as
mmcv/runner/hooks/logger/text.py TextLoggerHook writes it: `_dump_log` appends
`json.dumps(OrderedDict(mode=, epoch=, iter=, lr=, memory=, data_time=, <losses>, loss=, time=))`
with floats rounded to 5 decimals (`_round_float`), the first line being `runner.meta`
(env_info, config, seed); `iter` is the iteration inside the epoch (`get_iter(inner_iter=True)`),
and a val line's `iter` is EvalHook's `eval_iter_num` (the number of val batches).
"""

import json
from collections import OrderedDict

import numpy as np
import pytest

import traindoctor as td
from traindoctor.readers import mmengine as mm_reader


@pytest.fixture(scope="module")
def mmengine_run(tmp_path_factory):
    """A real MMEngine Runner: a linear classifier on digits, 3 epochs of 14 iterations, logged
    every 5 iterations, validated every epoch with a top-1 metric."""
    pytest.importorskip("mmengine")
    import torch
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from sklearn.datasets import load_digits
    from torch import nn

    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)

    class Digits(torch.utils.data.Dataset):
        def __init__(self, a, b):
            self.a, self.b = a, b

        def __len__(self):
            return len(self.a)

        def __getitem__(self, i):
            return dict(inputs=self.a[i], labels=self.b[i])

    class Net(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, inputs, labels, mode="tensor"):
            out = self.fc(inputs)
            if mode == "loss":
                return {"loss": nn.functional.cross_entropy(out, labels)}
            return out, labels

    class Top1(BaseMetric):
        def process(self, data_batch, data_samples):
            out, labels = data_samples
            self.results.append(((out.argmax(1) == labels).sum().item(), len(labels)))

        def compute_metrics(self, results):
            return {"top1": 100.0 * sum(r[0] for r in results) / sum(r[1] for r in results)}

    work = tmp_path_factory.mktemp("mm") / "work_dirs" / "digits"
    loader = dict(sampler=dict(type="DefaultSampler", shuffle=True), batch_size=100,
                  collate_fn=dict(type="default_collate"))
    runner = Runner(
        model=Net(), work_dir=str(work),
        train_dataloader=dict(dataset=Digits(x[:1400], y[:1400]), **loader),
        val_dataloader=dict(dataset=Digits(x[1400:], y[1400:]), **loader),
        val_evaluator=dict(type=Top1, prefix="accuracy"),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.5)),
        train_cfg=dict(by_epoch=True, max_epochs=3, val_interval=1), val_cfg=dict(),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=5), checkpoint=dict(type="CheckpointHook", interval=10)),
        visualizer=dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")]),
        randomness=dict(seed=0), log_level="WARNING",
    )
    runner.train()
    return work


@pytest.mark.slow
def test_real_mmengine_scalars_every_point_with_roles(mmengine_run):
    (stamp,) = [d for d in mmengine_run.iterdir() if d.is_dir()]
    scalars = stamp / "vis_data" / "scalars.json"
    rows = [json.loads(ln) for ln in scalars.read_text().splitlines()]
    train = [r for r in rows if "iter" in r]
    val = [r for r in rows if "iter" not in r]
    assert len(val) == 3 and [r["step"] for r in val] == [1, 2, 3]  # the epoch, not the iteration
    assert (stamp / "vis_data" / f"{stamp.name}.json").is_file() and (stamp / f"{stamp.name}.log").is_file()

    run = td.load(mmengine_run)
    assert run.format == "mmengine"  # the .log text twin and the <timestamp>.json copy add nothing
    loss = run["loss"]
    assert loss.role == "train_loss" and loss.steps.tolist() == [r["step"] for r in train]
    assert loss.values.tolist() == [r["loss"] for r in train]
    assert loss.epochs.tolist() == [r["epoch"] for r in train]
    top1 = run["val/accuracy/top1"]
    assert top1.role == "val_accuracy" and top1.values.tolist() == [r["accuracy/top1"] for r in val]
    assert top1.epochs.tolist() == [1, 2, 3] and top1.unit == "epoch"
    # each validation sits at the last training step logged in its epoch
    ends = [max(r["step"] for r in train if r["epoch"] == e) for e in (1, 2, 3)]
    assert top1.steps.tolist() == ends
    assert run["lr"].role == "lr" and run["time"].role == "time"
    assert run["data_time"].role == "other" and run["val/time"].role == "other"
    assert "val/lr" not in run


def _mmcv_log_json(path, epochs=3, iters=40, interval=10, seed=0):
    """mmcv 1.x TextLoggerHook output for a real softmax regression on digits (minibatch SGD)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(seed)
    w = np.zeros((64, 10))
    lines = [json.dumps({"env_info": "sys.platform: linux\nPython: 3.8", "config": "model = dict(...)",
                         "seed": seed, "exp_name": "digits.py"})]
    out = []

    def rnd(v):  # TextLoggerHook._round_float
        return round(v, 5) if isinstance(v, float) else v

    for ep in range(1, epochs + 1):
        losses = []
        for it in range(1, iters + 1):
            i = rng.integers(0, 1400, 32)
            z = x[i] @ w
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            losses.append(float(-np.log(p[np.arange(32), y[i]]).mean()))
            p[np.arange(32), y[i]] -= 1
            w -= 0.3 * x[i].T @ p / 32
            if it % interval == 0:
                row = OrderedDict(mode="train", epoch=ep, iter=it, lr=0.3, memory=0, data_time=0.001,
                                  loss_cls=float(np.mean(losses[-interval:])), loss=float(np.mean(losses[-interval:])),
                                  time=0.02)
                out.append(row)
                lines.append(json.dumps(OrderedDict((k, rnd(v)) for k, v in row.items())))
        acc = float(((x[1400:] @ w).argmax(1) == y[1400:]).mean())
        row = OrderedDict(mode="val", epoch=ep, iter=397, lr=0.3, bbox_mAP=acc, bbox_mAP_50=min(1.0, acc * 1.1))
        out.append(row)
        lines.append(json.dumps(OrderedDict((k, rnd(v)) for k, v in row.items())))
    path.write_text("\n".join(lines) + "\n")
    return out


def test_mmcv_log_json_global_steps_from_inner_iterations(tmp_path):
    rows = _mmcv_log_json(tmp_path / "20230101_120000.log.json")
    (tmp_path / "20230101_120000.log").write_text("2023-01-01 12:00:01,000 - mmdet - INFO - Epoch [1][10/40]\tlr: 3.000e-01, loss: 2.1\n")
    run = td.load(tmp_path)
    assert run.format == "mmengine"
    train = [r for r in rows if r["mode"] == "train"]
    loss = run["loss"]
    assert loss.role == "train_loss"
    assert loss.steps.tolist() == [(r["epoch"] - 1) * 40 + r["iter"] for r in train]  # 10, 20, ... 120
    assert loss.values.tolist() == [round(r["loss"], 5) for r in train]
    m = run["val/bbox_mAP"]
    assert m.role == "val_accuracy" and m.steps.tolist() == [40, 80, 120] and m.epochs.tolist() == [1, 2, 3]
    assert "val/lr" not in run and any("counts within each epoch" in n for n in run.notes)


def test_mmcv_and_mmengine_files_are_told_apart_by_content(tmp_path):
    a = tmp_path / "a.json"
    a.write_text('{"lr": 0.1, "data_time": 0.01, "loss": 1.0, "time": 0.1, "iter": 10, "step": 10}\n')
    b = tmp_path / "b.log.json"
    b.write_text('{"env_info": "x"}\n{"mode": "train", "epoch": 1, "iter": 10, "loss": 1.0}\n')
    c = tmp_path / "c.json"
    c.write_text('{"step": 1, "value": 3}\n')  # no timing keys, not in vis_data: not MMEngine's
    d = tmp_path / "d.json"
    d.write_text('{"step": 1, "time": 3.5, "loss": 2.0}\n')  # a script's own log: no `iter`
    assert mm_reader._kind(a) == "mmengine" and mm_reader._kind(b) == "mmcv"
    assert mm_reader._kind(c) is None and mm_reader._kind(d) is None


def test_only_the_runners_own_text_log_is_claimed(tmp_path):
    """Beside vis_data/ the Runner writes <timestamp>.log, the same numbers in words: claimed, not
    read twice. A user's own train.log there is not MMEngine's and is still read."""
    from traindoctor.readers import READERS, _reader

    stamp = tmp_path / "20240101_120000"
    (stamp / "vis_data").mkdir(parents=True)
    (stamp / "vis_data" / "scalars.json").write_text(
        "".join(json.dumps({"lr": 0.1, "data_time": 0.01, "loss": 1.0 / i, "time": 0.1, "epoch": 1, "iter": i,
                            "step": i}) + "\n" for i in range(1, 6)))
    (stamp / "20240101_120000.log").write_text("2024/01/01 12:00:01 - mmengine - INFO - Epoch(train) [1][1/5]  "
                                               "lr: 1.0000e-01  loss: 1.0000\n")
    (stamp / "train.log").write_text("step=1 loss=0.9\nstep=2 loss=0.8\n")
    units = mm_reader.discover(tmp_path)
    assert stamp / "vis_data" in units and stamp / "20240101_120000.log" in units
    assert stamp / "train.log" not in units
    assert "textlog" in READERS and stamp / "train.log" in _reader("textlog").discover(tmp_path)
