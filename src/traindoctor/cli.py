"""Command line: traindoctor diagnose | watch | probe | compare | explain | list | demo.

Exit status: 0 no finding at or above --fail-on (default error), 1 there is one,
2 bad usage or unreadable input (one line naming the file), 3 a bug in traindoctor.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from . import __version__
from ._cli_common import EXIT_BUG, EXIT_INPUT, EXIT_OK, Parser, add_output_flags, codes, emit, fails
from .errors import TraindoctorError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="traindoctor", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"traindoctor {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")

    d = sub.add_parser("diagnose", help="read a run's logs and find what went wrong")
    d.add_argument("path", nargs="?",
                   help="a log file or run folder (searched recursively), an mlflow.db, or an MLflow "
                        "tracking server URL (default: $MLFLOW_TRACKING_URI)")
    d.add_argument("--format", help="skip auto-detection (tensorboard, lightning_csv, hf_trainer, ...)")
    d.add_argument("--run", help="which run, when the folder holds several (MLflow: a run id or name)")
    d.add_argument("--experiment", metavar="NAME",
                   help="MLflow: the experiment to read (name or id; needed for a tracking server)")
    d.add_argument("--role", action="append", default=[], metavar="NAME=ROLE",
                   help="override a series' role, e.g. --role val/epe=val_loss (repeatable)")
    d.add_argument("--show-series", action="store_true", help="list the series read and their roles")
    add_output_flags(d)

    w = sub.add_parser("watch", help="follow a running job's logs like tail -f; say each finding as it appears")
    from .follow import add_arguments

    add_arguments(w)
    add_output_flags(w)

    p = sub.add_parser("probe", help="run side-effect-free checks on a live model and one batch")
    p.add_argument("target", help="path/to/file.py:factory, where factory() returns (model, batch, loss_fn, optimizer)")
    p.add_argument("--budget", type=float, default=None, help="time budget in seconds")
    add_output_flags(p)

    c = sub.add_parser("compare", help="several runs side by side: what changed, what helped")
    c.add_argument("paths", nargs="+", help="run folders or log files, an mlflow.db, an MLflow server URL")
    c.add_argument("--experiment", metavar="NAME", help="MLflow: compare the runs of this experiment")
    add_output_flags(c)

    e = sub.add_parser("explain", help="what a finding code means, how it is detected, what fixes it")
    e.add_argument("code")

    sub.add_parser("list", help="every finding code")

    m = sub.add_parser("demo", help="train a small model with a known fault on bundled data and diagnose it")
    m.add_argument("--fault", default=None, help="which fault to demonstrate (see --list)")
    m.add_argument("--list", action="store_true", help="list the faults")
    m.add_argument("--out", default="traindoctor-demo", help="folder for the run's logs and report")
    m.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_INPUT
    try:
        return _dispatch(args)
    except TraindoctorError as exc:
        print(f"traindoctor: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("traindoctor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # never a traceback for users; TRAINDOCTOR_DEBUG=1 shows it
        if os.environ.get("TRAINDOCTOR_DEBUG"):
            raise
        print(f"traindoctor: internal error ({type(exc).__name__}: {exc}); "
              "rerun with TRAINDOCTOR_DEBUG=1 and report it", file=sys.stderr)
        return EXIT_BUG


def _dispatch(args) -> int:
    if args.command == "diagnose":
        return cmd_diagnose(args)
    if args.command == "list":
        return cmd_list(args)
    if args.command == "probe":
        from .probes.cli import command
    elif args.command == "watch":
        from .follow import command
    elif args.command == "compare":
        from .compare import command
    elif args.command == "explain":
        from .catalog import explain_command as command
    elif args.command == "demo":
        from .demo import command
    else:  # pragma: no cover - argparse rejects unknown commands
        raise AssertionError(args.command)
    return command(args)


def _parse_roles(items: list[str]) -> dict[str, str]:
    from .errors import InputError

    roles = {}
    for item in items:
        name, sep, role = item.rpartition("=")
        if not sep or not name:
            raise InputError(None, f"--role expects NAME=ROLE (e.g. val/epe=val_loss), got {item!r}")
        roles[name] = role
    return roles


def cmd_diagnose(args) -> int:
    from .engine import diagnose
    from .errors import InputError
    from .readers import load_runs, run_matches

    args.path = _target(args.path)
    with _reading_progress(args.path) as progress:
        runs = load_runs(args.path, format=args.format, progress=progress,
                         experiment=args.experiment, run=args.run)
    if args.run is not None:
        found = runs
        runs = [r for r in runs if run_matches(r, args.run)]
        if not runs:
            raise InputError(args.path, f"no run named {args.run!r}; runs: "
                                        f"{', '.join(r.run or '.' for r in found[:10])}")
    roles = _parse_roles(args.role)
    reports = []
    for run in runs:
        try:
            r = run.with_roles({k: v for k, v in roles.items() if k in run.series}) if roles else run
        except (KeyError, ValueError) as exc:
            raise InputError(args.path, str(exc).strip("'\"")) from None
        reports.append(diagnose(r).filtered(codes(args.only), codes(args.ignore)))
    if roles and not any(set(roles) <= set(run.series) for run in runs):
        missing = sorted(set(roles) - set().union(*(run.series for run in runs)))
        if missing:
            raise InputError(args.path, f"--role names {', '.join(missing)}, which this run does not have")
    listed = len(runs) > 1 or any(r.meta.get("schema_revision") for r in runs)  # MLflow: say what was read
    if listed and not args.json and getattr(args, "md", None) != "-":
        print(run_listing(runs))
    emit(reports, args)
    return fails(reports, args)


def _target(path: str | None) -> str:
    """The path argument, or MLflow's own MLFLOW_TRACKING_URI when it is left out."""
    from .errors import InputError

    if path is None:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise InputError(None, "diagnose needs a PATH (a log file, a run folder, an mlflow.db or "
                                   "an MLflow server URL), or MLFLOW_TRACKING_URI set")
        path = uri
    if path.startswith("file:"):  # MLflow's file-store URI, file:///path/to/mlruns
        from urllib.parse import unquote, urlsplit

        path = unquote(urlsplit(path).path)
    return path


