"""compare: several runs side by side (the table of experiments people keep by hand).

For each run: the validation metric it is judged on, its best value and where, its final value,
its findings; then the hyperparameters that differ between the runs (Lightning hparams.yaml,
HF trainer arguments, MLflow params, whatever the reader put in `RunHistory.hparams`).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from .finding import Report, Severity, json_safe
from .history import flatten_names

__all__ = ["RunSummary", "Comparison", "compare", "command"]

# the series a run is judged on, most preferred first (what early stopping would monitor): a
# validation metric whenever one is logged; without one, a training accuracy before a training
# loss (an accuracy means the same whatever loss a run used; losses of different runs may not)
_MONITOR_ROLES = ("val_loss", "val_error", "val_accuracy", "train_accuracy", "train_error", "train_loss")
# findings (at warning or above) that say a metric's numbers do not measure the task: a loss of 0
# at chance accuracy, a negative cross-entropy, an accuracy above 1, a loss that never moved. A run
# whose judged metric they concern is never crowned best, however good its number looks.
_MEANINGLESS = ("metric_disagreement", "impossible_value", "loss_constant")
# of those, the ones that condemn every series of the same kind (a wrong loss function makes every
# loss the run logs meaningless, not only the one the finding is about)
_WHOLE_KIND = ("metric_disagreement", "impossible_value")
_MAX_HPARAM_VALUE = 60  # characters shown of one hparam value in tables


@dataclass(frozen=True)
class RunSummary:
    name: str
    path: str
    format: str
    metric: str | None  # the series the run is judged on
    higher_is_better: bool = False
    unit: str = "step"
    best_value: float | None = None
    best_at: float | None = None  # epoch or step, in `unit`
    final_value: float | None = None
    final_at: float | None = None
    points: int = 0
    codes: tuple[str, ...] = ()
    worst: str | None = None
    role: str = ""  # the metric's role (val_loss, val_accuracy, ...): runs compare only within one
    not_ranked: str | None = None  # why this run cannot be crowned (its findings), or None

    def to_dict(self) -> dict:
        return json_safe({
            "name": self.name, "path": self.path, "format": self.format, "metric": self.metric,
            "role": self.role,
            "mode": "max" if self.higher_is_better else "min", "unit": self.unit,
            "best_value": self.best_value, f"best_{self.unit}": self.best_at,
            "final_value": self.final_value, f"final_{self.unit}": self.final_at,
            "points": self.points, "findings": list(self.codes), "worst": self.worst,
            "ranked": self.not_ranked is None, "not_ranked_because": self.not_ranked,
        })


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunSummary, ...]
    reports: tuple[Report, ...] = field(repr=False)
    hparams_differ: Mapping[str, tuple]  # key -> one value per run (None when a run lacks it)
    hparams_same: Mapping[str, Any]

    def best_run(self) -> RunSummary | None:
        """The run with the best value, when all runs are judged on the same kind of metric;
        never one whose findings say that metric is meaningless."""
        judged = [r for r in self.runs if r.best_value is not None]
        if not judged or len({r.role for r in judged}) != 1:
            return None
        cands = [r for r in judged if r.not_ranked is None]
        if not cands:
            return None
        return (max if cands[0].higher_is_better else min)(cands, key=lambda r: r.best_value)

    def to_dict(self) -> dict:
        from . import __version__

        best = self.best_run()
        return {
            "traindoctor": __version__,
            "kind": "compare",
            "runs": [r.to_dict() for r in self.runs],
            "best_run": best.name if best else None,
            "hparams_differ": json_safe({k: list(v) for k, v in self.hparams_differ.items()}),
            "hparams_same": json_safe(dict(self.hparams_same)),
            "reports": [r.to_dict() for r in self.reports],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_markdown(self) -> str:
        return _markdown(self)

    def to_html(self) -> str:
        from .render.html import render_html_many

        return render_html_many(list(self.reports), title="traindoctor: runs compared",
                                preamble=_html_table(self))

    def __str__(self) -> str:
        return _plain(self)


# -- building ---------------------------------------------------------------------------------
def compare(paths_or_runs: Iterable, *, only=None, ignore=None, experiment: str | None = None) -> Comparison:
    """Compare runs: paths (each may hold several runs), RunHistory objects or Reports.
    `experiment`: the MLflow experiment to read from an mlflow.db or a tracking server."""
    from .engine import diagnose
    from .history import RunHistory
    from .readers import load_runs

    items: list[tuple[str, Any]] = []
    for item in paths_or_runs:
        if isinstance(item, Report):
            items.append((_label(item.source.get("path", ""), item.source.get("run", "")), item))
        elif isinstance(item, RunHistory):
            items.append((_label(item.path, item.run), item))
        else:
            runs = load_runs(item, experiment=experiment)
            for run in runs:
                label = str(item) if len(runs) == 1 else f"{item}/{run.run}" if run.run else str(item)
                items.append((label, run))
    names = _unique_names([n for n, _ in items])
    reports = []
    for _, item in items:
        rep = item if isinstance(item, Report) else diagnose(item)
        reports.append(rep.filtered(only, ignore))
    role = _common_role(reports)
    summaries = [_summarise(name, rep, role) for name, rep in zip(names, reports)]
    differ, same = _hparam_diff([flatten_names(getattr(r.history, "hparams", {}) or {}, ".") for r in reports])
    return Comparison(tuple(summaries), tuple(reports), differ, same)


def _label(path: str, run: str) -> str:
    return f"{path}/{run}" if run else str(path) or "run"


def _unique_names(names: list[str]) -> list[str]:
    out, seen = [], {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def _roles(rep: Report) -> set[str]:
    hist = rep.history
    if hist is None:
        return set()
    return {r for r in _MONITOR_ROLES if (s := hist.primary(r)) is not None and len(s.finite())}


def _common_role(reports: Sequence[Report]) -> str | None:
    """The most preferred role every run logged, so all are judged on the same kind of metric."""
    have = [_roles(r) for r in reports]
    return next((r for r in _MONITOR_ROLES if have and all(r in h for h in have)), None)


def _not_ranked(rep: Report, metric: str, role: str) -> str | None:
    """Why the run's findings rule its judged metric out of the ranking, or None."""
    from .history import split_role

    kind = split_role(role)[1]
    for f in rep.findings:
        if f.code not in _MEANINGLESS or f.severity.rank < Severity.WARNING.rank or f.metric is None:
            continue
        other = rep.history.series.get(f.metric) if rep.history is not None else None
        same_kind = other is not None and split_role(other.role)[1] == kind
        if f.metric == metric or (f.code in _WHOLE_KIND and same_kind):
            return f"{f.code}: {f.title}"
    return None


