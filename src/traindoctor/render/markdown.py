"""Markdown reports shaped like the post-mortems people write by hand (see DESIGN.md's seeds):
title, summary, key findings with their numbers, root cause, ranked fixes with code,
verification steps, what could not be checked, and the data read.

Every number printed comes from a finding's evidence or from the report's source; nothing is
recomputed here, so the Markdown can never disagree with the JSON.
"""

from __future__ import annotations

from ._common import (
    SEVERITY_ICON,
    depth_of,
    first_thing_to_do,
    fmt_value,
    key_numbers,
    over_time,
    run_name,
    structured_evidence,
    thresholds,
)

__all__ = ["render_markdown"]


def _md_escape(text: str) -> str:
    """Keep log-supplied names from turning into Markdown/HTML markup."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("`", "'")


def _code(text) -> str:
    return "`" + str(text).replace("`", "'") + "`"


def render_markdown(report) -> str:
    name = run_name(report)
    src = report.source or {}
    what = "Pre-flight probe" if report.kind == "probe" else "Training diagnosis"
    out = [f"# {what}: {_md_escape(name)}", ""]
    if src.get("path") and str(src.get("path")) != name:
        out += [f"Source: {_code(src['path'])}" + (f" ({_md_escape(src['format'])})" if src.get("format") else ""), ""]
    elif src.get("format"):
        out += [f"Format: {_md_escape(src['format'])}", ""]
    if src.get("status"):  # how the logger says the run ended (RUNNING after a crash)
        out += [f"Run status: **{_md_escape(src['status'])}**", ""]

    out += ["## Summary", ""]
    if not report.findings:
        n = len(src.get("metrics") or [])
        checked = f" on the {n} series read" if n else ""
        out += [f"No problem found by the checks that could run{checked}."
                + (f" {len(report.skipped)} checks could not run (see below)." if report.skipped else ""), ""]
    else:
        counts = {}
        for f in report.findings:
            counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
        out += [", ".join(f"{v} {k}{'s' if v != 1 else ''}" for k, v in counts.items()) + ".", ""]
        out += ["**Key findings:**", ""]
        for f in report.findings:  # what a cause explains is indented under it
            nums = key_numbers(f)[:4]
            tail = f" ({', '.join(f'{k}={fmt_value(v)}' for k, v in nums)})" if nums else ""
            by = f" — explained by {_code(f.explained_by)}" if depth_of(report, f) else ""
            out.append(f"{'  ' * depth_of(report, f)}- {SEVERITY_ICON[f.severity.value]} "
                       f"**{_md_escape(f.title)}** [{_code(f.code)}{', ' + _code(f.metric) if f.metric else ''}]"
                       f"{tail}{by}")
        out.append("")

        groups = report.groups()
        act = [g for g in groups if g[0].severity.value != "info"]
        info = [g for g in groups if g[0].severity.value == "info"]
        todo = first_thing_to_do(report)
        if todo is not None:
            out += [f"**First thing to do:** {_md_escape(todo[1].action)} (for {_code(todo[0].code)}).", ""]
        for heading, group in (("Root cause", act), ("Also noticed (context, no action needed)", info)):
            if not group:
                continue
            out += [f"## {heading}", ""]
            for i, (f, explained) in enumerate(group, 1):
                out += [f"### {i}. {_md_escape(f.title)}", ""]
                if f.explanation:
                    out += [_md_escape(f.explanation), ""]
                if group is act:
                    out += _over_time_block(report, f)
                out += _evidence_block(f)
                if explained:
                    out += ["**What this explains** (not separate problems; their own advice does not apply):", ""]
                    for j, e in enumerate(explained, 1):
                        out += [f"#### {i}.{j}. {_md_escape(e.title)} "
                                f"[{_code(e.code)}{', ' + _code(e.metric) if e.metric else ''}]", ""]
                        if e.explanation:
                            out += [_md_escape(e.explanation), ""]
                        out += _evidence_block(e)

        seen: set[str] = set()
        fixes = []
        for f in report.findings:  # root causes first; what a cause explains adds no fix of its own
            if f.explained_by is not None and depth_of(report, f):
                continue
            for fix in f.fixes:
                if fix.action not in seen:
                    seen.add(fix.action)
                    fixes.append((f, fix))
        if fixes:
            out += ["## Fixes, most likely first", ""]
            for i, (f, fix) in enumerate(fixes, 1):
                out += [f"### Fix {i}: {_md_escape(fix.action)}", "",
                        f"{_md_escape(fix.why)} (for {_code(f.code)})", ""]
                if fix.code:
                    out += ["```python", fix.code.replace("```", "'''"), "```", ""]

        act = [f for f, _ in act]
        if act:
            out += ["## Verification steps", "",
                    "After the fix, run the same training and check the new run with "
                    "`traindoctor diagnose NEW_RUN`; it should show:", ""]
            out += [f"- {_verification(f)}" for f in act]
            out.append("")

    if report.skipped:
        out += ["## Not checked", ""]
        out += [f"- {_code(s.code)}: {_md_escape(s.reason)}" for s in report.skipped]
        out.append("")
    out += _data_read(report)
    return "\n".join(out).rstrip() + "\n"


def _over_time_block(report, f) -> list[str]:
    rows = over_time(report, f)
    if not rows:
        return []
    unit = f.evidence.get("unit", "step")
    w = max(len(r[0]) for r in rows)
    vw = max(len(r[1]) for r in rows)
    lines = [(f"{unit.capitalize()} {x:<{w}}  {v:<{vw}}" + (f"  <- {n}" if n else "")).rstrip() for x, v, n in rows]
    return [f"{_md_escape(f.metric)} over time (logged values):", "", "```", *lines, "```", ""]


def _evidence_block(f) -> list[str]:
    out = []
    nums = key_numbers(f)
    if nums:
        out += ["| measured | value |", "|---|---|"]
        out += [f"| {_md_escape(k)} | {_md_escape(fmt_value(v))} |" for k, v in nums]
        out.append("")
    th = thresholds(f)
    if th:
        out += ["Thresholds used: " + ", ".join(_code(f"{k}={fmt_value(v)}") for k, v in th.items()), ""]
    if f.steps:
        unit = f.evidence.get("unit", "step")
        out += [f"Window: {unit} {fmt_value(f.steps[0])} to {fmt_value(f.steps[1])}.", ""]
    for k, v in structured_evidence(f):
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            cols = list(dict.fromkeys(c for r in v for c in r))
            out += [f"{_md_escape(k)}:", "", "| " + " | ".join(_md_escape(c) for c in cols) + " |",
                    "|" + "---|" * len(cols)]
            out += ["| " + " | ".join(_md_escape(fmt_value(r.get(c))) for c in cols) + " |" for r in v]
            out.append("")
        else:
            out += [f"{_md_escape(k)}: {_md_escape(fmt_value(v))}", ""]
    return out


def _verification(f) -> str:
    """What the next run should show, in numbers from this finding's evidence only."""
    ev = f.evidence
    metric = _code(f.metric) if f.metric else "the run"
    unit = ev.get("unit", "step")
    th = thresholds(f)
    rule = (" (rule: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in th.items()) + ")") if th else ""
    best = ev.get("best_value")
    where = ev.get("best_epoch" if unit == "epoch" else "best_step")
    if f.code == "overfitting" and best is not None:
        final = ev.get("final_value")
        at = f" at {unit} {fmt_value(where)}" if where is not None else ""
        fin = f", not end at {fmt_value(final)} as this run did" if final is not None else ""
        return (f"{metric} reaches at least as good as {fmt_value(best)} (this run's best{at}) and then "
                f"stops or stays flat instead of rising{fin}; no `overfitting` finding{rule}.")
    if f.code == "nan_loss":
        first = ev.get("first_step", ev.get(f"first_{unit}"))
        past = f" past {unit} {fmt_value(first)}" if first is not None else ""
        return f"{metric} stays finite{past}; no `nan_loss` finding."
    return f"no {_code(f.code)} finding on {metric}{rule}."


