"""Terminal output: rich (colour by severity, tables) on a TTY, plain text otherwise.

Plain text is also what `str(report)` gives, what pipes and CI logs get, and the fallback when
rich is not installed. Both show the same content. By default it is what a tired person reads:
the root cause with its key numbers and the first thing to do, then one line per other finding
(the ones a cause explains indented under it). `verbose` adds, for every finding, the
explanation, the thresholds, every key number and every fix, and what could not be checked.
"""

from __future__ import annotations

import sys
import textwrap

from ._common import depth_of, first_thing_to_do, fmt_value, key_numbers, run_name, thresholds

__all__ = ["render_plain", "print_reports", "use_rich"]

_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "cyan"}
_KEY_LIMIT = 8  # key numbers shown per finding in --verbose; the rest are in --md/--html/--json
_HEAD_KEYS = 6  # key numbers shown for the headline by default


def _wrap(text: str, indent: str = "    ") -> list[str]:
    # never split a word: paths and code names must stay copyable
    return textwrap.wrap(text, 100, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [indent]


def _series_rows(report) -> list[tuple[str, str, str, str, str]]:
    return [(str(m.get("name")), str(m.get("role")), str(m.get("points")), str(m.get("unit", "")),
             str(m.get("file", "")))
            for m in (report.source or {}).get("metrics") or []]


def _file_stats(report) -> list[str]:
    """Per text log: how many lines were understood, and examples of number lines that were not."""
    out = []
    for f in (report.source or {}).get("files") or []:
        line = f"{f.get('path')}: {f.get('understood')} of {f.get('lines')} lines understood"
        if f.get("not_understood"):
            ex = "; ".join(f"line {e['line']}: {e['text']!r}" for e in f.get("examples") or [])
            line += f"; {f['not_understood']} line(s) with numbers not understood" + (f", e.g. {ex}" if ex else "")
        out.append(line)
    return out


def _counts(report) -> str:
    counts: dict[str, int] = {}
    for f in report.findings:
        counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
    return ", ".join(f"{n} {sev}{'s' if n != 1 else ''}" for sev, n in counts.items())


def _nums(f, limit: int) -> str:
    nums = key_numbers(f)
    shown = ", ".join(f"{k}={fmt_value(v)}" for k, v in nums[:limit])
    return shown + (", ..." if len(nums) > limit else "")


def _one_line(report, f) -> str:
    """`SEVERITY code: title [metric]`, indented two spaces per level of explanation."""
    depth = depth_of(report, f)
    pad = "  " * depth
    arrow = "-> " if depth else ""
    tail = f"  [{f.metric}]" if f.metric else ""
    why = f"  (explained by {f.explained_by})" if depth else ""
    return f"{pad}{arrow}{f.severity.value.upper():7} {f.code}: {f.title}{tail}{why}"


def _header(report, show_series: bool) -> list[str]:
    src = report.source or {}
    lines = []
    head = f"traindoctor {report.kind}: {run_name(report)}"
    if src.get("format"):
        head += f"  [{src['format']}]"
    if src.get("status"):  # how the logger says the run ended (RUNNING after a crash)
        head += f"  run status {src['status']}"
    lines.append(head)
    if src.get("path") and str(src["path"]) != run_name(report):
        lines.append(f"  {src['path']}")
    rows = _series_rows(report)
    if show_series and rows:
        w = max(len(r[0]) for r in rows)
        lines.append("series read (name, role, points, unit, file):")
        lines += [f"  {n:<{w}}  {role:<15} {pts:>7}  {unit:<5}  {file}".rstrip() for n, role, pts, unit, file in rows]
        lines += [f"  {x}" for x in _file_stats(report)]
    elif rows:
        lines.append(f"series read: {len(rows)} (--show-series lists them)")
    for note in src.get("notes") or []:
        lines.append(f"note: {note}")
    if not report.findings:
        lines.append("no findings: nothing wrong found by the checks that could run")
    else:
        lines.append("findings: " + _counts(report))
    return lines


def render_plain(report, show_series: bool = False, verbose: bool = False) -> str:
    lines = _header(report, show_series)
    if verbose:
        lines += _verbose_findings(report)
    elif report.findings:
        lines += _short_findings(report)
    if report.skipped and verbose:
        lines.append("")
        lines.append(f"not checked ({len(report.skipped)}):")
        lines += [f"  {s.code}: {s.reason}" for s in report.skipped]
    elif report.skipped:
        n = len(report.skipped)
        lines.append(f"not checked: {n} check{'s' if n != 1 else ''} (--verbose says why)")
    return "\n".join(lines)


def _short_findings(report) -> list[str]:
    """The headline with its key numbers and first fix; one line for every other finding."""
    lead = report.findings[0]
    lines = ["", _one_line(report, lead)]
    if key_numbers(lead):
        lines += _wrap(_nums(lead, _HEAD_KEYS), "        ")
    todo = first_thing_to_do(report)
    if todo is not None:
        f, fix = todo
        lines += _wrap(f"first thing to do: {fix.action}" + ("" if f is lead else f" (for {f.code})"),
                       "        ")
        if fix.code:
            lines += [f"            {c}" for c in fix.code.splitlines()]
    rest = report.findings[1:]
    if rest:
        lines.append("")
        lines += [_one_line(report, f) for f in rest]
    lines += ["", "(--verbose: explanations, thresholds and every fix; --html/--md/--json: full evidence)"]
    return lines


def _verbose_findings(report) -> list[str]:
    lines = []
    for f in report.findings:
        pad = "  " * depth_of(report, f)
        lines.append("")
        lines.append(_one_line(report, f))
        body = pad + "        "
        if key_numbers(f):
            lines += _wrap(_nums(f, _KEY_LIMIT), body)
        th = thresholds(f)
        if th:
            lines += _wrap("thresholds: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in th.items()), body)
        if f.explanation:
            lines += _wrap(f.explanation, body)
        for i, fix in enumerate(f.fixes, 1):
            lines += _wrap(f"fix {i}: {fix.action}", body)
            if fix.code:
                lines += [f"{body}    {c}" for c in fix.code.splitlines()]
    return lines


def use_rich(file) -> bool:
    """rich only on an interactive terminal and only when it is installed."""
    try:
        if not file.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def print_reports(reports, show_series: bool = False, file=None, verbose: bool = False) -> None:
    file = file or sys.stdout
    if use_rich(file):
        _print_rich(reports, show_series, file, verbose)
    else:
        print("\n\n".join(render_plain(r, show_series, verbose) for r in reports), file=file)


def _print_rich(reports, show_series: bool, file, verbose: bool = False) -> None:
    from rich.console import Console, Group
    from rich.markup import escape
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file, highlight=False)
    for report in reports:
        src = report.source or {}
        head = Text(f"traindoctor {report.kind}: ", style="bold")
        head.append(run_name(report))
        if src.get("format"):
            head.append(f"  [{src['format']}]", style="dim")
        if src.get("status"):
            head.append(f"  run status {src['status']}", style="dim" if src["status"] == "FINISHED" else "bold red")
        console.print(head)
        rows = _series_rows(report)
        if show_series and rows:
            t = Table(title="series read", title_justify="left", show_edge=False)
            for col, just in (("name", "left"), ("role", "left"), ("points", "right"), ("unit", "left"),
                              ("file", "left")):
                t.add_column(col, justify=just)
            for r in rows:
                t.add_row(*(Text(c) for c in r))
            console.print(t)
            for x in _file_stats(report):
                console.print(Text(x, style="dim"))
        elif rows:
            console.print(Text(f"series read: {len(rows)} (--show-series lists them)", style="dim"))
        for note in src.get("notes") or []:
            console.print(Text(f"note: {note}", style="yellow"))
        if not report.findings:
            console.print(Text("✓ no findings: nothing wrong found by the checks that could run", style="green"))
        else:
            console.print(Text("findings: " + _counts(report), style="bold"))
        shown = report.findings if verbose else report.findings[:1]
        for f in shown:
            style = _STYLE[f.severity.value]
            brief = not verbose  # the headline by default: key numbers and the first fix only
            body = []
            nums = key_numbers(f)
            if nums:
                kv = Table.grid(padding=(0, 2))
                kv.add_column(style="dim")
                kv.add_column()
                for k, v in nums[: _HEAD_KEYS if brief else _KEY_LIMIT]:
                    kv.add_row(Text(k), Text(fmt_value(v)))
                body.append(kv)
            th = thresholds(f)
            if th and not brief:
                body.append(Text("thresholds: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in th.items()),
                                 style="dim"))
            if f.explanation and not brief:
                body.append(Text(f.explanation))
            todo = first_thing_to_do(report)
            fixes = list(enumerate(f.fixes, 1)) if not brief else ([("first thing to do", todo[1])] if todo else [])
            for i, fix in fixes:
                line = Text(f"fix {i}: " if isinstance(i, int) else f"{i}: ", style="bold green")
                line.append(fix.action, style="bold")
                line.append(f"  ({fix.why})", style="dim")
                body.append(line)
                if fix.code:
                    body.append(Syntax(fix.code, "python", theme="ansi_dark", background_color="default", word_wrap=True))
            title = f"[{style}]{f.severity.value.upper()}[/] {escape(f.code)}"
            if f.metric:
                title += f" [dim]{escape(f.metric)}[/]"
            if f.explained_by:
                title += f" [dim](explained by {escape(f.explained_by)})[/]"
            panel = Panel(Group(Text(f.title, style="bold"), *body), title=title, title_align="left",
                          border_style=style.split()[-1])
            console.print(Padding(panel, (0, 0, 0, 4 * depth_of(report, f))))
        if not verbose and len(report.findings) > 1:  # one line each, wrapped inside its column
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(no_wrap=True)
            grid.add_column()
            for f in report.findings[1:]:
                depth = depth_of(report, f)
                body = Text(f"{f.code}: ", style="bold")
                body.append(f.title)
                if f.metric:
                    body.append(f"  [{f.metric}]", style="dim")
                if depth:
                    body.append(f"  (explained by {f.explained_by})", style="dim")
                grid.add_row(Text("  " * depth + ("-> " if depth else "")),
                             Text(f.severity.value.upper(), style=_STYLE[f.severity.value]), body)
            console.print(grid)
        if not verbose and report.findings:
            console.print(Text("--verbose: explanations, thresholds and every fix; "
                               "--html/--md/--json: full evidence", style="dim"))
        if report.skipped and verbose:
            console.print(Text(f"not checked ({len(report.skipped)}): "
                               + "; ".join(f"{s.code} ({s.reason})" for s in report.skipped), style="dim"))
        elif report.skipped:
            n = len(report.skipped)
            console.print(Text(f"not checked: {n} check{'s' if n != 1 else ''} (--verbose says why)", style="dim"))
        console.print()
