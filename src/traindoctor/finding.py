"""The contract every part shares: Severity, Fix, Finding, Skip and Report.

A Finding is what a detector or probe measured, never a guess: every number in its title,
explanation and fixes is in its `evidence`, and so is every threshold it compared against.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = ["Severity", "Fix", "Finding", "Skip", "Report", "json_safe", "cause_of", "root_cause_order"]


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self.value]

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(
                f"severity must be one of info, warning, error; got {value!r}"
            ) from None


_RANK = {"info": 0, "warning": 1, "error": 2}


def json_safe(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and non-finite floats into plain JSON values.

    NaN and infinities become the strings "nan", "inf", "-inf": JSON has no such numbers, and a
    finding about a NaN loss must still be able to quote it.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    # numpy without importing it here: scalars have .item(), arrays have .tolist()
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if hasattr(value, "item"):
        return json_safe(value.item())
    return str(value)


@dataclass(frozen=True)
class Fix:
    action: str
    why: str
    code: str | None = None

    def to_dict(self) -> dict:
        return {"action": self.action, "why": self.why, "code": self.code}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    title: str
    metric: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    steps: tuple[float, float] | None = None
    explanation: str = ""
    fixes: tuple[Fix, ...] = ()
    # the code of the root-cause finding that explains this one (it is listed under it)
    explained_by: str | None = None

    def __post_init__(self) -> None:
        # Normalise cheaply so detectors may pass plain strings, lists and numpy values.
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        object.__setattr__(self, "evidence", json_safe(dict(self.evidence)))
        if self.steps is not None:
            first, last = self.steps
            object.__setattr__(self, "steps", (json_safe(first), json_safe(last)))
        fixes = tuple(f if isinstance(f, Fix) else Fix(**f) for f in self.fixes)
        object.__setattr__(self, "fixes", fixes)

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "title": self.title,
            "metric": self.metric,
            "evidence": json.loads(json.dumps(self.evidence)),
            "steps": list(self.steps) if self.steps is not None else None,
            "explanation": self.explanation,
            "fixes": [f.to_dict() for f in self.fixes],
            "explained_by": self.explained_by,
        }


@dataclass(frozen=True)
class Skip:
    """A check that could not run, and why (a missing series, too few points...)."""

    code: str
    reason: str

    def to_dict(self) -> dict:
        return {"code": self.code, "reason": self.reason}


def cause_of(f: Finding, findings) -> Finding | None:
    """The finding that explains `f`: one with its `explained_by` code, on the same metric when
    there is one, else the first (causes come most severe first)."""
    if f.explained_by is None:
        return None
    causes = [c for c in findings if c is not f and c.code == f.explained_by]
    return next((c for c in causes if c.metric == f.metric), causes[0] if causes else None)


def root_cause_order(findings) -> list[Finding]:
    """Root causes first, most severe first (stable within a severity), each followed by the
    findings it explains, and those by what they explain in turn."""
    ranked = sorted(findings, key=lambda f: -f.severity.rank)  # stable within a rank
    children: dict[int, list[Finding]] = {}
    roots = []
    for f in ranked:
        cause = cause_of(f, ranked)
        if cause is None:
            roots.append(f)
        else:
            children.setdefault(id(cause), []).append(f)
    out: list[Finding] = []
    placed: set[int] = set()

    def place(f: Finding) -> None:
        if id(f) not in placed:
            placed.add(id(f))
            out.append(f)
            for c in children.get(id(f), ()):
                place(c)

    for f in roots + ranked:  # findings caught in a cycle of explanations come last, as peers
        place(f)
    return out


@dataclass(frozen=True)
class Report:
    """What diagnose, probe and compare return: findings plus what could not be checked."""

    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skip, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "diagnose"
    meta: Mapping[str, Any] = field(default_factory=dict)
    history: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(root_cause_order(self.findings)))
        object.__setattr__(self, "skipped", tuple(self.skipped))

    # -- queries -------------------------------------------------------------------------
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def get(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def has(self, code: str) -> bool:
        return any(f.code == code for f in self.findings)

    @property
    def headline(self) -> Finding | None:
        """The root cause the report leads with (its first fix is the first thing to do)."""
        return self.findings[0] if self.findings else None

    def groups(self) -> list[tuple[Finding, list[Finding]]]:
        """[(root cause, the findings it explains)], in report order. A finding whose cause is
        not in the report (filtered out) stands as a root of its own."""
        out: list[tuple[Finding, list[Finding]]] = []
        for f in self.findings:
            if out and f.explained_by is not None and cause_of(f, self.findings) is not None:
                out[-1][1].append(f)
            else:
                out.append((f, []))
        return out

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def fails(self, threshold: str | Severity = Severity.ERROR) -> bool:
        """True when a finding is at or above `threshold` (what `--fail-on` uses)."""
        level = Severity.parse(threshold).rank
        return any(f.severity.rank >= level for f in self.findings)

    def filtered(self, only: Iterable[str] | None = None, ignore: Iterable[str] | None = None) -> Report:
        only_set = set(only or ())
        ignore_set = set(ignore or ())
        kept = [
            f for f in self.findings
            if (not only_set or f.code in only_set) and f.code not in ignore_set
        ]
        return Report(kept, self.skipped, self.source, self.kind, self.meta, self.history)

    # -- output --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        from . import __version__

        return {
            "traindoctor": __version__,
            "kind": self.kind,
            "source": json_safe(dict(self.source)),
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [s.to_dict() for s in self.skipped],
            "meta": json_safe(dict(self.meta)),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_markdown(self) -> str:
        from .render.markdown import render_markdown

        return render_markdown(self)

    def to_html(self) -> str:
        from .render.html import render_html

        return render_html(self)

    def save_html(self, path) -> None:
        from pathlib import Path

        Path(path).write_text(self.to_html(), encoding="utf-8")

    def __str__(self) -> str:
        from .render.terminal import render_plain

        return render_plain(self)