def _data_read(report) -> list[str]:
    src = report.source or {}
    out = []
    metrics = src.get("metrics") or []
    if metrics:
        out += ["## Data read", "", "| series | role | points | unit |", "|---|---|---|---|"]
        out += [f"| {_md_escape(m.get('name'))} | {_md_escape(m.get('role'))} | {m.get('points')} | "
                f"{_md_escape(m.get('unit', ''))} |" for m in metrics]
        out.append("")
    cks = src.get("checkpoints") or []
    if cks:
        out += ["Checkpoints found:", ""]
        out += [f"- {_code(c.get('path'))}" + (f" (epoch {c['epoch']})" if c.get("epoch") is not None else "")
                + (f" (step {c['step']})" if c.get("step") is not None else "")
                + (f" [{c['tag']}]" if c.get("tag") else "") for c in cks[:30]]
        if len(cks) > 30:
            out.append(f"- … and {len(cks) - 30} more")
        out.append("")
    notes = src.get("notes") or []
    if notes:
        out += ["Notes:", ""] + [f"- {_md_escape(n)}" for n in notes] + [""]
    hist = report.history
    hparams = dict(getattr(hist, "hparams", {}) or {})
    if hparams:
        out += ["Hyperparameters: " + ", ".join(_code(f"{k}={fmt_value(v)}") for k, v in list(hparams.items())[:60]), ""]
    return out
