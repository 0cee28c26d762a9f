"""readers/textlog on the line formats of widely used training scripts (issue 8).

None of these tools installs here without pulling another torch (fairseq 0.12.2 needs torchaudio
and a C build), so each fixture is written from the tool's own format strings:

* nanoGPT `train.py`: `print(f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu
  {running_mfu*100:.2f}%")` and `print(f"step {iter_num}: train loss {losses['train']:.4f}, val
  loss {losses['val']:.4f}")`;
* yunjey/pytorch-tutorial: `print('Epoch [{}/{}], Step [{}/{}], Loss: {:.4f}'.format(epoch+1,
  num_epochs, i+1, total_step, loss.item()))`;
* PyTorch examples `word_language_model/main.py`: `'| epoch {:3d} | {:5d}/{:5d} batches | lr
  {:02.2f} | ms/batch {:5.2f} | loss {:5.2f} | ppl {:8.2f}'` and `'| end of epoch {:3d} | time:
  {:5.2f}s | valid loss {:5.2f} | valid ppl {:8.2f}'`;
* fairseq `fairseq/logging/progress_bar.py` (SimpleProgressBar.log: `"{}:  {:5d} / {:d} {}"` with
  `key=value, ...`; .print: `"{} | {}"` with `key value | ...`; prefix `epoch {:03d}` and
  `valid on '{subset}' subset`; JsonProgressBar: `json.dumps(stats)` with `epoch`, `update` and
  string-formatted stats) under `fairseq_cli/train.py`'s logging format
  `%(asctime)s | %(levelname)s | %(name)s | %(message)s`, logger renamed to the tag
  (`train_inner`, `valid`, `train`);
* the issue's own lines for `[epoch 0 | step 20] loss 2.3151`, `==> epoch 0 validation: ...` and
  the repeated-key `Train Loss | Token Acc | Val Loss | Token Acc` line.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from traindoctor.readers import load
from traindoctor.readers import textlog as tl


def _log(tmp_path, text, name="train.log"):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return load(f, format="textlog")


def _pts(s):
    ep = s.epochs.tolist() if s.epochs is not None else [None] * len(s)
    return list(zip(s.steps.tolist(), ep, s.values.tolist()))


def test_nanogpt_iter_and_eval_lines(tmp_path):
    rng = np.random.default_rng(0)
    lines, it_loss, ev = ["Overriding config with config/train_gpt2.py:", "batch_size = 12",
                          "lr_decay_iters = 600000", "tokens per iteration will be: 491,520",
                          "number of parameters: 123.59M"], {}, {}
    for it in range(0, 301, 10):
        if it % 100 == 0:
            tr, va = 10 - it / 50 + rng.uniform(0, .1), 10.1 - it / 50
            ev[it] = (round(tr, 4), round(va, 4))
            lines.append(f"step {it}: train loss {tr:.4f}, val loss {va:.4f}")
            if it:
                lines.append("saving checkpoint to out")
        lossf = 10 - it / 40
        it_loss[it] = round(lossf, 4)
        lines.append(f"iter {it}: loss {lossf:.4f}, time {120.5 + it:.2f}ms, mfu {12.34 if it else -100:.2f}%")
    run = _log(tmp_path, "\n".join(lines) + "\n")
    assert set(run.series) == {"loss", "mfu", "train loss", "val loss"}  # not `lr_decay_iters`
    assert run["loss"].role == "train_loss" and run["val loss"].role == "val_loss"
    assert run["train loss"].role == "train_loss"
    assert _pts(run["loss"]) == [(float(k), None, v) for k, v in it_loss.items()]
    assert _pts(run["val loss"]) == [(float(k), None, v) for k, (_, v) in ev.items()]
    assert _pts(run["train loss"]) == [(float(k), None, t) for k, (t, _) in ev.items()]
    assert run["mfu"].values[:2].tolist() == [-1.0, pytest.approx(0.1234)]


def test_key_space_value_with_bracketed_step_and_validation_line(tmp_path):
    lines = []
    for ep in range(2):
        for st in range(20, 61, 20):
            lines.append(f"[epoch {ep:3d} | step {ep * 60 + st:5d}] loss {2.3151 - ep * 0.1 - st / 1000:.4f}")
        lines.append(f"==> epoch {ep} validation: loss {2.3118 - ep * 0.2:.4f} acc {0.092 + ep * 0.1:.3f}")
    lines.append("The loss 0.41 looked fine.")  # prose without a step: not read
    run = _log(tmp_path, "\n".join(lines) + "\n")
    assert set(run.series) == {"loss", "validation loss", "validation acc"}
    assert run["validation loss"].role == "val_loss" and run["validation acc"].role == "val_accuracy"
    assert run["loss"].steps.tolist() == [20, 40, 60, 80, 100, 120]
    assert run["loss"].epochs.tolist() == [0, 0, 0, 1, 1, 1]
    assert _pts(run["validation loss"]) == [(60.0, 0.0, 2.3118), (120.0, 1.0, pytest.approx(2.1118))]
    assert run["validation acc"].values.tolist() == pytest.approx([0.092, 0.192])


def test_epoch_and_step_inside_the_epoch_give_the_global_step(tmp_path):
    """`Epoch [2/10], Step [100/600]` is step 700: 60 points stay 60 points."""
    lines, want = [], []
    for epoch in range(10):
        for i in range(100, 601, 100):
            loss = 2.3 / (1 + epoch + i / 600)
            lines.append(f"Epoch [{epoch + 1}/{10}], Step [{i}/{600}], Loss: {loss:.4f}")
            want.append((epoch * 600.0 + i, float(epoch + 1), round(loss, 4)))
    run = _log(tmp_path, "\n".join(lines) + "\n")
    assert set(run.series) == {"Loss"}
    assert _pts(run["Loss"]) == want and len(run["Loss"]) == 60


def test_word_language_model_batches_and_valid_lines(tmp_path):
    lines = []
    for epoch in range(1, 4):
        for batch in range(200, 2983, 200):
            lines.append(f"| epoch {epoch:3d} | {batch:5d}/{2983:5d} batches | lr {20.0:02.2f} | ms/batch {11.5:5.2f} | "
                         f"loss {6.0 - epoch / 10:5.2f} | ppl {np.exp(6.0 - epoch / 10):8.2f}")
        lines += ["-" * 89, f"| end of epoch {epoch:3d} | time: {35.5:5.2f}s | valid loss {5.5 - epoch / 10:5.2f} | valid ppl {np.exp(5.5 - epoch / 10):8.2f}", "-" * 89]
    lines += ["=" * 89, "| End of training | test loss   nan | test ppl      nan", "=" * 89]
    run = _log(tmp_path, "\n".join(lines) + "\n")
    assert {"loss", "ppl", "lr", "valid loss", "valid ppl"} <= set(run.series)
    assert run["valid loss"].role == "val_loss" and run["loss"].role == "train_loss"
    assert len(run["loss"]) == 3 * 14
    # (epoch - 1) * 2983 + batch: the counter restarts every epoch
    assert run["loss"].steps.tolist()[:2] == [200, 400] and run["loss"].steps.tolist()[14] == 2983 + 200
    assert _pts(run["valid loss"]) == [((e - 1) * 2983.0 + 2800, float(e), round(5.5 - e / 10, 2))
                                       for e in range(1, 4)]


def test_a_split_word_qualifies_the_keys_after_it(tmp_path):
    lines = [f"Epoch {ep} | Train Loss: {9.1 - ep:.1f} | Token Acc: {0.07 + ep / 100:.2f} | "
             f"Val Loss: {9.0 - ep:.1f} | Token Acc: {0.066 + ep / 100:.3f}" for ep in range(1, 5)]
    run = _log(tmp_path, "\n".join(lines) + "\n")
    assert set(run.series) == {"Train Loss", "Train Token Acc", "Val Loss", "Val Token Acc"}
    assert run["Val Token Acc"].role == "val_accuracy" and run["Train Token Acc"].role == "train_accuracy"
    assert run["Val Token Acc"].values.tolist() == pytest.approx([0.076, 0.086, 0.096, 0.106])
    assert run["Train Token Acc"].values.tolist() == pytest.approx([0.08, 0.09, 0.10, 0.11])
    assert run["Val Token Acc"].steps.tolist() == [1, 2, 3, 4]  # one point per epoch, not two


def _fairseq_logger(path):
    log = logging.getLogger("fairseq-test")
    log.propagate = False
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log, handler


def _fairseq_run(json_format: bool, path):
    """fairseq's train loop: progress.log() every 100 updates, valid + train print() per epoch."""
    log, handler = _fairseq_logger(path)
    size, want = 250, {"inner": [], "valid": []}
    try:
        log.name = "fairseq_cli.train"
        log.info("Namespace(arch='transformer', lr=[0.0005], max_epoch=2)")
        updates = 0
        for epoch in range(1, 3):
            for i in range(size):
                updates += 1
                if updates % 100:
                    continue
                stats = {"loss": f"{9.5 - updates / 200:.3f}", "nll_loss": f"{9.1 - updates / 200:.3f}",
                         "ppl": f"{2 ** (9.1 - updates / 200):g}", "wps": "12345.6", "ups": "2.1",
                         "num_updates": f"{updates:g}", "lr": f"{1.25e-5 * updates / 100:g}",
                         "gnorm": "2.1", "train_wall": "30", "wall": f"{updates // 2:g}"}
                want["inner"].append((float(updates), float(stats["loss"])))
                log.name = "train_inner"
                if json_format:
                    log.info(json.dumps({"epoch": epoch, "update": round(epoch - 1 + (i + 1) / size, 3), **stats}))
                else:
                    log.info("{}:  {:5d} / {:d} {}".format(f"epoch {epoch:03d}", i + 1, size,
                                                          ", ".join(f"{k}={v}" for k, v in stats.items())))
            vstats = {"loss": f"{8.7 - epoch / 10:.3f}", "nll_loss": f"{8.2 - epoch / 10:.3f}", "ppl": "295.1",
                      "wps": "5000", "wpb": "4000", "bsz": "100", "num_updates": f"{updates:g}",
                      "best_loss": f"{8.7 - epoch / 10:.3f}"}
            want["valid"].append((float(updates), float(vstats["loss"])))
            log.name = "valid"
            if json_format:
                log.info(json.dumps({"epoch": epoch, **{f"valid_{k}": v for k, v in vstats.items()}}))
            else:
                prefix = f"epoch {epoch:03d} | valid on 'valid' subset"
                log.info("{} | {}".format(prefix, " | ".join(f"{k} {v}" for k, v in vstats.items())))
            log.name = "train"
            tstats = {"loss": f"{9.3 - epoch / 10:.3f}", "num_updates": f"{updates:g}", "lr": "2.5e-05"}
            if json_format:
                log.info(json.dumps({"epoch": epoch, **{f"train_{k}": v for k, v in tstats.items()}}))
            else:
                log.info("{} | {}".format(f"epoch {epoch:03d}", " | ".join(f"{k} {v}" for k, v in tstats.items())))
    finally:
        handler.close()
        log.removeHandler(handler)
    return want


