"""readers/textlog: stdout captures and plain-text logs, every point, step, epoch and role checked.

Fixtures are written the way the real programs write them: Keras 2/3 `Progbar` output rebuilt from
its drawing rules (Keras is not installed here), a real tqdm bar, a real Lightning Trainer's
progress bar captured from stderr, and seed 003's `Epoch N Train - Loss: x` log with noise.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest

from traindoctor.errors import InputError
from traindoctor.readers import load
from traindoctor.readers import textlog as tl


def _read(path):
    part = tl.read(path)
    return part, part.series


def _pts(s):
    return list(zip(s.steps.tolist(), s.epochs.tolist() if s.epochs is not None else [None] * len(s),
                    s.values.tolist()))


# -- Keras ----------------------------------------------------------------------------------
def _keras2_bar(n, total, info):
    """tf.keras 2.x Progbar.update: `%*d/%d [`, '=' * (w-1) + '>' + '.', then ' - ...'."""
    width, digits = 30, len(str(total))
    prog_width = int(width * n / total)
    bar = f"{n:{digits}d}/{total} ["
    if prog_width > 0:
        bar += "=" * (prog_width - 1) + (">" if n < total else "=")
    bar += "." * (width - prog_width) + "]"
    return bar + info


def _keras3_bar(n, total, info):
    """keras 3 Progbar.update: bold counter, green/white '━' bar, bold time, then ' - k: v'."""
    width, digits = 20, len(str(total))
    prog_width = int(width * n / total)
    bar = f"\x1b[1m{n:{digits}d}/{total}\x1b[0m "
    if prog_width > 0:
        bar += "\x1b[32m" + "━" * prog_width + "\x1b[0m"
    bar += "\x1b[37m" + "━" * (width - prog_width) + "\x1b[0m"
    return bar + info


def keras_stdout(epochs, steps, version=2, evaluate=True):
    """What model.fit(verbose=1) leaves in a redirected stdout on Linux (dynamic display):
    every redraw is `\\b` * previous width + `\\r` + the new bar; the epoch's last one ends in \\n."""
    out, expected = [], []
    for ep in range(1, epochs + 1):
        out.append(f"Epoch {ep}/{epochs}\n")
        prev = 0
        loss, acc = 2.0 / ep, 0.5 + 0.04 * ep
        for n in (1, 2, 5, 9, steps - 1, steps):
            fmt = {"loss": loss + 0.1 * (steps - n) / steps, "accuracy": acc - 0.01}
            if n < steps:
                info = (f" - ETA: {steps - n}s" + "".join(f" - {k}: {v:.4f}" for k, v in fmt.items())
                        if version == 2 else
                        f" \x1b[1m{steps - n}s\x1b[0m 40ms/step"
                        + "".join(f" - {k}: {v:.4f}" for k, v in sorted(fmt.items())))
            else:
                vals = {"loss": loss, "accuracy": acc, "val_loss": loss + 0.1, "val_accuracy": acc - 0.02}
                if version == 2:
                    info = " - 1s 10ms/step" + "".join(f" - {k}: {v:.4f}" for k, v in vals.items())
                else:
                    # keras 3 draws n == total once without and once with the validation metrics
                    early = _keras3_bar(n, steps, " \x1b[1m0s\x1b[0m 10ms/step - accuracy: 0.1000 - loss: 9.0000")
                    out.append("\b" * prev + "\r" + early)
                    prev = len(early)
                    info = " \x1b[1m1s\x1b[0m 10ms/step" + "".join(
                        f" - {k}: {vals[k]:.4f}" for k in ("accuracy", "loss", "val_accuracy", "val_loss"))
                expected.append((ep, vals))
            text = (_keras2_bar if version == 2 else _keras3_bar)(n, steps, info)
            out.append(("\b" * prev + "\r" if prev else "\r") + text)
            prev = len(text)
        out.append("\n")
    if evaluate:  # model.evaluate(): another bar with no "Epoch" header before it
        out.append("\r" + _keras2_bar(1, 4, " - ETA: 0s - loss: 5.0000") + "\b" * 50 + "\r"
                   + _keras2_bar(4, 4, " - 0s 2ms/step - loss: 5.0000 - accuracy: 0.1000") + "\n")
    return "".join(out), expected


