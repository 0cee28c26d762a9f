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


def test_td_compare_stays_callable_after_the_compare_module_is_imported():
    """Importing traindoctor.compare (which td.compare itself does) must not rebind td.compare."""
    import importlib

    import traindoctor as td

    importlib.import_module("traindoctor.compare")
    assert callable(td.compare) and td.compare.__module__ == "traindoctor"