def test_fairseq_simple_format_train_inner_valid_and_train_lines(tmp_path):
    f = tmp_path / "train.log"
    want = _fairseq_run(False, f)
    assert "| INFO | valid | epoch 001 | valid on 'valid' subset | loss 8.600" in f.read_text()
    run = load(f, format="textlog")
    loss = run["loss"]  # train_inner: every 100 updates, at num_updates (not the line count)
    assert loss.role == "train_loss" and _pts(loss) == [(s, e, v) for (s, v), e in zip(want["inner"], [1, 1, 2, 2, 2])]
    val = run["valid loss"]
    assert val.role == "val_loss" and [(s, v) for s, _, v in _pts(val)] == want["valid"]
    assert run["valid nll_loss"].role == "val_loss"
    assert "valid best_loss" not in run.series and "best_loss" not in run.series  # a running best
    assert run["train loss"].steps.tolist() == [250, 500]


def test_fairseq_json_format(tmp_path):
    f = tmp_path / "train.log"
    want = _fairseq_run(True, f)
    run = load(f, format="textlog")
    assert [(s, v) for s, _, v in _pts(run["loss"])] == want["inner"]
    assert run["valid_loss"].role == "val_loss"
    assert [(s, v) for s, _, v in _pts(run["valid_loss"])] == want["valid"]
    assert run["train_loss"].steps.tolist() == [250, 500]