@pytest.mark.parametrize("version", [2, 3])
def test_keras_fit_stdout_gives_one_point_per_epoch_from_the_epoch_end_line(tmp_path, version):
    text, expected = keras_stdout(epochs=4, steps=32, version=version)
    assert "\b" in text and "\r" in text and ("ETA" in text if version == 2 else "\x1b[" in text)
    f = tmp_path / "fit.log"
    f.write_text(text, encoding="utf-8")
    part, series = _read(f)
    assert set(series) == {"loss", "accuracy", "val_loss", "val_accuracy", "it_per_sec"}
    roles = {n: s.role for n, s in series.items()}
    assert roles == {"loss": "train_loss", "accuracy": "train_accuracy", "val_loss": "val_loss",
                     "val_accuracy": "val_accuracy", "it_per_sec": "time"}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        want = [(32.0 * ep, float(ep), round(vals[name], 4)) for ep, vals in expected]
        got = [(s, e, round(v, 4)) for s, e, v in _pts(series[name])]
        assert got == want, name
    # 10ms/step is 100 steps per second, at every epoch end
    assert _pts(series["it_per_sec"]) == [(32.0 * ep, float(ep), pytest.approx(100.0)) for ep in range(1, 5)]
    assert series["val_loss"].is_per_epoch
    assert any("evaluate" in n for n in part.notes)  # the evaluate() bar was left out, and said so


def test_keras_log_cut_off_mid_epoch_keeps_finished_epochs_and_says_so(tmp_path):
    text, expected = keras_stdout(epochs=3, steps=32, evaluate=False)
    cut = text.index("Epoch 3/3")
    crashed = text[:cut] + "Epoch 3/3\n\r" + _keras2_bar(5, 32, " - ETA: 27s - loss: 0.6000 - accuracy: 0.6000")
    f = tmp_path / "crash.out"
    f.write_text(crashed, encoding="utf-8")
    part, series = _read(f)
    assert series["loss"].epochs.tolist() == [1.0, 2.0]
    assert series["loss"].values.tolist() == pytest.approx([expected[0][1]["loss"], expected[1][1]["loss"]], abs=1e-4)
    assert any("inside epoch 3" in n and "5/32" in n for n in part.notes)


# -- Lightning / tqdm -------------------------------------------------------------------------
def lightning_stream(epochs=3, total=6, val_total=2):
    """Seed 001's progress bar: `Epoch E: p%|bar| n/N [elapsed<remaining, rate, v_num=3, ...]`
    redrawn with `\\r`, some batches drawn twice, the validation bar on a second row (ANSI cursor
    codes), val_loss shown from the epoch's last frame on."""
    out = ["GPU available: True (cuda), used: True\n", "TPU available: False, using: 0 TPU cores\n",
           "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]\n",
           "/site-packages/lightning/pytorch/trainer/connectors/data_connector.py:424: The "
           "'train_dataloader' does not have many workers. Consider increasing num_workers=4.\n",
           "  | Name | Type       | Params | Mode \n", "0 | net  | Sequential | 2.4 K  | train\n"]
    val, last = None, None
    for ep in range(epochs):
        for n in [0, 1, 1, 2, 3, 3, 4, 5, 6]:
            pct = 100 * n // total
            post = f"v_num=3, train/position_loss=1.000, train/rotation_loss={1.4 - 0.1 * ep - 0.01 * n:.3f}, train/total_loss=2.400"
            if val is not None:
                post += f", val_loss={val:.3f}"
            if n == 0:  # the reset bar: nothing yet in epoch 0, the last epoch's postfix after
                post = "" if last is None else last
            rate = "?it/s" if n == 0 else ("0.82it/s" if n % 2 else "1.22s/it")
            out.append(f"\rEpoch {ep}: {pct:3d}%|{'█' * (n * 10 // total):<10}| {n}/{total} "
                       f"[01:02<43:10:00, {rate}{', ' if post else ''}{post}]")
        for m in range(val_total + 1):
            out.append(f"\n\x1b[A\rValidation DataLoader 0: {100 * m // val_total:3d}%|          | {m}/{val_total} "
                       "[00:00<00:00, 50.00it/s]\x1b[A")
        val = 0.9 - 0.1 * ep
        last = (f"v_num=3, train/position_loss=1.000, train/rotation_loss={1.4 - 0.1 * ep - 0.06:.3f}, "
                f"train/total_loss=2.400, val_loss={val:.3f}")
        out.append(f"\rEpoch {ep}: 100%|██████████| {total}/{total} [01:02<00:00, 1.22s/it, {last}]")
    out.append("\n`Trainer.fit` stopped: `max_epochs=3` reached.\n")
    return "".join(out)


