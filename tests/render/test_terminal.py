"""Terminal output: plain text off a TTY (and for str(report)), rich with colour on a TTY."""

from __future__ import annotations

import io

import pytest

from traindoctor.render.terminal import print_reports, render_plain


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_plain_text_has_findings_numbers_and_fixes(overfit_report):
    text = render_plain(overfit_report)
    of = overfit_report.get("overfitting")[0]
    assert f"WARNING overfitting: {of.title}" in text
    assert f"best_value={of.evidence['best_value']}" in text
    assert "fix 1:" in text
    assert "\x1b[" not in text
    assert str(overfit_report) == text


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
