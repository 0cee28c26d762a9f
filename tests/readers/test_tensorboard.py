"""TensorBoard reader: real event files from torch's SummaryWriter, tensorboard's own
EventFileWriter (TF2-style tensor scalars), Lightning's TensorBoardLogger, and crashed runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import traindoctor as td
from traindoctor.errors import InputError
from traindoctor.readers import load_runs
from traindoctor.readers import tensorboard as tb

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
SummaryWriter = pytest.importorskip("torch.utils.tensorboard").SummaryWriter


def _load(path, **kw):
    return td.load(path, format="tensorboard", **kw)


def _events(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("events.out.tfevents*"))


def _write_scalars(logdir, tags_values: dict[str, np.ndarray], steps) -> None:
    w = SummaryWriter(str(logdir))
    for i, step in enumerate(steps):
        for tag, vals in tags_values.items():
            w.add_scalar(tag, float(vals[i]), int(step))
    w.close()


def test_add_scalar_reads_every_point_exactly(tmp_path):
    rng = np.random.default_rng(0)
    # step 0 (omitted by proto3), multi-byte varints, and a step past 2**32
    steps = np.concatenate([np.arange(0, 1500), [70_000, 2**33 + 5]])
    vals = {
        "Loss/train": rng.standard_normal(steps.size).astype(np.float32) * 10,
        "Loss/val": rng.uniform(-1e6, 1e6, steps.size).astype(np.float32),
        "lr": np.full(steps.size, 3e-4, dtype=np.float32),
    }
    vals["Loss/train"][3] = np.float32(np.inf)
    vals["Loss/train"][4] = np.float32(np.nan)
    _write_scalars(tmp_path / "run", vals, steps)
    run = _load(tmp_path / "run")
    assert set(run.series) == set(vals)
    for tag, v in vals.items():
        s = run[tag]
        assert s.steps.tolist() == steps.astype(float).tolist()
        # float32 values widened to float64 exactly (NaN compared as NaN)
        np.testing.assert_array_equal(s.values, v.astype(np.float64))
        assert s.wall_times is not None and np.all(np.diff(s.wall_times) >= 0)
    assert run["Loss/val"].role == "val_loss" and run["Loss/train"].role == "train_loss"
    assert run["lr"].role == "lr"
    assert run.notes == () and run.format == "tensorboard"


def test_add_scalars_subfolders_belong_to_the_parent_run(tmp_path):
    logdir = tmp_path / "exp"
    w = SummaryWriter(str(logdir))
    for step in range(20):
        w.add_scalars("Loss", {"train": 1.0 / (step + 1), "val": 2.0 / (step + 1)}, step)
        w.add_scalar("Accuracy/val", step / 20, step)
    w.close()
    assert (logdir / "Loss_train").is_dir() and (logdir / "Loss_val").is_dir()
    run = _load(logdir)  # one run, not three
    assert sorted(run.series) == ["Accuracy/val", "Loss/train", "Loss/val"]
    assert run["Loss/val"].role == "val_loss"
    assert run["Loss/train"].role == "train_loss"
    assert run["Accuracy/val"].role == "val_accuracy"
    np.testing.assert_array_equal(run["Loss/val"].values, np.float32(2.0 / (np.arange(20) + 1)))
    assert Path(run.path) == logdir


def test_two_runs_under_one_logdir_stay_apart(tmp_path):
    _write_scalars(tmp_path / "runs" / "a", {"loss": np.arange(5.0)}, range(5))
    _write_scalars(tmp_path / "runs" / "b", {"loss": -np.arange(7.0)}, range(7))
    runs = load_runs(tmp_path / "runs", format="tensorboard")
    assert [r.run for r in runs] == ["a", "b"]
    assert [len(r["loss"]) for r in runs] == [5, 7]
    with pytest.raises(InputError, match="holds 2 runs"):
        _load(tmp_path / "runs")
    assert _load(tmp_path / "runs", run="b")["loss"].values.tolist() == [-x for x in range(7)]


def test_restart_merges_files_and_the_later_file_wins(tmp_path):
    run_dir = tmp_path / "run"
    _write_scalars(run_dir, {"train_loss": np.full(100, 1.0)}, range(100))
    # the resumed run re-logs steps 50..99 from its checkpoint, then goes on
    _write_scalars(run_dir, {"train_loss": np.full(100, 2.0)}, range(50, 150))
    assert len(_events(run_dir)) == 2
    s = _load(run_dir)["train_loss"]
    assert s.steps.tolist() == list(range(150))
    assert s.values[:50].tolist() == [1.0] * 50 and s.values[50:].tolist() == [2.0] * 100


def _tf2_writer(folder: Path):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder.mkdir(parents=True, exist_ok=True)
    return EventFileWriter(str(folder))


def _tensor_event(tag, step, tensor, plugin=None):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    meta = None
    if plugin:
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta)
    return event_pb2.Event(wall_time=1000.0 + step, step=step, summary=summary_pb2.Summary(value=[value]))


def test_tensor_encoded_scalars_keras_style(tmp_path):
    from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

    def f32(x):
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[x])

    def f64_content(x):
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_content=np.float64(x).tobytes())

    run_dir = tmp_path / "logs"
    losses = {"train": [0.9, 0.7, 0.6, 0.55], "validation": [1.0, 0.8, 0.85, 0.9]}
    for split, vals in losses.items():
        w = _tf2_writer(run_dir / split)
        for epoch, v in enumerate(vals):
            # TF2 writes the metadata only with a tag's first event
            w.add_event(_tensor_event("epoch_loss", epoch, f32(v), "scalars" if epoch == 0 else None))
            w.add_event(_tensor_event("epoch_lr", epoch, f64_content(1e-3 / (epoch + 1)),
                                      "scalars" if epoch == 0 else None))
        w.flush()
        w.close()
    # things that are not scalars: an image (string tensor), a histogram (rank-2 float tensor)
    w = _tf2_writer(run_dir / "train")
    w.add_event(_tensor_event("images/x", 0, tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=[b"2", b"2", b"\x89PNG"]), "images"))
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2),
                                                   tensor_shape_pb2.TensorShapeProto.Dim(size=3)])
    w.add_event(_tensor_event("dense/kernel", 0, tensor_pb2.TensorProto(
        dtype=types_pb2.DT_DOUBLE, tensor_shape=shape, double_val=[0, 1, 5, 1, 2, 3]), "histograms"))
    w.add_event(_tensor_event("dense/kernel", 1, tensor_pb2.TensorProto(
        dtype=types_pb2.DT_DOUBLE, tensor_shape=shape, double_val=[0, 1, 5, 1, 2, 3])))
    w.close()

    run = _load(run_dir)
    assert sorted(run.series) == ["train/epoch_loss", "train/epoch_lr",
                                  "validation/epoch_loss", "validation/epoch_lr"]
    val = run["validation/epoch_loss"]
    assert val.role == "val_loss" and run["train/epoch_loss"].role == "train_loss"
    np.testing.assert_array_equal(val.values, np.float32(losses["validation"]).astype(np.float64))
    assert val.epochs.tolist() == [0, 1, 2, 3] and val.is_per_epoch
    assert val.wall_times.tolist() == [1000.0, 1001.0, 1002.0, 1003.0]
    assert run["train/epoch_lr"].values.tolist() == [1e-3 / (e + 1) for e in range(4)]  # float64 exact


def test_lightning_tensorboard_logger_epochs(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch import nn

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, :1] > 0).float()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)

    class M(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 1)

        def training_step(self, batch, _):
            loss = nn.functional.binary_cross_entropy_with_logits(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            loss = nn.functional.binary_cross_entropy_with_logits(self.net(batch[0]), batch[1])
            self.log("val_loss", loss)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_epochs=3, logger=TensorBoardLogger(str(tmp_path)), log_every_n_steps=2,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(M(), data, data)
    run = _load(tmp_path / "lightning_logs" / "version_0")
    val = run["val_loss"]
    assert len(val) == 3 and val.epochs.tolist() == [0, 1, 2] and val.steps.tolist() == [7, 15, 23]
    tr = run["train_loss"]
    assert len(tr) == 12 and tr.steps.tolist() == list(range(1, 24, 2))  # steps 1, 3, ... 23
    # 8 batches an epoch: steps 0..7 are epoch 0, 8..15 epoch 1, 16..23 epoch 2
    assert tr.epochs.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_truncated_file_keeps_what_was_read_and_says_so(tmp_path):
    run_dir = tmp_path / "run"
    _write_scalars(run_dir, {"loss": np.linspace(2, 1, 300)}, range(300))
    f = _events(run_dir)[0]
    data = f.read_bytes()
    f.write_bytes(data[:-7])  # the writer died mid-record
    run = _load(run_dir)
    assert run["loss"].steps.tolist() == list(range(299))
    (note,) = run.notes
    assert note.startswith(f.name) and "mid-record" in note and "after step 298" in note
    assert "read 299 points" in note and f"at byte {_last_record_start(data)} " in note


def _last_record_start(data: bytes) -> int:
    pos, last = 0, 0
    while pos < len(data):
        last = pos
        pos += 16 + int.from_bytes(data[pos:pos + 8], "little")
    return last


def test_flipped_byte_is_caught_by_the_crc(tmp_path):
    run_dir = tmp_path / "run"
    _write_scalars(run_dir, {"loss": np.arange(50.0)}, range(50))
    f = _events(run_dir)[0]
    data = bytearray(f.read_bytes())
    data[-6] ^= 0x01  # inside the last record's float value: only the data CRC can tell
    f.write_bytes(bytes(data))
    run = _load(run_dir)
    assert len(run["loss"]) == 49
    assert "CRC-32C" in run.notes[0] and "read 49 points" in run.notes[0]


@pytest.mark.parametrize("flags", [[], ["--format", "tensorboard"]])
def test_garbage_file_is_a_one_line_error_from_the_cli(tmp_path, flags):
    bad = tmp_path / "events.out.tfevents.123.host"
    bad.write_bytes(b"this is not a TFRecord stream at all\n" * 20)
    out = subprocess.run([sys.executable, "-m", "traindoctor", "diagnose", str(bad), *flags],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "not a TensorBoard event file" in lines[0]
    assert "Traceback" not in out.stderr


def test_garbage_beside_a_good_file_becomes_a_note(tmp_path):
    run_dir = tmp_path / "run"
    _write_scalars(run_dir, {"loss": np.arange(3.0)}, range(3))
    (run_dir / "events.out.tfevents.999.junk").write_bytes(bytes(range(256)))
    run = _load(run_dir)
    assert run["loss"].values.tolist() == [0.0, 1.0, 2.0]
    assert any("events.out.tfevents.999.junk" in n and "not a TensorBoard event file" in n for n in run.notes)


def test_empty_file_and_discovery(tmp_path):
    empty = tmp_path / "events.out.tfevents.1.x"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        tb.read(empty)
    (tmp_path / "notes.txt").write_text("hi")
    assert tb.discover(tmp_path) == [empty]
    assert tb.discover(tmp_path / "notes.txt") == []
    assert tb.discover(empty) == [empty]


def test_corrupt_length_header_stops_with_a_crc_note(tmp_path):
    run_dir = tmp_path / "run"
    _write_scalars(run_dir, {"loss": np.arange(40.0)}, range(40))
    f = _events(run_dir)[0]
    data = bytearray(f.read_bytes())
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 16 + int.from_bytes(data[pos:pos + 8], "little")
    cut = starts[21]  # record 0 is file_version, so this is the 21st scalar (step 20)
    data[cut:cut + 8] = (10**9).to_bytes(8, "little")
    f.write_bytes(bytes(data))
    run = _load(run_dir)
    assert run["loss"].values.tolist() == list(map(float, range(20)))
    assert "fails its CRC-32C check" in run.notes[0] and f"at byte {cut} after step 19" in run.notes[0]


def test_fast_and_general_layouts_mix_in_file_order(tmp_path):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    def ev(step, values):
        return event_pb2.Event(wall_time=5.0 + step, step=step, summary=summary_pb2.Summary(value=values))

    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    w = _tf2_writer(tmp_path / "run")
    w.add_event(ev(0, [summary_pb2.Summary.Value(tag="loss", simple_value=3.0)]))  # add_scalar layout
    w.add_event(ev(1, [summary_pb2.Summary.Value(tag="loss", simple_value=2.5, metadata=meta)]))
    w.add_event(ev(2, [summary_pb2.Summary.Value(tag="loss", simple_value=2.0),
                       summary_pb2.Summary.Value(tag="acc", simple_value=0.5)]))  # two values
    w.add_event(ev(-3, [summary_pb2.Summary.Value(tag="loss", simple_value=1.5)]))  # negative step
    w.close()
    run = _load(tmp_path / "run")
    assert run["loss"].steps.tolist() == [0, 1, 2, -3]
    assert run["loss"].values.tolist() == [3.0, 2.5, 2.0, 1.5]
    assert run["loss"].wall_times.tolist() == [5.0, 6.0, 7.0, 2.0]
    assert run["acc"].values.tolist() == [0.5]


@pytest.mark.parametrize("block", [1, 3, 64])
def test_reading_in_blocks_of_records_changes_nothing(tmp_path, monkeypatch, block):
    """The fast path works a block of records at a time (bounded memory on a million scalars);
    blocks far smaller than the file, mixed with general-layout records and a flipped byte in a
    late block, give exactly what one block gives."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    from traindoctor.readers import tensorboard as tb

    rng = np.random.default_rng(3)
    steps = np.arange(0, 400, 2)
    _write_scalars(tmp_path / "run", {"loss": rng.random(steps.size), "acc": rng.random(steps.size)}, steps)
    w = _tf2_writer(tmp_path / "run")
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    for step in (401, 403):
        w.add_event(event_pb2.Event(wall_time=1e9 + step, step=step, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="loss", simple_value=0.25, metadata=meta)])))
    w.close()
    whole = _load(tmp_path / "run")
    monkeypatch.setattr(tb, "_CHUNK", block)
    parts = _load(tmp_path / "run")
    assert list(parts.series) == list(whole.series) and len(parts["loss"]) == steps.size + 2
    for name in whole.series:
        for attr in ("steps", "values", "wall_times"):
            np.testing.assert_array_equal(getattr(parts[name], attr), getattr(whole[name], attr))
    f = _events(tmp_path / "run")[0]
    data = bytearray(f.read_bytes())
    data[_last_record_start(bytes(data)) + 14] ^= 0xFF  # the last record's data: its CRC fails
    f.write_bytes(bytes(data))
    monkeypatch.setattr(tb, "_CHUNK", 1 << 16)
    one = _load(tmp_path / "run")
    monkeypatch.setattr(tb, "_CHUNK", block)
    blocks = _load(tmp_path / "run")
    assert blocks.notes == one.notes and any("CRC" in n for n in one.notes)
    assert {n: len(s) for n, s in blocks.series.items()} == {n: len(s) for n, s in one.series.items()}