def test_lightning_progress_bar_stream_seed_001(tmp_path):
    f = tmp_path / "stdout"  # extensionless, as `python train.py > stdout 2>&1` leaves it
    f.write_text(lightning_stream(), encoding="utf-8")
    assert tl.discover(tmp_path) == [f]
    part, series = _read(f)
    assert set(series) == {"train/position_loss", "train/rotation_loss", "train/total_loss", "val_loss",
                           "it_per_sec"}
    assert {n: s.role for n, s in series.items()} == {
        "train/position_loss": "train_loss", "train/rotation_loss": "train_loss",
        "train/total_loss": "train_loss", "val_loss": "val_loss", "it_per_sec": "time"}
    # one point per batch counter: repeated redraws of a batch are one point, n=0 is no point
    steps = [ep * 6 + n for ep in range(3) for n in range(1, 7)]
    epochs = [float(ep) for ep in range(3) for _ in range(6)]
    rot = [round(1.4 - 0.1 * ep - 0.01 * n, 3) for ep in range(3) for n in range(1, 6)]
    rot = [v for ep in range(3) for v in rot[ep * 5:(ep + 1) * 5] + [round(1.4 - 0.1 * ep - 0.06, 3)]]
    assert series["train/position_loss"].steps.tolist() == steps
    assert series["train/position_loss"].epochs.tolist() == epochs
    assert series["train/position_loss"].values.tolist() == [1.0] * 18
    assert series["train/total_loss"].values.tolist() == [2.4] * 18
    assert series["train/rotation_loss"].values.tolist() == pytest.approx(rot)
    # val_loss: once per epoch, at the epoch's last step, though it stays on screen afterwards
    assert _pts(series["val_loss"]) == [(6.0, 0.0, 0.9), (12.0, 1.0, 0.8), (18.0, 2.0, pytest.approx(0.7))]
    # throughput: it/s as is, s/it inverted; the last frame of each epoch says 1.22s/it
    tp = series["it_per_sec"]
    assert tp.steps.tolist() == steps
    want = [0.82 if n % 2 else 1 / 1.22 for n in range(1, 6)] + [1 / 1.22]
    assert tp.values.tolist() == pytest.approx(want * 3)
    assert part.notes == []


