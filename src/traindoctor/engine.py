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

from .detectors._util import shared_medians
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
    findings = demote_explained(findings)
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


# A finding that explains another one on the same metric, with the fix that matters. A validation
# loss that stalled or rose after its best is a plateau too, but "raise the learning rate" is the
# wrong advice for it: seed 004's val loss sat at 16 while training kept falling.
EXPLAINS = {"overfitting": ("plateau",)}


def demote_explained(findings: list[Finding]) -> list[Finding]:
    """Lower to info the findings that another warning on the same metric already explains."""
    explained = {
        (code, f.metric)
        for f in findings
        if f.severity.rank >= Severity.WARNING.rank
        for code in EXPLAINS.get(f.code, ())
    }
    out = []
    for f in findings:
        if (f.code, f.metric) in explained and f.severity.rank > Severity.INFO.rank:
            owner = next(k for k, v in EXPLAINS.items() if f.code in v)
            f = replace(f, severity=Severity.INFO,
                        explanation=f"{f.explanation} The {owner} finding on {f.metric} explains "
                                    "this and says what to do.".strip())
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
