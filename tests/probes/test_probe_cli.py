"""`traindoctor probe file.py:factory` through the real command line, and a real HF model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import traindoctor as td

from .contract import assert_unchanged, capture

FACTORY = textwrap.dedent('''
    import torch
    from torch import nn
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)

    def make(lr=1e-3):
        X, y = load_digits(return_X_y=True)
        X = (X - X.mean(0)) / (X.std(0) + 1e-8)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        batch = (torch.tensor(X[:64], dtype=torch.float32), torch.tensor(y[:64]))
        return model, batch, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=lr)

    def broken():
        model, batch, loss_fn, opt = make(lr=1.0)
        return model, batch, loss_fn, opt

    def three():
        return 1, 2, 3
''')


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "traindoctor", "probe", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.fixture()
def target(tmp_path: Path) -> Path:
    path = tmp_path / "probe_me.py"
    path.write_text(FACTORY)
    return path


def test_cli_subprocess_json_on_a_faulty_factory(target):
    bad = cli(f"{target}:broken", "--json", "--fail-on", "warning", "--only", "lr_too_high")
    assert bad.returncode == 1, bad.stderr
    data = json.loads(bad.stdout)
    assert data["kind"] == "probe" and data["source"]["path"] == f"{target}:broken"
    assert [f["code"] for f in data["findings"]] == ["lr_too_high"]


def test_cli_in_process_healthy_exits_0(target, capsys):
    from traindoctor.cli import main

    assert main(["probe", f"{target}:make", "--json", "--fail-on", "warning"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["findings"] == [] and "timings" in data["meta"]


def test_cli_bad_target_is_one_line_exit_2(target):
    res = cli(f"{target}:nope")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no function named 'nope'" in lines[0] and "Traceback" not in res.stderr
    res = cli(str(target))
    assert res.returncode == 2 and "expected path/to/file.py:factory" in res.stderr


@pytest.mark.parametrize("suffix, expect", [
    (":three", "must return (model, batch, loss_fn, optimizer)"),
    (":nope", "functions in the file: broken, make, three"),
])
def test_load_target_errors_name_the_file(target, suffix, expect):
    from traindoctor.errors import InputError
    from traindoctor.probes.cli import load_target

    with pytest.raises(InputError) as info:
        load_target(f"{target}{suffix}")
    assert expect in str(info.value) and str(target) in str(info.value) and "\n" not in str(info.value)


def test_cli_missing_file_is_one_line_exit_2(tmp_path):
    res = cli(f"{tmp_path / 'missing.py'}:make")
    assert res.returncode == 2 and "no such file" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_real_hf_model_output_object_and_dict_batch():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(0, 40, (32, 8), generator=g),
             "attention_mask": torch.ones(32, 8, dtype=torch.long),
             "labels": torch.randint(0, 3, (32,), generator=g)}
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    before = capture(model, opt)
    report = td.probe(model, batch, optimizer=opt)
    assert_unchanged(before, capture(model, opt))
    assert report.meta["loss_source"] == "model"
    assert not any(f.code == "internal_error" for f in report.findings), report.findings
    assert not report.fails("warning"), [(f.code, f.title) for f in report.findings]
    # a fine-tuning LR far below the one-batch sweep's preference is context, not a warning
    assert all(f.severity.value == "info" for f in report.get("lr_too_low"))