@pytest.mark.slow
def test_real_lightning_progress_bar_matches_its_csv_logger(tmp_path):
    """A real Trainer with TQDMProgressBar writing to a file: the bar's per-step train_loss and
    per-epoch val_loss agree with the same run's metrics.csv (to the bar's 3 significant digits)."""
    import csv

    import lightning as L
    import torch
    import torch.nn.functional as F
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger
    from tests.writers import digits_split
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    x_tr, y_tr, x_val, y_val = digits_split(0, n_train=400)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(64, 10)

        def training_step(self, batch, _):
            loss = F.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, _):
            self.log("val_loss", F.cross_entropy(self.net(batch[0]), batch[1]), prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    log = tmp_path / "train.log"
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    with open(log, "w", encoding="utf-8") as fh, contextlib.redirect_stderr(fh), contextlib.redirect_stdout(fh):
        trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path / "csv"),
                            log_every_n_steps=1, enable_model_summary=False, num_sanity_val_steps=0,
                            callbacks=[TQDMProgressBar(refresh_rate=1)], enable_checkpointing=False)
        trainer.fit(Module(), DataLoader(TensorDataset(x_tr, y_tr), batch_size=100),
                    DataLoader(TensorDataset(x_val, y_val), batch_size=200))
    assert b"\r" in log.read_bytes()
    _, series = _read(log)
    rows = list(csv.DictReader(open(tmp_path / "csv" / "lightning_logs" / "version_0" / "metrics.csv")))
    train = [(int(r["step"]) + 1, float(r["train_loss"])) for r in rows if r["train_loss"]]
    val = [(int(r["epoch"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    s = series["train_loss"]
    assert s.role == "train_loss" and s.steps.tolist() == [st for st, _ in train]
    assert s.epochs.tolist() == [float((st - 1) // 4) for st, _ in train]
    assert s.values.tolist() == pytest.approx([v for _, v in train], rel=6e-3)
    v = series["val_loss"]
    assert v.role == "val_loss" and v.epochs.tolist() == [ep for ep, _ in val] and v.steps.tolist() == [4, 8, 12]
    assert v.values.tolist() == pytest.approx([x for _, x in val], rel=6e-3)


def test_real_tqdm_postfix(tmp_path):
    from tqdm import tqdm

    losses = [2.5, 1.25, 0.625, 0.5, 0.375, 0.25]
    f = tmp_path / "run.err"
    with open(f, "w", encoding="utf-8") as fh:
        for ep in range(2):
            bar = tqdm(range(3), desc=f"epoch {ep}", file=fh, mininterval=0, miniters=1, ascii=True)
            for i in bar:
                bar.set_postfix(loss=losses[ep * 3 + i], acc=0.5)
            bar.close()
        for _ in tqdm(range(5), desc="eval", file=fh, mininterval=0):  # no metrics: not a point
            pass
    assert b"\r" in f.read_bytes()
    _, series = _read(f)
    assert set(series) == {"loss", "acc", "it_per_sec"}
    # set_postfix() runs before tqdm counts the batch: counter n shows batch n (0-based); the
    # redraw by close() at 3/3 repeats the last batch and is not a point
    assert _pts(series["loss"]) == [(float(s), float(s >= 3), v) for s, v in zip(range(6), losses)]
    assert series["acc"].values.tolist() == [0.5] * 6 and series["acc"].role == "train_accuracy"


# -- seed 003 and key=value ---------------------------------------------------------------------
def seed003_log(rng):
    lines, train, val = [], [], []
    for ep in range(50):
        tr, va = 0.40 + rng.uniform(-0.01, 0.01), 0.41 + rng.uniform(-0.01, 0.01)
        train.append(round(tr, 4))
        val.append(round(va, 4))
        lines.append(f"2024-05-01 10:{ep:02d}:00,123 - INFO - Epoch {ep} Train - Loss: {tr:.4f}")
        if ep % 7 == 0:
            lines += ["/usr/lib/python3/site-packages/torch/utils/data/dataloader.py:557: UserWarning: "
                      "This DataLoader will create 8 worker processes, loss=9.9 lr=1",
                      "  warnings.warn(_create_warning_msg(",
                      "100%|##########| 120/120 [00:31<00:00,  3.84it/s]"]
        if ep == 20:
            lines += ["Traceback (most recent call last):", '  File "train.py", line 88, in <module>',
                      "    log(loss=0.1)", "RuntimeError: CUDA out of memory. loss=7.0",
                      "Retrying with batch_size=8"]
        lines.append(f"2024-05-01 10:{ep:02d}:30,456 - INFO - Epoch {ep} Val - Loss: {va:.4f}")
        lines.append(f"2024-05-01 10:{ep:02d}:30,457 - INFO - Saved checkpoint to ckpt/epoch_{ep}.pt")
    return "\n".join(lines) + "\n", train, val


def test_seed_003_epoch_train_val_lines_with_noise(tmp_path):
    text, train, val = seed003_log(np.random.default_rng(3))
    (tmp_path / "log").mkdir()
    f = tmp_path / "log" / "train_20240501.log"
    f.write_text(text, encoding="utf-8")
    run = load(tmp_path / "log" / "train_20240501.log", format="textlog")
    assert set(run.series) == {"Train Loss", "Val Loss"}
    tr, va = run["Train Loss"], run["Val Loss"]
    assert tr.role == "train_loss" and va.role == "val_loss"
    assert tr.steps.tolist() == list(range(50)) and tr.epochs.tolist() == list(range(50))
    assert va.steps.tolist() == list(range(50)) and va.epochs.tolist() == list(range(50))
    assert tr.values.tolist() == train and va.values.tolist() == val
    assert tr.is_per_epoch and run.format == "text"


def test_key_value_lines_steps_epochs_and_numbers(tmp_path):
    log = logging.getLogger("traindoctor-test-kv")
    log.propagate = False
    f = tmp_path / "train.log"
    handler = logging.FileHandler(f, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("config: Namespace(lr=0.001, batch_size=32, epochs=2)")
        log.info("GPU available: True (cuda), used: True")
        for step, loss in [(10, "0.5"), (20, "nan"), (30, "-0.5"), (40, "inf")]:
            log.info("epoch=%d step=%d loss=%s lr=1e-4 grad_norm: 2.5e+00", step // 30, step, loss)
        log.info("epoch 1 | val_loss: 0.61 | val_acc: 91.5%")
        log.info("loss 0.41 (too loose to be read)")
    finally:
        handler.close()
        log.removeHandler(handler)
    _, s = _read(f)
    assert set(s) == {"loss", "lr", "grad_norm", "val_loss", "val_acc"}
    assert s["loss"].steps.tolist() == [10, 20, 30, 40] and s["loss"].epochs.tolist() == [0, 0, 1, 1]
    v = s["loss"].values
    assert v[0] == 0.5 and np.isnan(v[1]) and v[2] == -0.5 and np.isposinf(v[3])
    assert s["lr"].values.tolist() == [1e-4] * 4 and s["lr"].role == "lr"
    assert s["grad_norm"].values.tolist() == [2.5] * 4 and s["grad_norm"].role == "grad_norm"
    # a validation line without a step belongs to the last training step
    assert _pts(s["val_loss"]) == [(40.0, 1.0, 0.61)]
    assert _pts(s["val_acc"]) == [(40.0, 1.0, pytest.approx(0.915))] and s["val_acc"].role == "val_accuracy"


def test_lines_without_steps_use_the_epoch_or_a_running_count(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("Epoch 1/3\ntrain loss: 0.9, val loss: 1.0\nEpoch 2/3\ntrain loss: 0.8, val loss: 0.95\n"
                 "Epoch 3/3\ntrain loss: 0.7, val loss: 0.97\n", encoding="utf-8")
    _, s = _read(f)
    assert _pts(s["train loss"]) == [(1.0, 1.0, 0.9), (2.0, 2.0, 0.8), (3.0, 3.0, 0.7)]
    assert s["val loss"].role == "val_loss" and s["val loss"].values.tolist() == [1.0, 0.95, 0.97]
    g = tmp_path / "b.txt"
    g.write_text("loss=0.9 acc=0.1\nloss=0.8 acc=0.2\nsome chatter\nloss=0.7 acc=0.3\n", encoding="utf-8")
    _, s = _read(g)
    assert _pts(s["loss"]) == [(0.0, None, 0.9), (1.0, None, 0.8), (2.0, None, 0.7)]


# -- encodings and bad files ---------------------------------------------------------------------
def test_bom_and_utf16_are_read(tmp_path):
    text = "epoch=0 loss=0.5 — ünïcode\r\nepoch=1 loss=0.25\r\n"
    for name, data in [("bom.log", b"\xef\xbb\xbf" + text.encode("utf-8")),
                       ("ps.log", text.encode("utf-16"))]:  # PowerShell `>`: UTF-16LE with BOM
        (tmp_path / name).write_bytes(data)
        _, s = _read(tmp_path / name)
        assert _pts(s["loss"]) == [(0.0, 0.0, 0.5), (1.0, 1.0, 0.25)], name


def test_binary_empty_and_metricless_files_raise_one_line_errors_latin1_is_read(tmp_path):
    b = tmp_path / "model.log"
    b.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"model\.log: binary file, not a text log; expected"):
        tl.read(b)
    lat = tmp_path / "latin.log"  # not UTF-8: read as cp1252, and the note says so and why
    lat.write_bytes("step=1 loss=0.5\nstep=2 loss=0.4 # réseau\n".encode("latin-1"))
    part, s = _read(lat)
    assert s["loss"].values.tolist() == [0.5, 0.4]
    assert any("decoded as cp1252" in n and "0xe9 at offset 35 (line 2)" in n for n in part.notes)
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        tl.read(empty)
    prose = tmp_path / "notes.txt"
    prose.write_text("We trained for a while.\nThe loss 0.41 looked fine.\nGPU available: True\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"notes\.txt: no metric lines .*key=value"):
        tl.read(prose)


def test_utf8_cut_mid_character_is_read_with_a_note(tmp_path):
    f = tmp_path / "cut.log"
    f.write_bytes("step=1 loss=0.5\nstep=2 loss=0.4 é".encode()[:-1])
    part, s = _read(f)
    assert s["loss"].values.tolist() == [0.5, 0.4]
    assert any("middle of a UTF-8 character" in n for n in part.notes)


def test_discover_claims_only_text_files_with_metric_lines(tmp_path):
    (tmp_path / "README.md").write_text("# loss=0.5\n", encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("torch==2.1\nnumpy>=1.22\n", encoding="utf-8")
    (tmp_path / "a.out").write_bytes(b"\x7fELF\x00\x00" + bytes(200))
    (tmp_path / "LICENSE").write_text("MIT License\nCopyright: 2024\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "train.log").write_text("step=1 loss=0.5\n", encoding="utf-8")
    (tmp_path / "stdout").write_text("epoch 1 | val_loss: 0.3\n", encoding="utf-8")
    assert tl.discover(tmp_path) == [tmp_path / "stdout", tmp_path / "sub" / "train.log"]
    assert tl.discover(tmp_path / "README.md") == [tmp_path / "README.md"]  # a file given is tried