def _summarise(name: str, rep: Report, role: str | None = None) -> RunSummary:
    import numpy as np

    src = rep.source or {}
    codes = tuple(rep.codes())
    worst = rep.worst().value if rep.worst() else None
    hist = rep.history
    s = None
    if hist is not None:
        for r in ((role,) if role else ()) + _MONITOR_ROLES:
            s = hist.primary(r)
            if s is not None and len(s.finite()):
                break
            s = None
    if s is None:
        return RunSummary(name, str(src.get("path", "")), str(src.get("format", "")), None,
                          codes=codes, worst=worst)
    s = s.normalized()
    if s.has_epochs and not s.is_per_epoch:
        s = s.per_epoch()
    unit = s.unit
    x = s.x(unit)
    ok = np.isfinite(s.values)
    best_value = best_at = final_value = final_at = None
    if ok.any():
        idx = np.flatnonzero(ok)
        vals = s.values[idx]
        b = idx[int(np.argmax(vals) if s.higher_is_better else np.argmin(vals))]
        best_value, best_at = _num(s.values[b]), _num(x[b])
        final_value, final_at = _num(s.values[idx[-1]]), _num(x[idx[-1]])
    return RunSummary(name, str(src.get("path", "")), str(src.get("format", "")), s.name, s.higher_is_better,
                      unit, best_value, best_at, final_value, final_at, len(s), codes, worst, s.role,
                      _not_ranked(rep, s.name, s.role))