def run_listing(runs) -> str:
    """The runs read, one line each: name, status, length (what a store of many runs holds)."""
    rows = []
    for r in runs:
        longest = max(r.series.values(), key=len, default=None)
        length = (f"{len(longest)} points to step {longest.steps[-1]:g}" if longest is not None and len(longest)
                  else "no points")
        rows.append((r.run or r.path, r.status or "-", length))
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    n = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
    head = f"{n} (name, status, longest series):"
    revision = next((r.meta.get("schema_revision") for r in runs if r.meta.get("schema_revision")), None)
    if revision:
        head = f"{n} in an MLflow SQLite store, schema revision {revision} (name, status, longest series):"
    return "\n".join([head] + [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]) + "\n"


@contextlib.contextmanager
def _reading_progress(path):
    """A progress bar on stderr while logs are read, only on a terminal and only with rich."""
    if not sys.stderr.isatty():
        yield None
        return
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
    except ImportError:
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("reading {task.description}"), BarColumn(),
                  MofNCompleteColumn(), transient=True, console=_stderr_console()) as bar:
        task = bar.add_task(str(path), total=None)

        def progress(done, total, unit):
            bar.update(task, completed=done, total=total,
                       description=str(unit.name if unit is not None else path))

        yield progress


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def cmd_list(args) -> int:
    from .catalog import CATALOG, entry
    from .registry import all_checks

    checks = all_checks()
    # registered codes the catalog does not know yet still appear (from their docstring)
    codes = list(CATALOG) + sorted(c for c in checks if c not in CATALOG)
    width = max(len(c) for c in codes)
    for code in codes:
        e = entry(code)
        status = "" if code in checks or e["family"] == "meta" else "  (not available here)"
        print(f"{code:<{width}}  {e['family']:<5}  {e['summary']}{status}")
    return EXIT_OK
