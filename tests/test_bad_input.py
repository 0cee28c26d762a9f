"""Bad input through the real CLI: exit status 2, exactly one line on stderr naming the file, and
never a traceback. (TensorBoard and CSV corruption are tested with their readers.)"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest


def diagnose(*args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("TRAINDOCTOR_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "traindoctor", "diagnose", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(rc, out, err, *must_contain):
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for text in must_contain:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def _png(path: Path) -> None:
    """A real 1x1 PNG (signature, IHDR, IDAT, IEND)."""
    def chunk(kind, data):
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", bytes([0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]))
                     + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def test_missing_path(tmp_path):
    missing = tmp_path / "no_such_run"
    line = assert_one_line_error(*diagnose(missing), str(missing))
    assert "no such file or folder" in line


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    line = assert_one_line_error(*diagnose(tmp_path / "empty"), str(tmp_path / "empty"))
    assert "empty" in line and "expected" in line


def test_folder_with_nothing_recognisable(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "README.md").write_text("# My experiment\n\nWe tried a bigger learning rate.\n", encoding="utf-8")
    _png(run / "loss_curve.png")
    line = assert_one_line_error(*diagnose(run), str(run))
    assert "no training metrics found" in line and "expected" in line


def test_binary_file_given_as_a_text_log(tmp_path):
    f = tmp_path / "train.log"
    f.write_bytes(bytes(range(256)) * 64)
    assert_one_line_error(*diagnose(f), str(f), "binary file, not a text log", "expected")


def test_latin1_log_is_read_and_the_encoding_said(tmp_path):
    """Issue 8: a cp1252/Latin-1 log is decoded with a fallback, not refused."""
    f = tmp_path / "train.log"
    f.write_bytes("epoch=1 loss=0.52 résumé\nepoch=2 loss=0.47\n".encode("latin-1"))
    rc, out, err = diagnose(f, "--show-series")
    assert rc in (0, 1) and "Traceback" not in out + err, (rc, out, err)
    assert "decoded as cp1252" in out and "0xe9 at offset 19" in out


def test_text_file_without_metrics(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("Started training on Tuesday.\nThe loss 0.41 looked fine, then it crashed.\n",
                 encoding="utf-8")
    assert_one_line_error(*diagnose(f), str(f), "no metric lines", "key=value")


@pytest.mark.parametrize("role, expect", [
    ("val_loss", "--role expects NAME=ROLE"),
    ("loss=bogus_role", "unknown role 'bogus_role'"),
    ("no_such_metric=val_loss", "no_such_metric"),
])
def test_bad_role_argument(tmp_path, role, expect):
    f = tmp_path / "train.log"
    f.write_text("".join(f"epoch={e} loss={1.0 / (e + 1):.3f}\n" for e in range(6)), encoding="utf-8")
    assert_one_line_error(*diagnose(f, "--role", role), expect)
