"""diagnose(): run every curve detector on a run's history and collect one Report.

A detector that cannot run is recorded in `skipped` with its reason; a detector that crashes
becomes a visible `internal_error` finding instead of taking the whole report down.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from os import PathLike
from typing import Any

from .detectors._util import shared_medians
from .finding import Finding, Fix, Report, Severity, Skip
from .history import RunHistory
from .registry import detectors

__all__ = ["diagnose", "run_detectors", "Explains", "EXPLAINS", "CONDITIONS", "demote_explained"]


def diagnose(
    run: RunHistory | str | PathLike,
    *,
    only: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    roles: Mapping[str, str] | None = None,
) -> Report:
    """Diagnose a run: a RunHistory, or a path that `traindoctor.load` can read.

    `params` overrides detector keyword defaults by code, e.g. {"plateau": {"window": 20}};
    `roles` overrides inferred roles by series name, e.g. {"val/epe": "val_loss"}.
    """
    if not isinstance(run, RunHistory):
        from .readers import load

        run = load(run)
    if roles:
        run = run.with_roles(roles)
    t0 = time.perf_counter()
    findings, skipped = run_detectors(run, only=only, ignore=ignore, params=params)
    findings = demote_explained(findings, run)
    meta = {"seconds": round(time.perf_counter() - t0, 4)}
    return Report(findings, skipped, run.source(), "diagnose", meta, history=run)


def run_detectors(history: RunHistory, *, only=None, ignore=None, params=None):
    only_set, ignore_set = set(only or ()), set(ignore or ())
    params = dict(params or {})
    unknown = set(params) - {c.code for c in detectors()}
    if unknown:
        raise ValueError(f"params given for unknown detector(s): {', '.join(sorted(unknown))}")
    clean = history.normalized()
    available = {s.role for s in clean.series.values() if len(s) > 0}
    findings: list[Finding] = []
    skipped: list[Skip] = []
    with shared_medians():  # detectors smoothing the same series share one pass over it
        for check in detectors():
            if (only_set and check.code not in only_set) or check.code in ignore_set:
                continue
            missing = check.missing(available)
            if missing:
                have = ", ".join(sorted(available)) or "no series"
                skipped.append(Skip(check.code, f"needs {' and '.join(missing)}; this run has {have}"))
                continue
            try:
                for item in check.func(clean, **params.get(check.code, {})) or ():
                    (skipped if isinstance(item, Skip) else findings).append(item)
            except Exception as exc:  # a bug in one detector must not hide the others' findings
                findings.append(_internal_error(check.code, exc))
    return findings, skipped


# -- one root cause first ---------------------------------------------------------------------
# A report leads with its root cause; the findings the cause explains are listed under it
# (`explained_by`), lowered to info, instead of standing beside it as peers with their own,
# often wrong, advice. Each rule says when one finding explains another; extend the table.


@dataclass(frozen=True)
class Explains:
    """A finding with code `cause` (at warning or above) explains one with code `effect` ("*":
    any code) when the condition `when` (a key of CONDITIONS) holds between the two."""

    cause: str
    effect: str
    when: str
    why: str  # the principle, for whoever reads or extends the table


def _same_metric(cause: Finding, f: Finding, history) -> bool:
    return f.metric == cause.metric


def _other_metric(cause: Finding, f: Finding, history) -> bool:
    return f.metric != cause.metric


def _val_metric(cause: Finding, f: Finding, history) -> bool:
    return _split(f.metric, history) == "val"


def _same_window(cause: Finding, f: Finding, history) -> bool:
    """Both cover the same steps/epochs, in the same unit: one event seen in several series."""
    return (f.steps is not None and f.evidence.get("unit") == cause.evidence.get("unit")
            and tuple(f.steps) == tuple(cause.steps or ()))


def _after(cause: Finding, f: Finding, history) -> bool:
    """`f`'s window starts at or after the cause's first step/epoch, in the same unit."""
    unit = cause.evidence.get("unit")
    first = cause.evidence.get(f"first_{unit}")
    return (f.steps is not None and f.evidence.get("unit") == unit and first is not None
            and _num(f.steps[0]) >= _num(first))


# condition name -> predicate(cause, finding, history): the vocabulary rules may use
CONDITIONS = {
    "any": lambda cause, f, history: True,
    "same_metric": _same_metric,
    "other_metric": _other_metric,
    "val_metric": _val_metric,
    "same_window": _same_window,
    "after": _after,
}

EXPLAINS: tuple[Explains, ...] = (
    Explains("overfitting", "plateau", "val_metric",
             "a validation metric that stalls while training keeps improving is a generalisation "
             "gap; 'raise the learning rate' is the wrong advice for it (seed 004)"),
    Explains("underfitting", "plateau", "other_metric",
             "a run that learned nothing has flat curves everywhere: one cause, one fix"),
    Explains("loss_constant", "plateau", "other_metric",
             "a loss that does not move at all explains the flat curves around it (seed 001's "
             "stuck position loss): no learning explains the component plateaus"),
    Explains("nan_loss", "*", "after",
             "everything computed from the first NaN on is computed on NaN weights"),
)


def _split(metric, history) -> str | None:
    from .history import infer_role, split_role

    if metric is None:
        return None
    s = history.series.get(metric) if history is not None else None
    return split_role(s.role if s is not None else infer_role(metric))[0]


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def find_cause(f: Finding, findings, history=None, rules=EXPLAINS, cause_of=None) -> Finding | None:
    """The first finding (in `findings` order) that a rule says explains `f`, or None.

    A cause is at least a warning and never milder than what it explains. A finding explains
    one of its own code only through a row naming that code (never "*"), and only one listed
    before it. `cause_of` (decided so far) keeps explanations free of cycles.
    """
    cause_of = cause_of or {}
    order = {id(c): i for i, c in enumerate(findings)}
    for cause in findings:
        if cause is f or cause.severity.rank < Severity.WARNING.rank or cause.severity.rank < f.severity.rank:
            continue
        same = cause.code == f.code
        if same and order[id(cause)] > order.get(id(f), -1):
            continue
        if not any(rule.cause == cause.code and (rule.effect == f.code or (rule.effect == "*" and not same))
                   and CONDITIONS[rule.when](cause, f, history) for rule in rules):
            continue
        up, seen = cause, set()
        while up is not None and up is not f and id(up) not in seen:  # does the cause hang under f?
            seen.add(id(up))
            up = cause_of.get(id(up))
        if up is None:
            return cause
    return None


def demote_explained(findings: list[Finding], history: RunHistory | None = None,
                     rules=EXPLAINS) -> list[Finding]:
    """Mark each finding a root cause explains (`explained_by`, lowered to info, its explanation
    naming the cause). Decided most severe first; a cause never hangs under what it explains."""
    ranked = sorted(findings, key=lambda f: -f.severity.rank)  # the most severe cause wins
    cause_of: dict[int, Finding | None] = {}
    for f in ranked:
        cause_of[id(f)] = find_cause(f, ranked, history, rules, cause_of)
    out = []
    for f in findings:
        cause = cause_of[id(f)]
        if cause is not None:
            f = replace(f, severity=Severity.INFO, explained_by=cause.code,
                        explanation=f"{f.explanation} The {cause.code} finding on {cause.metric} "
                                    "explains this and says what to do.".strip())
        out.append(f)
    return out


def _internal_error(code: str, exc: Exception) -> Finding:
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return Finding(
        code="internal_error",
        severity=Severity.WARNING,
        title=f"The {code} check crashed, so its result is missing from this report",
        evidence={"check": code, "error": f"{type(exc).__name__}: {exc}",
                  "at": f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno}"},
        explanation="This is a bug in traindoctor, not in your run. The other checks ran.",
        fixes=(Fix("Report it with the run's logs if you can share them",
                   "so the check can be fixed", None),),
    )