def _num(v) -> float | int:
    v = float(v)
    if v.is_integer() and abs(v) < 1e15:
        return int(v)
    return float(f"{v:.4g}")  # 4 significant digits, as findings quote


def _hparam_diff(flats: Sequence[dict]) -> tuple[dict, dict]:
    keys = list(dict.fromkeys(k for f in flats for k in f))
    differ, same = {}, {}
    for k in keys:
        vals = tuple(f.get(k) for f in flats)
        reps = {json.dumps(json_safe(v), sort_keys=True) for v in vals}
        if len(reps) > 1:
            differ[k] = vals
        else:
            same[k] = vals[0]
    return differ, same


# -- rendering --------------------------------------------------------------------------------
def _v(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    text = json.dumps(json_safe(v)) if isinstance(v, (list, dict)) else str(v)
    return text if len(text) <= _MAX_HPARAM_VALUE else text[: _MAX_HPARAM_VALUE - 1] + "…"


def _rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    best = c.best_run()
    head = ["run", "metric", "best", "at", "final", "findings"]
    rows = []
    for r in c.runs:
        at = f"{r.unit} {_v(r.best_at)}" if r.best_at is not None else "—"
        mark = " ★" if best is not None and r is best and len(c.runs) > 1 else ""
        mark += " (not ranked)" if r.not_ranked else ""
        metric = f"{r.metric} ({'max' if r.higher_is_better else 'min'})" if r.metric else "—"
        fin = f"{_v(r.final_value)} ({r.unit} {_v(r.final_at)})" if r.final_value is not None else "—"
        rows.append([r.name + mark, metric, _v(r.best_value), at, fin, _codes_text(r.codes)])
    return head, rows


def _codes_text(codes) -> str:
    counts = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return ", ".join(f"{c} x{n}" if n > 1 else c for c, n in counts.items()) or "none"


def _hp_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["hparam"] + [r.name for r in c.runs]
    return head, [[k] + [_v(v) for v in vals] for k, vals in c.hparams_differ.items()]


def _plain(c: Comparison) -> str:
    def table(head, rows):
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                         + [fmt.format(*r) for r in rows])

    out = [f"traindoctor compare: {len(c.runs)} runs", "", table(*_rows(c))]
    best = c.best_run()
    if best is not None and len(c.runs) > 1:
        out += ["", f"best: {best.name} ({best.metric} {_v(best.best_value)} at {best.unit} {_v(best.best_at)})"]
    out += [f"not ranked: {r.name}, its {r.metric} does not measure the task ({r.not_ranked})"
            for r in c.runs if r.not_ranked]
    if c.hparams_differ:
        out += ["", "hyperparameters that differ:", table(*_hp_rows(c))]
    elif len(c.runs) > 1:
        out += ["", "hyperparameters: none recorded differ between these runs"
                + (f" ({len(c.hparams_same)} are the same)" if c.hparams_same else "")]
    return "\n".join(out)


def _markdown(c: Comparison) -> str:
    def esc(x):
        return str(x).replace("|", "\\|").replace("<", "&lt;")

    def table(head, rows):
        return ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)] + [
            "| " + " | ".join(esc(x) for x in r) + " |" for r in rows]

    out = [f"# Runs compared ({len(c.runs)})", "", *table(*_rows(c)), ""]
    best = c.best_run()
    if best is not None and len(c.runs) > 1:
        out += [f"Best: **{esc(best.name)}**, {esc(best.metric)} {_v(best.best_value)} at {best.unit} "
                f"{_v(best.best_at)}.", ""]
    out += [f"Not ranked: **{esc(r.name)}**, its {esc(r.metric)} does not measure the task "
            f"({esc(r.not_ranked)}).\n" for r in c.runs if r.not_ranked]
    if c.hparams_differ:
        out += ["## Hyperparameters that differ", "", *table(*_hp_rows(c)), ""]
    out += ["## Each run", "", ""]
    text = "\n".join(out)
    return text + "\n\n---\n\n".join(r.to_markdown() for r in c.reports)


