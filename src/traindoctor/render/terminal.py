"""Terminal output. Plain text when stdout is not a terminal."""

from __future__ import annotations

import sys


def render_plain(report, show_series: bool = False) -> str:
    lines = []
    src = report.source or {}
    if src.get("path"):
        lines.append(f"{src.get('path')}  [{src.get('format', '')}]")
    metrics = src.get("metrics") or []
    if metrics:
        lines.append("series read: " + ", ".join(f"{m['name']} ({m['role']}, {m['points']})" for m in metrics))
    for note in src.get("notes") or []:
        lines.append(f"note: {note}")
    if not report.findings:
        lines.append("no findings")
    for f in report.findings:
        lines.append("")
        lines.append(f"{f.severity.value.upper():7} {f.code}: {f.title}")
        ev = ", ".join(f"{k}={v}" for k, v in f.evidence.items() if not isinstance(v, (list, dict)))
        if ev:
            lines.append(f"        {ev}")
        for i, fix in enumerate(f.fixes, 1):
            lines.append(f"        fix {i}: {fix.action}")
    if report.skipped:
        lines.append("")
        lines.append("skipped: " + "; ".join(f"{s.code} ({s.reason})" for s in report.skipped))
    return "\n".join(lines)


def print_reports(reports, show_series: bool = False, file=None) -> None:
    file = file or sys.stdout
    print("\n\n".join(render_plain(r, show_series) for r in reports), file=file)
