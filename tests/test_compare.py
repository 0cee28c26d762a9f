"""compare: real runs side by side, best values read back from the CSV the training wrote."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from traindoctor.compare import compare


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from traindoctor.demo import FAULTS, train

    root = tmp_path_factory.mktemp("cmp")
    # separate parents: checkpoints are looked up beside and above a run folder
    return (train(FAULTS["overfit"], root / "a" / "overfit"),
            train(FAULTS["healthy"], root / "b" / "healthy"))


def _column(run, name):
    with open(run / "metrics.csv", newline="") as fh:
        return [float(r[name]) for r in csv.DictReader(fh)]


def test_best_and_final_values_match_the_logged_numbers(two_runs):
    c = compare(two_runs)
    assert [r.metric for r in c.runs] == ["val_loss", "val_loss"]
    for run, summary in zip(two_runs, c.runs):
        vals = _column(run, "val_loss")
        best = min(range(len(vals)), key=vals.__getitem__)
        assert summary.unit == "epoch"
        assert summary.best_at == best
        assert summary.best_value == pytest.approx(vals[best], rel=1e-3)
        assert summary.final_value == pytest.approx(vals[-1], rel=1e-3)
    assert "overfitting" in c.runs[0].codes and "overfitting" not in c.runs[1].codes
    assert c.best_run() is c.runs[1]


def test_hparams_that_differ_are_listed_and_shared_ones_are_not(two_runs):
    c = compare(two_runs)
    assert c.hparams_differ["n_train"] == (60, 1397)
    assert c.hparams_differ["fault"] == ("overfit", "healthy")
    assert "num_classes" not in c.hparams_differ and c.hparams_same["num_classes"] == 10
    text = str(c)
    assert "hyperparameters that differ" in text and "n_train" in text


def test_cli_outputs_json_markdown_html_and_exit_status(two_runs, tmp_path):
    md, page = tmp_path / "c.md", tmp_path / "c.html"
    args = [sys.executable, "-m", "traindoctor", "compare", *map(str, two_runs)]
    proc = subprocess.run(args + ["--json", "--md", str(md), "--html", str(page)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["kind"] == "compare" and len(data["runs"]) == 2
    assert data["runs"][1]["best_epoch"] == compare(two_runs).runs[1].best_at
    assert md.read_text().startswith("# Runs compared (2)")
    html = page.read_text()
    assert "Runs side by side" in html and html.count('class="runsep"') == 2
    assert "<script" not in html
    # overfitting is a warning: --fail-on warning turns it into exit status 1
    proc = subprocess.run(args + ["--fail-on", "warning"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "n_train" in proc.stdout
    proc = subprocess.run(args + ["--only", "overfitting", "--json"], capture_output=True, text=True, timeout=120)
    assert {c for r in json.loads(proc.stdout)["runs"] for c in r["findings"]} == {"overfitting"}


def test_missing_run_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "traindoctor", "compare", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "nope" in proc.stderr


def _train_digits(out, *, wrong_targets: bool, epochs: int = 12, seed: int = 0):
    """A small MLP on digits, logged per epoch with an evaluation before training (as many
    scripts do). With wrong_targets the loss is fed the model's own predictions instead of the
    labels (a real bug: the loss falls to ~0 while accuracy stays at chance)."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    out.mkdir(parents=True)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = torch.tensor(x[order] / 16.0, dtype=torch.float32), torch.tensor(y[order])
    xv, yv, xt, yt = x[:400], y[:400], x[400:], y[400:]
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_fn(logits, target):
        return F.cross_entropy(logits, logits.argmax(1).detach() if wrong_targets else target)

    def evaluate():
        with torch.no_grad():
            logits = model(xv)
            return float(loss_fn(logits, yv)), float((logits.argmax(1) == yv).float().mean())

    (out / "hparams.json").write_text(json.dumps({"num_classes": 10, "wrong_targets": wrong_targets}))
    try:
        with open(out / "metrics.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["epoch", "val_loss", "val_acc"])
            w.writerow([0, *(f"{v:.6g}" for v in evaluate())])
            for epoch in range(1, epochs + 1):
                perm = torch.randperm(len(xt))
                for i in range(0, len(xt), 64):
                    idx = perm[i: i + 64]
                    loss = loss_fn(model(xt[idx]), yt[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                w.writerow([epoch, *(f"{v:.6g}" for v in evaluate())])
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def bug_and_fix(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    root = tmp_path_factory.mktemp("bugfix")
    return (_train_digits(root / "a" / "bug", wrong_targets=True),
            _train_digits(root / "b" / "fix", wrong_targets=False))


@pytest.mark.slow
def test_a_run_whose_loss_is_meaningless_is_never_crowned(bug_and_fix):
    bug, fix = bug_and_fix
    losses = {p: _column(p, "val_loss") for p in bug_and_fix}
    accs = {p: _column(p, "val_acc") for p in bug_and_fix}
    assert min(losses[bug]) < min(losses[fix]) / 100  # the bug's loss "wins" by two orders...
    assert max(accs[bug]) < 0.2 < 0.9 < max(accs[fix])  # ...at chance accuracy
    c = compare(bug_and_fix)
    s_bug, s_fix = c.runs
    assert s_bug.metric == s_fix.metric == "val_loss"
    assert s_bug.not_ranked and s_bug.not_ranked.startswith("metric_disagreement")
    assert s_fix.not_ranked is None
    assert c.best_run() is s_fix
    text = str(c)
    assert f"best: {s_fix.name}" in text and f"not ranked: {s_bug.name}" in text
    data = c.to_dict()
    assert data["best_run"] == s_fix.name and data["runs"][0]["ranked"] is False
    # no healthy run to crown: nobody is best
    assert compare([bug]).best_run() is None


@pytest.mark.slow
def test_runs_are_judged_on_the_validation_metric_they_all_logged(bug_and_fix, tmp_path):
    # the fixed run again, but with only its accuracy logged: both are judged on val_acc
    _, fix = bug_and_fix
    only_acc = tmp_path / "acc_only"
    only_acc.mkdir()
    with open(fix / "metrics.csv", newline="") as fh:
        rows = [{"epoch": r["epoch"], "val_acc": r["val_acc"]} for r in csv.DictReader(fh)]
    with open(only_acc / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["epoch", "val_acc"])
        w.writeheader()
        w.writerows(rows)
    c = compare([fix, only_acc])
    assert [r.metric for r in c.runs] == ["val_acc", "val_acc"]
    assert all(r.higher_is_better for r in c.runs)
    assert c.runs[0].best_value == pytest.approx(max(_column(fix, "val_acc")), rel=1e-3)
    assert c.best_run() is not None  # the same numbers: either may be best, but one is


def test_td_compare_stays_callable_after_the_compare_module_is_imported():
    """Importing traindoctor.compare (which td.compare itself does) must not rebind td.compare."""
    import importlib

    import traindoctor as td

    importlib.import_module("traindoctor.compare")
    assert callable(td.compare) and td.compare.__module__ == "traindoctor"
