"""One self-contained HTML page per report (or several reports): inline CSS and SVG only.

Nothing is loaded from the network (no CDN, no web fonts, no scripts), so the file works
offline and can be attached to an issue. Everything that comes from a log (metric names,
paths, hparams, notes) goes through `html.escape`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from .. import __version__
from ._common import (
    best_point,
    depth_of,
    first_thing_to_do,
    fmt_value,
    key_numbers,
    plot_series,
    run_name,
    severity_counts,
    structured_evidence,
    thresholds,
    unit_of,
)
from .plots import PALETTE, SPLIT_COLOURS, Line, line_plot

__all__ = ["render_html", "render_html_many", "page"]

_CSS = """
:root{--err:#b00020;--warn:#a15c00;--info:#1f5f9e;--ink:#1d1d24;--mute:#5c5c6b;--line:#dcdce4}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ink);
 margin:0;background:#f4f4f8}
main{max-width:980px;margin:0 auto;padding:24px 20px 60px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid var(--line);
 padding-bottom:4px}h3{font-size:16px;margin:0 0 6px}
.sub{color:var(--mute);margin:0 0 12px;word-break:break-all}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:12px 0}
.card.error{border-left:5px solid var(--err)}.card.warning{border-left:5px solid var(--warn)}
.card.info{border-left:5px solid var(--info)}
.badge{display:inline-block;font-size:12px;font-weight:600;border-radius:10px;padding:1px 9px;margin-right:6px;
 color:#fff;vertical-align:2px}
.badge.error{background:var(--err)}.badge.warning{background:var(--warn)}.badge.info{background:var(--info)}
.badge.ok{background:#2e7d32}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f3f3f7;border:1px solid var(--line);border-radius:6px;padding:8px 10px;overflow-x:auto;
 white-space:pre-wrap;word-break:break-word}
table{border-collapse:collapse;margin:6px 0;font-size:13.5px}
td,th{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:var(--mute);font-size:13px}
ol.fixes li{margin:6px 0}.why{color:var(--mute)}
svg.plot{display:block;max-width:100%;height:auto;margin:8px 0;border:1px solid var(--line);border-radius:6px}
svg .pt{font:600 13px system-ui,sans-serif;fill:#1d1d24}svg .tk{font:11px system-ui,sans-serif;fill:#4a4a55}
svg .pl{font:12px system-ui,sans-serif;fill:#4a4a55}svg .bl{font:600 11px system-ui,sans-serif;fill:#d62728}
details{margin:6px 0}summary{cursor:pointer;color:var(--mute)}
.kv{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:2px 14px;font-size:13.5px;
 margin:6px 0;padding:6px 8px;background:#f7f7fa;border-radius:6px}.kv .k{color:var(--mute)}
.runsep{border-top:3px solid #9a9aae;margin:40px 0 0}
.card.explained{margin-left:34px}ul ul{margin:2px 0}
"""


def page(title: str, body: str) -> str:
    """A complete HTML document around `body` (already escaped HTML)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}<p class=\"meta\">traindoctor {escape(__version__)} &middot; "
        "this page is self-contained: it loads nothing from the network.</p></main></body></html>\n"
    )


def render_html(report) -> str:
    return page(f"traindoctor: {run_name(report)}", report_section(report, level=1))


def render_html_many(reports: Sequence, title: str = "traindoctor: several runs", preamble: str = "") -> str:
    """Several reports on one page; `preamble` is trusted HTML (compare's table) put first."""
    counts = severity_counts(reports)
    head = (f"<h1>{escape(title)}</h1><p class=\"sub\">{len(reports)} runs &middot; "
            f"{_counts_html(counts)}</p>{preamble}")
    body = [head]
    for i, r in enumerate(reports):
        body.append(f'<div class="runsep" id="run-{i}"></div>')
        body.append(report_section(r, level=2, anchor=f"run{i}-"))
    return page(title, "".join(body))


def _counts_html(counts: dict) -> str:
    if not any(counts.values()):
        return '<span class="badge ok">no findings</span>'
    return " ".join(f'<span class="badge {k}">{n} {k}{"s" if n != 1 else ""}</span>'
                    for k, n in counts.items() if n)


def report_section(report, level: int = 1, anchor: str = "") -> str:
    h = f"h{level}"
    src = report.source or {}
    name = run_name(report)
    what = "Probe" if report.kind == "probe" else "Diagnosis"
    out = [f"<{h}>{what}: {escape(name)}</{h}>"]
    sub = [escape(str(src.get("path", "")))] if src.get("path") else []
    if src.get("format"):
        sub.append(f"format {escape(str(src['format']))}")
    if src.get("status"):  # how the logger says the run ended (RUNNING after a crash)
        sub.append(f"run status <b>{escape(str(src['status']))}</b>")
    out.append(f'<p class="sub">{" &middot; ".join(sub)}</p>')
    out.append(_summary(report, anchor))
    if report.findings:
        out.append("<h2>Findings</h2>")
        for i, f in enumerate(report.findings):
            out.append(_finding_card(report, f, f"{anchor}f{i}"))
    out.append(_curves(report))
    out.append(_data_read(report))
    if report.skipped:
        rows = "".join(f"<tr><td><code>{escape(s.code)}</code></td><td>{escape(s.reason)}</td></tr>"
                       for s in report.skipped)
        out.append(f"<h2>Not checked</h2><table><tr><th>check</th><th>why</th></tr>{rows}</table>")
    return "".join(out)


def _summary(report, anchor: str) -> str:
    counts = severity_counts([report])
    index = {id(f): i for i, f in enumerate(report.findings)}

    def item(f) -> str:
        return (f'<li><span class="badge {f.severity.value}">{f.severity.value}</span>'
                f'<a href="#{anchor}f{index[id(f)]}">{escape(f.title)}</a> <code>{escape(f.code)}</code>')

    # what a root cause explains is listed under it
    items = "".join(item(root) + (f"<ul>{''.join(item(e) + '</li>' for e in explained)}</ul>" if explained else "")
                    + "</li>" for root, explained in report.groups())
    text = (f"<ul>{items}</ul>" if items else
            "<p>No problem found by the checks that could run on this data.</p>")
    todo = first_thing_to_do(report)
    if todo is not None:
        text += (f"<p><b>First thing to do:</b> {escape(todo[1].action)} "
                 f"<span class=\"meta\">(for <code>{escape(todo[0].code)}</code>)</span></p>")
    return f'<div class="card"><h3>Summary {_counts_html(counts)}</h3>{text}</div>'


def _finding_card(report, f, anchor: str) -> str:
    sev = f.severity.value
    about = "about" if report.kind == "probe" else "metric"
    explained = depth_of(report, f) > 0
    by = (f" &middot; explained by <code>{escape(f.explained_by)}</code> above" if explained else "")
    head = (f'<div class="card {sev}{" explained" if explained else ""}" id="{anchor}">'
            f'<h3><span class="badge {sev}">{sev}</span>'
            f"{escape(f.title)}</h3><p class=\"meta\"><code>{escape(f.code)}</code>"
            f"{' &middot; ' + about + ' <code>' + escape(f.metric) + '</code>' if f.metric else ''}"
            f"{' &middot; ' + escape(str(f.steps[0])) + '–' + escape(str(f.steps[1])) if f.steps else ''}{by}</p>")
    out = [head, _finding_plot(report, f)]
    if f.explanation:
        out.append(f"<p>{escape(f.explanation)}</p>")
    nums = key_numbers(f)
    if nums:
        cells = "".join(f'<div><span class="k">{escape(k)}</span> <b>{escape(fmt_value(v))}</b></div>'
                        for k, v in nums)
        out.append(f'<div class="kv">{cells}</div>')
    th = thresholds(f)
    if th:
        out.append("<p class=\"meta\">thresholds: " + ", ".join(
            f"<code>{escape(k)}={escape(fmt_value(v))}</code>" for k, v in th.items()) + "</p>")
    for k, v in structured_evidence(f):
        out.append(f"<details><summary>{escape(k)}</summary>{_structured(v)}</details>")
    if f.fixes:
        lis = []
        for fix in f.fixes:
            code = f"<pre><code>{escape(fix.code)}</code></pre>" if fix.code else ""
            lis.append(f"<li><b>{escape(fix.action)}</b> <span class=\"why\">{escape(fix.why)}</span>{code}</li>")
        fixes = f'<ol class="fixes">{"".join(lis)}</ol>'
        # an explained finding's own advice is beside the point: the cause's fix comes first
        out.append(f"<details><summary>its own advice, if the cause above is ruled out</summary>{fixes}</details>"
                   if explained else fixes)
    out.append("</div>")
    return "".join(out)


def _structured(v) -> str:
    """A list of dicts as a table (the early-stopping counterfactual), anything else as text."""
    if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
        cols = list(dict.fromkeys(k for r in v for k in r))
        head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
        rows = "".join("<tr>" + "".join(f'<td class="num">{escape(fmt_value(r.get(c)))}</td>' for c in cols)
                       + "</tr>" for r in v)
        return f"<table><tr>{head}</tr>{rows}</table>"
    if isinstance(v, dict):
        rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(fmt_value(x))}</td></tr>" for k, x in v.items())
        return f"<table>{rows}</table>"
    return f"<pre>{escape(fmt_value(v))}</pre>"


def _lines_for(series_list, unit: str) -> list[Line]:
    lines = []
    for i, s in enumerate(series_list):
        if unit == "epoch" and s.epochs is None:
            continue  # cannot place a step-only series on an epoch axis
        colour = SPLIT_COLOURS.get(s.split or "", PALETTE[(i + 3) % len(PALETTE)])
        lines.append(Line(s.name, s.x(unit), s.values, colour, dashed=(s.split == "train" and i > 0)))
    return lines


def _finding_plot(report, f) -> str:
    series = plot_series(report, f)
    if not series:
        return ""
    unit = unit_of(f, series[0])
    lines = _lines_for(series, unit)
    if not lines:
        return ""
    points = []
    bp = best_point(f, unit)
    if bp is not None:
        points.append((bp[0], bp[1], f"best {unit} {fmt_value(bp[0])}: {fmt_value(bp[1])}"))
    shade = tuple(f.steps) if f.steps and all(isinstance(v, (int, float)) for v in f.steps) else None
    return line_plot(lines, title=f"{f.metric}", xlabel=unit, shade=shade, points=points)


def _curves(report) -> str:
    """Overview plots: one per kind of series (losses, accuracies, errors, learning rate)."""
    hist = report.history
    if hist is None or not getattr(hist, "series", None):
        return ""
    groups: dict[str, list] = {}
    for s in hist.series.values():
        if len(s) == 0 or s.kind in ("epoch", "time", "other"):
            continue
        groups.setdefault(s.kind, []).append(s)
    out = []
    for kind in ("loss", "accuracy", "error", "lr", "grad_norm"):
        ss = groups.get(kind, [])[:6]
        if not ss:
            continue
        unit = "epoch" if all(s.epochs is not None for s in ss) else "step"
        lines = _lines_for(ss, unit)
        if lines:
            out.append(line_plot(lines, title=kind, xlabel=unit))
    return ("<h2>Curves</h2>" + "".join(out)) if out else ""


def _opt(v) -> str:
    return "" if v is None else escape(fmt_value(v))


def _data_read(report) -> str:
    src = report.source or {}
    out = []
    metrics = src.get("metrics") or []
    if metrics:
        rows = "".join(
            f"<tr><td><code>{escape(str(m.get('name')))}</code></td><td>{escape(str(m.get('role')))}</td>"
            f"<td class=\"num\">{escape(str(m.get('points')))}</td><td>{escape(str(m.get('unit', '')))}</td></tr>"
            for m in metrics
        )
        out.append("<h3>Series</h3><table><tr><th>name</th><th>role</th><th>points</th><th>unit</th></tr>"
                   f"{rows}</table>")
    hist = report.history
    hparams = dict(getattr(hist, "hparams", {}) or {})
    if hparams:
        rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(fmt_value(v))}</td></tr>"
                       for k, v in list(hparams.items())[:200])
        out.append(f"<h3>Hyperparameters</h3><table>{rows}</table>")
    cks = src.get("checkpoints") or []
    if cks:
        rows = "".join(
            f"<tr><td><code>{escape(str(c.get('path')))}</code></td><td class=\"num\">{_opt(c.get('epoch'))}"
            f"</td><td class=\"num\">{_opt(c.get('step'))}</td><td>{_opt(c.get('tag'))}</td></tr>"
            for c in cks[:100]
        )
        out.append("<h3>Checkpoints</h3><table><tr><th>path</th><th>epoch</th><th>step</th><th>tag</th></tr>"
                   f"{rows}</table>")
    notes = src.get("notes") or []
    if notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>")
    other = {k: v for k, v in src.items() if k not in ("path", "format", "run", "metrics", "checkpoints", "notes")}
    if other or report.meta:
        rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(fmt_value(v))}</td></tr>"
                       for k, v in {**other, **dict(report.meta)}.items())
        out.append(f"<h3>Metadata</h3><table>{rows}</table>")
    return ("<h2>Data read</h2>" + "".join(out)) if out else ""
