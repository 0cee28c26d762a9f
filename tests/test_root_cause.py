"""One root cause first: findings a cause explains carry `explained_by`, hang under it in every
output, and add no advice of their own; the terminal shows the short form unless --verbose."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import traindoctor as td
from traindoctor.engine import CONDITIONS, EXPLAINS, Explains, demote_explained
from traindoctor.render.terminal import render_plain


def _f(code, severity, metric, steps=None, unit="epoch", **ev):
    return td.Finding(code, severity, f"{code} on {metric}", metric, {"unit": unit, **ev}, steps,
                      f"why {code}", [td.Fix(f"fix for {code}", "because")])


def _history():
    return td.RunHistory.from_dict({"train_loss": [1.0] * 5, "val_loss": [1.0] * 5, "val_acc": [0.5] * 5},
                                   epochs=True)


def test_overfitting_explains_the_plateau_of_any_validation_metric_not_of_training():
    over = _f("overfitting", "warning", "val_loss")
    flat_acc = _f("plateau", "warning", "val_acc")
    flat_train = _f("plateau", "warning", "train_loss")
    out = demote_explained([flat_acc, over, flat_train], _history())
    by = {f.metric: f for f in out if f.code == "plateau"}
    assert by["val_acc"].explained_by == "overfitting" and by["val_acc"].severity == td.Severity.INFO
    assert "overfitting finding on val_loss explains" in by["val_acc"].explanation
    assert by["train_loss"].explained_by is None and by["train_loss"].severity == td.Severity.WARNING


def test_a_nan_explains_what_follows_it_only():
    nan = _f("nan_loss", "error", "train_loss", (50, 50), first_epoch=50)
    after = _f("divergence", "warning", "train_loss", (52, 60))
    before = _f("loss_spikes", "warning", "train_loss", (10, 12))
    other_unit = _f("oscillation", "warning", "train_loss", (900, 1000), unit="step")
    out = {f.code: f for f in demote_explained([before, after, nan, other_unit], _history())}
    assert out["divergence"].explained_by == "nan_loss"
    assert out["loss_spikes"].explained_by is None and out["oscillation"].explained_by is None


def test_a_stuck_loss_explains_the_other_plateaus_and_a_cause_is_never_milder():
    stuck = _f("loss_constant", "error", "train/box_loss")
    flat = [_f("plateau", "warning", m) for m in ("train/cls_loss", "val/box_loss")]
    out = demote_explained([stuck, *flat], None)
    assert [f.explained_by for f in out] == [None, "loss_constant", "loss_constant"]
    # an info-level cause explains nothing away
    out = demote_explained([_f("overfitting", "info", "val_loss"), _f("plateau", "warning", "val_loss")])
    assert out[1].explained_by is None and out[1].severity == td.Severity.WARNING


def test_the_table_is_declarative_and_extensible():
    assert all(r.when in CONDITIONS for r in EXPLAINS)
    rules = (Explains("divergence", "loss_spikes", "same_metric", "a test rule"),)
    div, spikes = _f("divergence", "warning", "train_loss"), _f("loss_spikes", "warning", "train_loss")
    out = demote_explained([div, spikes], None, rules=rules)
    assert out[1].explained_by == "divergence"
    assert demote_explained([div, spikes], None)[1].explained_by is None  # not in the default table


def test_report_orders_root_causes_first_with_what_they_explain_under_them():
    findings = demote_explained([
        _f("lr_schedule", "info", "lr"),
        _f("plateau", "warning", "val_acc"),
        _f("train_val_gap", "warning", "val_loss"),
        _f("overfitting", "warning", "val_loss"),
    ], _history())
    rep = td.Report(findings, history=_history())
    assert [f.code for f in rep.findings] == ["train_val_gap", "overfitting", "plateau", "lr_schedule"]
    assert rep.headline.code == "train_val_gap"
    assert [(root.code, [e.code for e in under]) for root, under in rep.groups()] == [
        ("train_val_gap", []), ("overfitting", ["plateau"]), ("lr_schedule", [])]
    data = json.loads(rep.to_json())
    assert [f["explained_by"] for f in data["findings"]] == [None, None, "overfitting", None]
    # filtering the cause out leaves what it explained standing on its own
    alone = rep.filtered(ignore=["overfitting"])
    assert [(r.code, u) for r, u in alone.groups()] == [("train_val_gap", []), ("plateau", []),
                                                         ("lr_schedule", [])]


def _grouped_report():
    findings = demote_explained([
        _f("overfitting", "warning", "val_loss", (3, 9), best_epoch=3, best_value=0.5,
           thresholds={"min_rel_rise": 0.02}),
        _f("plateau", "warning", "val_acc", (3, 9), flat_share=0.7, thresholds={"k_noise": 3}),
        _f("lr_schedule", "info", "lr"),
    ], _history())
    return td.Report(findings, [td.Skip("throughput", "needs time")], history=_history())


def test_terminal_default_is_short_and_verbose_has_everything():
    rep = _grouped_report()
    short = render_plain(rep)
    lines = short.splitlines()
    head = next(i for i, line in enumerate(lines) if "overfitting: overfitting on val_loss" in line)
    assert lines[head].startswith("WARNING overfitting")
    assert "best_epoch=3, best_value=0.5" in lines[head + 1]
    assert "first thing to do: fix for overfitting" in short
    explained = next(line for line in lines if "plateau on val_acc" in line)
    assert explained.startswith("  -> INFO    plateau") and "(explained by overfitting)" in explained
    assert any(line.startswith("INFO    lr_schedule") for line in lines)
    assert "thresholds:" not in short and "why overfitting" not in short and "fix for plateau" not in short
    assert "not checked: 1 check (--verbose says why)" in short
    long = render_plain(rep, verbose=True)
    assert "thresholds: min_rel_rise=0.02" in long and "thresholds: k_noise=3" in long
    assert "why overfitting" in long and "fix 1: fix for plateau" in long
    assert "throughput: needs time" in long


def test_markdown_and_html_hang_explained_findings_under_their_cause():
    rep = _grouped_report()
    md = rep.to_markdown()
    assert "**First thing to do:** fix for overfitting" in md
    assert "  - ℹ️ **plateau on val_acc**" in md and "explained by `overfitting`" in md
    assert "**What this explains**" in md and "#### 1.1. plateau on val_acc" in md
    fixes = md.split("## Fixes, most likely first")[1]
    assert "fix for overfitting" in fixes and "fix for plateau" not in fixes  # no advice of its own
    html = rep.to_html()
    assert 'class="card info explained"' in html and "explained by <code>overfitting</code>" in html
    assert "its own advice, if the cause above is ruled out" in html
    assert "min_rel_rise=0.02" in html  # html carries the thresholds without --verbose


@pytest.mark.slow
def test_cli_verbose_flag_and_json_keep_explained_findings(tmp_path):
    # a real run's CSV, as numpy writes it: train falls, val bottoms at epoch 12 and rises
    import numpy as np

    e = np.arange(60)
    rng = np.random.default_rng(0)
    tr = 2 * np.exp(-e / 10) + 0.05 + 0.005 * rng.standard_normal(60)
    va = np.r_[2 * np.exp(-e[:15] / 6) + 0.5, 0.66 + 0.02 * (e[15:] - 15)] + 0.003 * rng.standard_normal(60)
    acc = np.r_[np.linspace(0.3, 0.8, 15), 0.8 + 0.003 * rng.standard_normal(45)]
    path = tmp_path / "metrics.csv"
    np.savetxt(path, np.c_[e, tr, va, acc], delimiter=",", header="epoch,train_loss,val_loss,val_acc",
               comments="", fmt=["%d", "%.6f", "%.6f", "%.6f"])
    cmd = [sys.executable, "-m", "traindoctor", "diagnose", str(path)]
    short = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    long = subprocess.run(cmd + ["--verbose"], capture_output=True, text=True, timeout=120)
    js = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120)
    assert short.returncode == long.returncode == js.returncode == 0, short.stderr + long.stderr
    data = json.loads(js.stdout)["findings"]
    assert data[0]["code"] == "overfitting" and data[0]["explained_by"] is None
    codes = [f["code"] for f in data]
    for i, f in enumerate(data):  # every explained finding follows its cause, which is in the report
        if f["explained_by"]:
            assert f["explained_by"] in codes[:i]
    assert "first thing to do:" in short.stdout and "thresholds:" not in short.stdout
    assert "thresholds:" in long.stdout and "fix 1:" in long.stdout
    assert len(short.stdout.splitlines()) < len(long.stdout.splitlines())


def test_one_fault_seen_in_several_series_is_one_root_and_explanations_never_cycle():
    # precision, recall and mAP exactly 0 over the same checks: with a row naming its own code
    # (a candidate for the table), the first is the root and the others hang under it
    same = (Explains("loss_constant", "loss_constant", "same_window", "one fault seen several times"),)
    stuck = [_f("loss_constant", "warning", m, (1, 20)) for m in ("precision", "recall", "mAP50")]
    later = _f("loss_constant", "warning", "val/box_loss", (5, 20))
    assert all(f.explained_by is None for f in demote_explained([*stuck, later], None))  # "*" never does
    rep = td.Report(demote_explained([*stuck, later], None, rules=same))
    assert [(r.metric, [e.metric for e in u]) for r, u in rep.groups()] == [
        ("precision", ["recall", "mAP50"]), ("val/box_loss", [])]
    # two rules that would explain each other: one of the two is the root, never neither
    rules = (Explains("divergence", "oscillation", "same_metric", "t"),
             Explains("oscillation", "divergence", "same_metric", "t"))
    a, b = _f("divergence", "warning", "train_loss"), _f("oscillation", "warning", "train_loss")
    out = demote_explained([a, b], None, rules=rules)
    assert sorted(str(f.explained_by) for f in out) in (["None", "divergence"], ["None", "oscillation"])
    assert [f.code for f in td.Report(out).findings][1:] == [out[0].code if out[0].explained_by else out[1].code]
