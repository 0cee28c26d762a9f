"""readers/textlog and readers/_decode: encodings, lines that must not hang, what was not understood."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from traindoctor.errors import InputError
from traindoctor.readers import _decode, load
from traindoctor.readers import textlog as tl

FRENCH = "".join(f"Époque {e} - perte d'entraînement - loss: {0.9 - e / 10:.2f} - val_loss: {1.0 - e / 10:.2f}\n"
                 for e in range(1, 6))


def test_cp1252_log_is_decoded_and_the_note_names_the_encoding(tmp_path):
    f = tmp_path / "entrainement.log"
    f.write_bytes(FRENCH.encode("cp1252"))
    run = load(f, format="textlog")
    assert run["loss"].values.tolist() == pytest.approx([0.8, 0.7, 0.6, 0.5, 0.4])
    assert run["val_loss"].role == "val_loss" and len(run["val_loss"]) == 5
    assert any("decoded as cp1252" in n and "0xc9 at offset 0 (line 1)" in n for n in run.notes)
    text, enc = _decode.read_text(f)
    assert enc == "cp1252" and text == FRENCH


@pytest.mark.parametrize("codec, bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b"")])
def test_utf16_logs_as_powershell_writes_them(tmp_path, codec, bom):
    """PowerShell's `python train.py > log.txt` writes UTF-16LE with a byte-order mark."""
    f = tmp_path / "log.txt"
    f.write_bytes(bom + FRENCH.replace("\n", "\r\n").encode(codec))
    run = load(f, format="textlog")
    assert run["loss"].values.tolist() == pytest.approx([0.8, 0.7, 0.6, 0.5, 0.4])
    assert any(f"decoded as {codec.upper()}" in n for n in run.notes)
    assert _decode.read_text(f) == (FRENCH.replace("\n", "\r\n"), codec)


def test_read_text_utf8_and_binary(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes(b"\xef\xbb\xbfstep=1 loss=0.5 \xe2\x80\x94\n")
    assert _decode.read_text(f) == ("step=1 loss=0.5 —\n", "utf-8")
    b = tmp_path / "b.log"
    b.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"b\.log: binary file"):
        _decode.read_text(b)


def test_a_100000_digit_line_and_a_megabyte_line_do_not_hang(tmp_path):
    f = tmp_path / "train.log"
    body = "".join(f"step={s} loss={1 / s:.5f}\n" for s in range(1, 201))
    f.write_text("step=0 loss=9.0\n" + "7" * 100_000 + "\n" + body + "loss=" + "9" * 5000 + "\n"
                 + "step=201 loss=" + "1" * 5000 + ".5\n" + "x" * 1_000_000, encoding="utf-8")
    t = time.perf_counter()
    run = load(f, format="textlog")
    took = time.perf_counter() - t
    assert took < 20, took  # was > 60 s: the line patterns backtracked over the digits
    loss = run["loss"]
    assert loss.steps.tolist()[:3] == [0, 1, 2] and len(loss) >= 201
    assert loss.values[1] == pytest.approx(1.0)
    assert any("longer than 8192 characters or holding a 64-digit number" in n for n in run.notes)


def test_a_number_that_does_not_parse_skips_its_line_with_a_note(tmp_path):
    f = tmp_path / "train.log"
    f.write_text("".join(f"step={s} loss={1 / s:.4f}\n" for s in range(1, 50)) + "step=50 loss=1.2.3\n",
                 encoding="utf-8")
    part = tl.read(f)
    assert len(part.series["loss"]) == 49
    assert any("1 line(s) of a known shape held a number that does not parse" in n for n in part.notes)


def test_stats_count_understood_lines_and_show_what_was_missed(tmp_path):
    f = tmp_path / "train.log"
    f.write_text("Starting run 7\nstep=1 loss=0.9\nstep=2 loss=0.8\nthroughput 512 img per sec on 8 GPUs\n"
                 "WARNING: something 3\nstep=3 loss=0.7\nckpt saved as model_3.pt\n", encoding="utf-8")
    parsed = tl.parse(f.read_text())
    assert (parsed.lines, parsed.understood, parsed.not_understood) == (7, 3, 3)
    assert [n for n, _ in parsed.examples] == [1, 4, 7]
    run = load(f, format="textlog")
    src = run.source()
    assert src["metrics"][0]["file"] == "train.log"
    assert src["files"] == [{"path": "train.log", "lines": 7, "understood": 3, "not_understood": 3,
                             "examples": [{"line": 1, "text": "Starting run 7"},
                                          {"line": 4, "text": "throughput 512 img per sec on 8 GPUs"},
                                          {"line": 7, "text": "ckpt saved as model_3.pt"}]}]


def test_show_series_names_the_file_and_the_lines_not_understood(tmp_path):
    (tmp_path / "run").mkdir()
    f = tmp_path / "run" / "train.log"
    f.write_text("".join(f"epoch {e} | train_loss: {1 / e:.3f} | val_loss: {1.1 / e:.3f}\n" for e in range(1, 9))
                 + "eval F1 82.5 on 1000 docs\n", encoding="utf-8")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "traindoctor", "diagnose", str(tmp_path / "run"), "--show-series"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    out = proc.stdout
    assert "series read (name, role, points, unit, file):" in out
    assert any("train_loss" in ln and "train.log" in ln for ln in out.splitlines())
    assert "train.log: 8 of 9 lines understood; 1 line(s) with numbers not understood, e.g. line 9: " \
           "'eval F1 82.5 on 1000 docs'" in out
    proc = subprocess.run([sys.executable, "-m", "traindoctor", "diagnose", str(tmp_path / "run"), "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    src = json.loads(proc.stdout)
    src = src[0]["source"] if isinstance(src, list) else src["source"]
    assert {m["file"] for m in src["metrics"]} == {"train.log"} and src["files"][0]["understood"] == 8


def test_a_log_cut_mid_line_says_where_it_stops(tmp_path):
    f = tmp_path / "train.log"
    f.write_text("".join(f"step={s} loss={1 / s:.4f} lr=0.1\n" for s in range(1, 40)) + "step=40 lo", encoding="utf-8")
    part = tl.read(f)
    assert len(part.series["loss"]) == 39
    assert any("ends mid-line (cut off mid-write?): line 40, 'step=40 lo'" in n for n in part.notes)
    h = tmp_path / "fine.log"
    h.write_text("step=1 loss=0.5\nstep=2 loss=0.4", encoding="utf-8")  # no final newline, last line read
    assert not any("mid-line" in n for n in tl.read(h).notes)


def test_fairseq_gnorm_is_a_grad_norm():
    from traindoctor.history import infer_role

    assert infer_role("gnorm") == "grad_norm" and infer_role("loss_scale") == "other"