def test_evaluation_block_header_names_the_split_of_the_lines_below(tmp_path):
    lines = ["INFO:__main__:Configuration:", "INFO:__main__:  learning_rate: 0.0003",
             "INFO:__main__:  max_grad_norm: 1.0", "INFO:__main__:" + "=" * 40]
    for ep in range(2):
        lines += [f"INFO:__main__:Epoch {ep} | Step {s:4d}/100 | Loss: {2 - ep - s / 200:.4f} | LR: 3.00e-04"
                  for s in range(0, 100, 10)]
        lines += ["INFO:__main__:📊 Evaluation Results:", f"INFO:__main__:   Loss: {1.5 - ep / 10:.4f}",
                  "INFO:__main__:   Tokens: 2,982,385", f"INFO:__main__:✅ Epoch {ep} completed in 47.2s"]
    lines += ["INFO:__main__:🎉 Final Results: Loss=1.4000, PPL=4.06"]
    run = _log(tmp_path, "\n".join(lines) + "\n")
    assert set(run.series) == {"Loss", "LR", "Evaluation Loss"}  # no config, no summary line
    assert run["Evaluation Loss"].role == "val_loss"
    assert _pts(run["Evaluation Loss"]) == [(90.0, 0.0, 1.5), (190.0, 1.0, 1.4)]
    assert run["Loss"].steps.tolist()[9:12] == [90, 100, 110]  # epoch 1 step 0 is global step 100


