"""Checks every test can apply to a Finding: the numbers it states are numbers it measured."""

import re

from traindoctor.detectors._util import fmt

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def evidence_numbers(evidence) -> set[str]:
    """Every number in the evidence, formatted as findings format them (with and without sign)."""
    seen: set[str] = set()

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            seen.update({fmt(v), fmt(abs(v)), str(v)})
            if float(v).is_integer():
                seen.add(str(int(v)))
        elif isinstance(v, str):
            seen.update(m.lstrip("-") for m in _NUMBER.findall(v))  # a path or name quoted in evidence

    walk(evidence)
    return seen


def title_numbers_in_evidence(f):
    """Every number in the title is a number in the evidence (as the finding formats it)."""
    seen = evidence_numbers(f.evidence)
    for num in _NUMBER.findall(f.title):
        assert num.lstrip("-") in seen or num in seen, (num, f.title, f.evidence)
