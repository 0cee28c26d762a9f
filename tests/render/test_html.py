"""The HTML report: one self-contained file, a plot per finding, everything from the logs escaped."""

from __future__ import annotations

import re

import numpy as np

import traindoctor as td
from traindoctor.render.html import render_html, render_html_many


def _assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    # the only URL is the SVG namespace, which browsers never fetch
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert not re.search(r"<[a-zA-Z][^>]*\ssrc\s*=", page)  # no tag loads anything


def test_report_of_a_real_run_has_a_plot_per_finding_and_marks_the_best_epoch(overfit_report):
    page = overfit_report.to_html()
    _assert_self_contained(page)
    of = overfit_report.get("overfitting")
    assert of, overfit_report.codes()
    with_plot = [f for f in overfit_report.findings if f.metric in overfit_report.history.series]
    # one plot per finding with a metric, plus the overview curves
    assert page.count("<svg") >= len(with_plot) + 1
    best = of[0].evidence["best_epoch"]
    assert f"best epoch {best}:" in page
    assert 'class="best"' in page and 'class="shade"' in page
    # the series table and hparams from hparams.json, and the checkpoint the demo saved
    assert "<td><code>val_loss</code></td>" in page and "num_classes" in page
    assert f"epoch={best}.pt" in page
    for f in overfit_report.findings:
        assert f.code in page


def test_a_metric_named_like_a_script_tag_is_shown_as_text(tb_run):
    report = td.diagnose(tb_run)
    names = [m["name"] for m in report.source["metrics"]]
    assert "<script>alert(1)</script>" in names
    page = report.to_html()
    _assert_self_contained(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_hparams_notes_and_paths_are_escaped():
    h = td.RunHistory.from_dict({"val_loss": [1.0, 0.5, 0.4]}, epochs=True, path="/tmp/<b>run</b>",
                                format="test", hparams={"<img src=x onerror=alert(1)>": "<i>"},
                                notes=("<script>bad()</script>",))
    page = render_html(td.diagnose(h))
    _assert_self_contained(page)
    assert "<img" not in page and "<i>" not in page and "<b>run" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_many_reports_on_one_page(overfit_report, tb_run):
    page = render_html_many([overfit_report, td.diagnose(tb_run)])
    _assert_self_contained(page)
    assert page.count('class="runsep"') == 2
    # anchors stay unique across runs
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_nan_values_break_the_line_and_are_marked():
    v = [2.0, 1.5, 1.2, float("nan"), float("nan"), 1.0, 0.9]
    h = td.RunHistory.from_dict({"train_loss": v, "val_loss": [2.0, 1.6, 1.3, 1.2, 1.1, 1.05, 1.0]},
                                epochs=True, path="nan-run", format="test")
    page = render_html(td.diagnose(h))
    svg = page[page.index("<h2>Curves</h2>"):]
    assert "train_loss: nan at 3" in svg and "train_loss: nan at 4" in svg
    first = svg[: svg.index("</svg>")]
    # the train line is drawn as two pieces around the NaN gap
    assert first.count('stroke="#0072B2" stroke-width="1.6"') == 2


def test_a_report_without_findings_or_history_still_renders():
    page = td.Report(source={"model": "Net"}, kind="probe").to_html()
    _assert_self_contained(page)
    assert "Probe: Net" in page and "no findings" in page


def test_huge_series_is_drawn_decimated_but_keeps_its_spike():
    n = 200_000
    v = np.linspace(3, 1, n)
    v[123_457] = 50.0
    h = td.RunHistory({"train_loss": td.Series("train_loss", np.arange(n), v)}, path="big", format="test")
    page = render_html(td.Report(source=h.source(), history=h))
    assert len(page) < 400_000  # drawn with a few thousand points, not 200k
    pts = re.search(r'<polyline class="series"[^>]* points="([^"]+)"', page).group(1).split()
    ys = [float(p.split(",")[1]) for p in pts]
    assert len(pts) <= 4 * 860
    # the spike is the highest point drawn (smallest SVG y)
    top = min(ys)
    assert sum(1 for y in ys if y == top) == 1