def test_tqdm_bar_followed_by_a_print_on_the_same_line(tmp_path):
    bar = "".join(f"\r{100 * n // 50:3d}%|{'#' * (n // 5):<10}| {n}/50 [00:0{n // 10}<00:00, 60.0it/s]"
                  for n in range(0, 51, 10))
    text = "".join(f"{bar}epoch {ep:3d} | train_loss: {3 - ep / 10:.5f} | test_loss: 0.00000\n" for ep in range(4))
    run = _log(tmp_path, text)
    assert run["train_loss"].values.tolist() == pytest.approx([3.0, 2.9, 2.8, 2.7])
    assert run["test_loss"].role == "test_loss" and run["test_loss"].values.tolist() == [0.0] * 4


def test_template_path_and_line_by_line_parser_agree(tmp_path):
    """The numpy template path must give what the per-line parser gives, on a log that mixes
    templates, headers, tracebacks, bars, blocks and odd numbers."""
    rng = np.random.default_rng(1)
    lines = ["Epoch 1/3"]
    for step in range(1, 400):
        if step % 97 == 0:
            lines += ["Traceback (most recent call last):", '  File "x.py", line 1', "step=5 loss=99.0"]
        if step % 50 == 0:
            lines.append(f"epoch {step // 50} | val_loss: {rng.random():.4f} | val_acc: {rng.random() * 100:.1f}%")
        if step % 61 == 0:
            lines.append("Validation results:")
            lines.append(f"  loss: {rng.random():.3f}")
        fmt = rng.integers(4)
        v = rng.random() * 10.0 ** rng.integers(-8, 4)
        lines.append([f"step={step} loss={v:.6g} lr={v * 1e-4:.3e}",
                      f"step={step} loss={-v:.4f} acc=0.5 grad_norm: {v}",
                      f"iter {step}: loss {v:.4f}, time 1.5ms, mfu 12.3%",
                      f"step={step} loss=nan lr=1e-4"][fmt])
    data = ("\n".join(lines) + "\n").encode()
    fast, slow = tl.parse_bytes(data), tl.parse_bytes(data, fast=False)
    assert fast.points.keys() == slow.points.keys()
    for name in fast.points:
        for a, b in zip(fast.points[name], slow.points[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert fast.understood == slow.understood