def _html_table(c: Comparison) -> str:
    def table(head, rows):
        h = "".join(f"<th>{escape(str(x))}</th>" for x in head)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
        return f"<table><tr>{h}</tr>{body}</table>"

    out = ['<div class="card"><h3>Runs side by side</h3>', table(*_rows(c))]
    best = c.best_run()
    if best is not None and len(c.runs) > 1:
        out.append(f"<p>Best: <b>{escape(best.name)}</b>, {escape(str(best.metric))} "
                   f"{escape(_v(best.best_value))} at {best.unit} {escape(_v(best.best_at))}.</p>")
    out += [f"<p>Not ranked: <b>{escape(r.name)}</b>, its {escape(str(r.metric))} does not measure the "
            f"task ({escape(r.not_ranked)}).</p>" for r in c.runs if r.not_ranked]
    if c.hparams_differ:
        out.append("<h3>Hyperparameters that differ</h3>" + table(*_hp_rows(c)))
    out.append("</div>")
    out.append(_overlay(c))
    return "".join(out)


def _overlay(c: Comparison) -> str:
    """All runs' judged metric on one chart."""
    from .render.plots import PALETTE, Line, line_plot

    lines, units = [], set()
    for i, (r, rep) in enumerate(zip(c.runs, c.reports)):
        if r.metric is None or rep.history is None or r.metric not in rep.history.series:
            continue
        s = rep.history.series[r.metric]
        if s.has_epochs and not s.is_per_epoch:
            s = s.per_epoch()
        units.add(r.unit)
        lines.append(Line(r.name, s.x(r.unit), s.values, PALETTE[i % len(PALETTE)]))
    if not lines or len(units) != 1:
        return ""
    return line_plot(lines, title="judged metric, all runs", xlabel=units.pop())


# -- CLI ----------------------------------------------------------------------------------------
def command(args) -> int:
    from ._cli_common import EXIT_FINDINGS, EXIT_OK, codes

    c = compare(args.paths, only=codes(args.only), ignore=codes(args.ignore),
                experiment=getattr(args, "experiment", None))
    if args.md:
        if args.md == "-":
            sys.stdout.write(c.to_markdown())
        else:
            Path(args.md).write_text(c.to_markdown(), encoding="utf-8")
    if args.html:
        Path(args.html).write_text(c.to_html(), encoding="utf-8")
    if args.json:
        print(c.to_json())
    elif args.md != "-":
        _print(c)
    return EXIT_FINDINGS if any(r.fails(args.fail_on) for r in c.reports) else EXIT_OK


def _print(c: Comparison) -> None:
    from .render.terminal import use_rich

    if not use_rich(sys.stdout):
        print(_plain(c))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = Console(highlight=False)
    sev = {"error": "red", "warning": "yellow", "info": "cyan"}
    t = Table(title=f"traindoctor compare: {len(c.runs)} runs", title_justify="left")
    head, rows = _rows(c)
    for h in head:
        t.add_column(h, justify="right" if h in ("best", "final") else "left")
    for r, row in zip(c.runs, rows):
        t.add_row(*(Text(x) for x in row[:-1]), Text(row[-1], style=sev.get(r.worst or "", "green")))
    con.print(t)
    if c.hparams_differ:
        h = Table(title="hyperparameters that differ", title_justify="left")
        head, rows = _hp_rows(c)
        for col in head:
            h.add_column(col)
        for row in rows:
            h.add_row(*(Text(x) for x in row))
        con.print(h)
