"""Markdown shaped like the seed post-mortems, with every number taken from the evidence."""

from __future__ import annotations

import re

import traindoctor as td
from traindoctor.render._common import fmt_value

_NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def _numbers(value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_numbers(v) | _numbers(k) for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return set().union(*(_numbers(v) for v in value)) if value else set()
    return set(_NUM.findall(fmt_value(value))) | set(_NUM.findall(str(value)))


def test_sections_like_the_seeds(overfit_report):
    md = overfit_report.to_markdown()
    for heading in ("# Training diagnosis:", "## Summary", "**Key findings:**", "## Root cause",
                    "## Fixes, most likely first", "## Verification steps", "## Data read"):
        assert heading in md, heading
    of = overfit_report.get("overfitting")[0]
    assert of.title in md
    # the counterfactual table and the fixes' code blocks are there
    assert "| patience |" in md
    assert "```python" in md


def test_verification_numbers_all_come_from_the_evidence(overfit_report):
    md = overfit_report.to_markdown()
    section = md.split("## Verification steps", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    acting = [f for f in overfit_report.findings if f.severity.value != "info"]
    assert len(bullets) == len(acting) >= 1
    for line, f in zip(bullets, acting):
        allowed = _numbers(dict(f.evidence))
        found = set(_NUM.findall(line))
        assert found <= allowed, (found - allowed, line)
    of = overfit_report.get("overfitting")[0]
    assert fmt_value(of.evidence["best_value"]) in section


def test_key_numbers_in_the_summary_are_evidence_values(overfit_report):
    md = overfit_report.to_markdown()
    summary = md.split("**Key findings:**", 1)[1].split("## ", 1)[0]
    for f in overfit_report.findings:
        line = next(li for li in summary.splitlines() if f.title.replace("<", "&lt;") in li)
        tail = line.rsplit("] (", 1)[1]
        assert set(_NUM.findall(tail)) <= _numbers(dict(f.evidence))


def test_healthy_run_says_so_and_lists_what_was_not_checked():
    h = td.RunHistory.from_dict({"val_loss": [2.0, 1.0, 0.7, 0.6, 0.55, 0.52, 0.5]}, epochs=True,
                                path="ok-run", format="test")
    report = td.diagnose(h, only=["overfitting"])
    md = report.to_markdown()
    assert "No problem found" in md and "## Root cause" not in md


def test_probe_report_renders_without_history():
    f = td.Finding("dead_gradients", "warning", "2 parameters get no gradient", "head.weight",
                   {"count": 2, "names": ["head.weight", "head.bias"], "thresholds": {"zero_tol": 0.0}},
                   fixes=[td.Fix("Remove the detach", "it cuts the graph", "y = head(x)  # no .detach()")])
    md = td.Report([f], source={"model": "Net"}, kind="probe").to_markdown()
    assert md.startswith("# Pre-flight probe: Net")
    assert "`zero_tol=0`" in md and "y = head(x)" in md and "names: [head.weight, head.bias]" in md


def test_names_from_logs_cannot_inject_markup():
    h = td.RunHistory.from_dict({"<script>x</script>|a": [1, 2, 3]}, epochs=True, path="p", format="t")
    md = td.diagnose(h).to_markdown()
    assert "<script>" not in md and "&lt;script>" in md


def test_over_time_block_quotes_logged_values_and_marks_the_best(overfit_run, overfit_report):
    import csv

    md = overfit_report.to_markdown()
    block = md.split("val_loss over time (logged values):", 1)[1].split("```", 2)[1]
    with open(overfit_run / "metrics.csv", newline="") as fh:
        logged = {int(r["epoch"]): float(r["val_loss"]) for r in csv.DictReader(fh)}
    rows = [line.split() for line in block.strip().splitlines()]
    assert len(rows) >= 3
    for row in rows:
        epoch, value = int(row[1]), float(row[2])
        assert value == float(f"{logged[epoch]:.4g}")
    best = overfit_report.get("overfitting")[0].evidence["best_epoch"]
    assert any(int(r[1]) == best and "<- best" in " ".join(r) for r in rows)
    assert "**First thing to do:**" in md
