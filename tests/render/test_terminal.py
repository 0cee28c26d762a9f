"""Terminal output: plain text off a TTY (and for str(report)), rich with colour on a TTY."""

from __future__ import annotations

import io

import pytest

from traindoctor.render.terminal import print_reports, render_plain


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_plain_text_leads_with_the_root_cause_its_numbers_and_first_fix(overfit_report):
    text = render_plain(overfit_report)
    of = overfit_report.get("overfitting")[0]
    assert overfit_report.headline is of
    assert f"WARNING overfitting: {of.title}" in text
    assert f"best_value={of.evidence['best_value']}" in text
    assert f"first thing to do: {of.fixes[0].action}" in " ".join(text.split())  # wrapped at 100
    # the short form leaves explanations, thresholds and the other fixes to --verbose
    assert "fix 1:" not in text and "thresholds:" not in text and of.explanation[:40] not in text
    for f in overfit_report.findings[1:]:  # one line for every other finding
        assert sum(f"{f.code}: {f.title}" in line for line in text.splitlines()) == 1
    assert "\x1b[" not in text
    assert str(overfit_report) == text


def test_verbose_plain_text_has_explanations_thresholds_and_every_fix(overfit_report):
    text = render_plain(overfit_report, verbose=True)
    of = overfit_report.get("overfitting")[0]
    assert f"WARNING overfitting: {of.title}" in text
    flat = " ".join(text.split())
    assert "thresholds: " in text and f"min_rel_rise={of.evidence['thresholds']['min_rel_rise']}" in flat
    assert of.explanation in " ".join(text.split()) and "fix 1:" in text and "fix 2:" in text
    for s in overfit_report.skipped:
        assert f"{s.code}: {s.reason}" in text


def test_print_reports_off_a_tty_is_plain(overfit_report):
    buf = io.StringIO()
    print_reports([overfit_report], file=buf)
    assert "\x1b[" not in buf.getvalue() and "overfitting" in buf.getvalue()


def test_show_series_lists_names_and_roles(overfit_report):
    text = render_plain(overfit_report, show_series=True)
    assert "series read (name, role, points, unit, file):" in text
    assert "metrics.csv" in text  # each series names the file it came from
    for m in overfit_report.source["metrics"]:
        assert m["name"] in text and m["role"] in text
    assert "--show-series lists them" in render_plain(overfit_report)


def test_rich_on_a_tty_colours_by_severity(overfit_report):
    pytest.importorskip("rich")
    buf = _Tty()
    print_reports([overfit_report], show_series=True, file=buf)
    out = buf.getvalue()
    assert "\x1b[" in out  # coloured
    assert "WARNING" in out and "overfitting" in out and "series read" in out
    of = overfit_report.get("overfitting")[0]
    assert str(of.evidence["best_value"]) in out


def test_rich_does_not_interpret_markup_from_logs():
    pytest.importorskip("rich")
    import traindoctor as td

    h = td.RunHistory.from_dict({"[bold red]val_loss[/]": [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]},
                                epochs=True, path="[link]p", format="t")
    buf = _Tty()
    print_reports([td.diagnose(h)], show_series=True, file=buf)
    assert "[bold red]val_loss[/]" in buf.getvalue()
