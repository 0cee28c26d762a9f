"""What every command shares: exit codes, the parser's one-line errors, output flags and emit().

Commands (cli.py, compare, probe, demo, and any new one) import from here; nothing imports
from cli.py, so a command module never pulls in the whole command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__

__all__ = ["EXIT_OK", "EXIT_FINDINGS", "EXIT_INPUT", "EXIT_BUG", "Parser", "codes",
           "add_output_flags", "emit", "fails"]

# 0 no finding at or above --fail-on, 1 there is one, 2 bad usage or unreadable input
# (one line naming the file), 3 a bug in traindoctor
EXIT_OK, EXIT_FINDINGS, EXIT_INPUT, EXIT_BUG = 0, 1, 2, 3


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other bad input
        self.exit(EXIT_INPUT, f"traindoctor: {message} (see `traindoctor {self.prog.split()[-1]} --help`)\n")


def codes(text: str | None) -> list[str]:
    """`--only`/`--ignore` values: "a,b , c" -> ["a", "b", "c"]."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON (full evidence)")
    p.add_argument("--md", metavar="FILE", help="write a Markdown report ('-' for stdout)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report (full evidence)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="terminal: every finding's explanation, thresholds, key numbers and fixes, "
                        "and what could not be checked (default: the root cause and one line per other finding)")
    p.add_argument("--only", metavar="CODE,..", help="keep only these finding codes")
    p.add_argument("--ignore", metavar="CODE,..", help="drop these finding codes")
    p.add_argument("--fail-on", choices=("info", "warning", "error"), default="error",
                   help="exit 1 when a finding is at or above this severity (default: error)")


def fails(reports, args) -> int:
    """The exit status for these reports under --fail-on."""
    return EXIT_FINDINGS if any(r.fails(getattr(args, "fail_on", "error")) for r in reports) else EXIT_OK


def emit(reports, args) -> None:
    """Write reports as the flags ask: terminal (default), --json, --md, --html."""
    if getattr(args, "md", None):
        text = "\n\n---\n\n".join(r.to_markdown() for r in reports)
        if args.md == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(args.md).write_text(text, encoding="utf-8")
    if getattr(args, "html", None):
        if len(reports) == 1:
            reports[0].save_html(args.html)
        else:
            from .render.html import render_html_many

            Path(args.html).write_text(render_html_many(reports), encoding="utf-8")
    if getattr(args, "json", False):
        if len(reports) == 1:
            print(reports[0].to_json())
        else:
            from .finding import json_safe

            print(json.dumps({"traindoctor": __version__, "runs": [r.to_dict() for r in reports]},
                             indent=2, default=json_safe))
    elif getattr(args, "md", None) != "-":
        from .render.terminal import print_reports

        print_reports(reports, show_series=getattr(args, "show_series", False),
                      verbose=getattr(args, "verbose", False))
