"""diagnose(): run every curve detector on a run's history and collect one Report.

A detector that cannot run is recorded in `skipped` with its reason; a detector that crashes
becomes a visible `internal_error` finding instead of taking the whole report down.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import replace
from os import PathLike
from typing import Any

from .finding import Finding, Fix, Report, Severity, Skip
from .history import RunHistory
from .registry import detectors

__all__ = ["diagnose", "run_detectors"]


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


# Which finding explains which: (root cause, the code it explains, which of those). A finding
# that a warning-level root cause explains is lowered to info and names its cause, so the report
# leads with the cause and its fix.
# - "val": a plateau of any validation metric after overfitting: "raise the learning rate" is the
#   wrong advice for a validation loss that stalls while training improves (seed 004);
# - "other": a run that learned nothing (underfitting) or a loss that does not move at all
#   explains the flat curves around it: one cause, one fix (seed 001's stuck position loss);
# - "after": everything computed from the first NaN on is computed on NaN weights.
EXPLAINS = (
    ("overfitting", "plateau", "val"),
    ("underfitting", "plateau", "other"),
    ("loss_constant", "plateau", "other"),
    ("nan_loss", "*", "after"),
)


def _explains(cause: Finding, f: Finding, which: str, history) -> bool:
    if f is cause or f.code == cause.code:
        return False
    if which == "val":
        return _split(f.metric, history) == "val"
    if which == "other":
        return f.metric != cause.metric
    if which == "after":
        unit = cause.evidence.get("unit")
        first = cause.evidence.get(f"first_{unit}")
        return (f.steps is not None and f.evidence.get("unit") == unit and first is not None
                and _num(f.steps[0]) >= _num(first))
    return False


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


def demote_explained(findings: list[Finding], history: RunHistory | None = None) -> list[Finding]:
    """Lower to info the findings that a warning-level root cause explains (EXPLAINS)."""
    causes = [(f, code, which) for f in findings if f.severity.rank >= Severity.WARNING.rank
              for owner, code, which in EXPLAINS if f.code == owner]
    out = []
    for f in findings:
        if f.severity.rank > Severity.INFO.rank:
            cause = next((c for c, code, which in causes
                          if code in ("*", f.code) and _explains(c, f, which, history)), None)
            if cause is not None:
                f = replace(f, severity=Severity.INFO,
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
