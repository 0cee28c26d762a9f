"""What every finding code means, how it is found, what fixes it, and sources (`explain`)."""

from __future__ import annotations

CATALOG: dict[str, dict] = {
    "nan_loss": {"family": "curve", "summary": "a loss became NaN or infinite"},
    "overfitting": {"family": "curve", "summary": "validation got worse while training improved"},
    "plateau": {"family": "curve", "summary": "no meaningful improvement since a step"},
    "internal_error": {"family": "meta", "summary": "a check crashed (a traindoctor bug)"},
}


def explain_command(args) -> int:
    entry = CATALOG.get(args.code)
    if entry is None:
        from .errors import InputError

        raise InputError(None, f"unknown finding code {args.code!r}; `traindoctor list` shows them all")
    print(f"{args.code}: {entry['summary']}")
    return 0
