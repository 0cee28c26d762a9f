"""`traindoctor probe path/to/file.py:factory`: load the user's factory and probe what it returns.

factory() returns (model, batch, loss_fn, optimizer); loss_fn and optimizer may be None.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import InputError

__all__ = ["command", "load_target"]


def load_target(target: str):
    """(model, batch, loss_fn, optimizer) from 'file.py:factory', or InputError naming the file."""
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise InputError(target, "expected path/to/file.py:factory (a Python file and a function in it, "
                                 "joined by ':'), e.g. probe_me.py:make")
    path = Path(path_text)
    if not path.is_file():
        raise InputError(path, "no such file; expected a Python file defining the factory function")
    if path.suffix != ".py":
        raise InputError(path, f"expected a .py file, found {path.suffix or 'no extension'}")
    spec = importlib.util.spec_from_file_location(f"_traindoctor_probe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))  # let the file import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise InputError(path, f"importing the file failed ({type(exc).__name__}: {exc}); run it with "
                               "python to see the traceback") from None
    finally:
        sys.path.remove(str(path.parent.resolve()))
    factory = getattr(module, name, None)
    if not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)  # defined here, not imported
        raise InputError(path, f"no function named {name!r}; functions in the file: {', '.join(found) or 'none'}")
    try:
        result = factory()
    except Exception as exc:
        raise InputError(path, f"{name}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(result, (tuple, list)) or len(result) != 4:
        what = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise InputError(path, f"{name}() must return (model, batch, loss_fn, optimizer) (use None for a "
                               f"missing loss_fn or optimizer); it returned {what}")
    return tuple(result)


def command(args) -> int:
    from .._cli_common import codes, emit, fails
    from ..finding import Report
    from . import probe

    model, batch, loss_fn, optimizer = load_target(args.target)
    report = probe(model, batch, loss_fn=loss_fn, optimizer=optimizer, budget=args.budget)
    report = Report(report.findings, report.skipped, {**report.source, "path": args.target}, report.kind,
                    report.meta).filtered(codes(args.only), codes(args.ignore))
    emit([report], args)
    return fails([report], args)
