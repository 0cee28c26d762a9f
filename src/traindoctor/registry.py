"""@detector and @probe: register plain functions under a stable finding code.

The table is filled once at import time and never mutated afterwards; a second function for
the same code is a programming error and fails the import, so codes stay unique.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Check", "detector", "probe", "detectors", "probes", "get_check", "all_checks"]


@dataclass(frozen=True)
class Check:
    code: str
    func: Callable[..., Any]
    kind: str  # "detector" or "probe"
    requires: tuple  # roles; a tuple inside means "any of these"
    summary: str

    @property
    def defaults(self) -> dict[str, Any]:
        """Keyword defaults: the thresholds, quoted by `traindoctor explain`."""
        sig = inspect.signature(self.func)
        return {
            n: p.default
            for n, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    def missing(self, available: set[str]) -> list[str]:
        """Requirements this run cannot meet, as readable strings."""
        out = []
        for req in self.requires:
            if isinstance(req, (tuple, list)):
                if not any(r in available for r in req):
                    out.append(" or ".join(req))
            elif req not in available:
                out.append(req)
        return out


_CHECKS: dict[str, Check] = {}


def _register(kind: str, code: str, requires, summary: str | None):
    def deco(func):
        if code in _CHECKS:
            other = _CHECKS[code].func
            raise RuntimeError(
                f"finding code {code!r} registered twice: {other.__module__}.{other.__name__} "
                f"and {func.__module__}.{func.__name__}"
            )
        doc = summary or (inspect.getdoc(func) or "").split("\n\n")[0].replace("\n", " ")
        _CHECKS[code] = Check(code, func, kind, tuple(requires), doc)
        return func

    return deco


def detector(code: str, requires=(), summary: str | None = None):
    """Register a curve detector `(history, **params) -> Iterable[Finding | Skip]`."""
    return _register("detector", code, requires, summary)


def probe(code: str, requires=(), summary: str | None = None):
    """Register a live-model probe check."""
    return _register("probe", code, requires, summary)


def _load_all() -> None:
    # Importing the packages runs their decorators.
    from . import detectors  # noqa: F401

    try:
        from . import probes  # noqa: F401
    except ImportError:  # torch missing: probes register lazily when torch is there
        pass


def all_checks() -> Mapping[str, Check]:
    _load_all()
    return dict(_CHECKS)


def detectors() -> list[Check]:
    return [c for c in all_checks().values() if c.kind == "detector"]


def probes() -> list[Check]:
    return [c for c in all_checks().values() if c.kind == "probe"]


def get_check(code: str) -> Check | None:
    return all_checks().get(code)
