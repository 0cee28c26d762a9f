"""Corpus benchmark: diagnose every labelled real run in ../shared/corpus and score the labels.

    PYTHONPATH=$PWD/src python3 benchmarks/corpus.py                 # every case, one line each
    PYTHONPATH=$PWD/src python3 benchmarks/corpus.py CASE [CASE..]   # only these cases
    PYTHONPATH=$PWD/src python3 benchmarks/corpus.py CASE --show     # and print their findings
    PYTHONPATH=$PWD/src python3 benchmarks/corpus.py --json          # the scores as JSON

Each case folder holds a run as its authors committed it plus an `expect.json` (see the corpus
README). The folder is read in place, never copied. A case passes when:
- must:     every entry is found at any severity (an inner list: any one of its codes);
- must_not: none of these codes appears at warning level or above;
- lead:     (when given) the headline's code is one of these; the headline is the report's most
            severe finding, the first of equals (a finding another one explains is never it);
- evidence: every listed value is carried by a finding of that code (relative 1e-3).

Exit status: 0 every case passes, 1 a case misses, 2 the corpus cannot be found or read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1].parent.parent / "shared" / "corpus"
REL_TOL = 1e-3


def find_corpus(arg: str | None) -> Path:
    for cand in ([Path(arg)] if arg else []) + [DEFAULT, Path("/work/shared/corpus"),
                                                   Path.cwd().parent / "shared" / "corpus"]:
        if (cand / "INDEX.json").is_file():
            return cand
    raise SystemExit(2)


def cases(corpus: Path) -> list[str]:
    return [e["name"] for e in json.loads((corpus / "INDEX.json").read_text())]


def load_case(folder: Path):
    """The runs the case holds: all runs read under its folder (or its listed `files`)."""
    from traindoctor.readers import load_runs

    expect = json.loads((folder / "expect.json").read_text())
    runs = load_runs(folder)
    return expect, runs


def headline(report):
    """The report's most severe finding, first of equals, skipping ones another explains."""
    fs = [f for f in report.findings if not getattr(f, "explained_by", None)]
    if not fs:
        return None
    top = max(f.severity.rank for f in fs)
    return next(f for f in fs if f.severity.rank == top)


def close(a, b) -> bool:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1e-12)


def score(expect: dict, findings: list, head) -> list[str]:
    """What the diagnosis misses, as short strings (empty: the case passes)."""
    codes = {f.code for f in findings}
    loud = {f.code for f in findings if f.severity.rank >= 1}
    misses = []
    for entry in expect.get("must", []):
        options = entry if isinstance(entry, list) else [entry]
        if not codes & set(options):
            misses.append("must " + "|".join(options))
    for code in expect.get("must_not", []):
        if code in loud:
            misses.append(f"must_not {code}")
    lead = expect.get("lead")
    if lead and (head is None or head.code not in lead):
        misses.append(f"lead {head.code if head else 'none'} not in {'|'.join(lead)}")
    for code, want in (expect.get("evidence") or {}).items():
        got = [f for f in findings if f.code == code]
        if not got:
            misses.append(f"evidence {code}: no finding")
            continue
        ok = any(all(k in f.evidence and close(f.evidence[k], v) for k, v in want.items())
                 for f in got)
        if not ok:
            have = {k: got[0].evidence.get(k) for k in want}
            misses.append(f"evidence {code} want {want} got {have}")
    return misses


def run_case(corpus: Path, name: str) -> dict:
    from traindoctor import diagnose

    folder = corpus / name
    t0 = time.perf_counter()
    try:
        expect, runs = load_case(folder)
        reports = [diagnose(r) for r in runs]
    except Exception as exc:  # a reader that cannot read the case is a miss, not a crash
        expect = json.loads((folder / "expect.json").read_text())
        return {"name": name, "healthy": expect.get("healthy"), "misses": [f"read: {exc}"],
                "head": None, "findings": [], "runs": 0, "seconds": time.perf_counter() - t0,
                "has_lead": bool(expect.get("lead")), "lead_ok": False}
    findings = [f for r in reports for f in r.findings]
    heads = [h for h in (headline(r) for r in reports) if h is not None]
    head = max(heads, key=lambda f: f.severity.rank, default=None)  # first of equals
    misses = score(expect, findings, head)
    if len(runs) > 1:
        misses = misses and misses + [f"({len(runs)} runs read)"]
    lead = expect.get("lead")
    return {"name": name, "healthy": expect.get("healthy"), "misses": misses, "head": head,
            "findings": findings, "runs": len(runs), "seconds": time.perf_counter() - t0,
            "has_lead": bool(lead), "lead_ok": bool(lead) and head is not None and head.code in lead,
            "reports": reports}


def show(result: dict) -> None:
    for r in result.get("reports", []):
        names = ", ".join(f"{m['name']}({m['role']},{m['points']})" for m in r.source.get("metrics", []))
        print(f"    run {r.source.get('run') or '.'} [{r.source.get('format')}]: {names}")
    for f in result["findings"]:
        ev = {k: v for k, v in f.evidence.items() if not isinstance(v, (dict, list))}
        by = getattr(f, "explained_by", None)
        print(f"    {f.severity.value:<7} {f.code:<19} {f.metric}{' <- ' + by if by else ''}: {f.title}")
        print(f"            {json.dumps(ev)[:400]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="*", help="case names (default: all in INDEX.json)")
    ap.add_argument("--corpus", help="the corpus folder (default: ../shared/corpus)")
    ap.add_argument("--show", action="store_true", help="print every finding of each case")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON")
    args = ap.parse_args(argv)
    try:
        corpus = find_corpus(args.corpus)
    except SystemExit:
        print("corpus.py: no corpus found (expected a folder with INDEX.json; pass --corpus)",
              file=sys.stderr)
        return 2
    names = args.cases or cases(corpus)
    unknown = [n for n in names if not (corpus / n / "expect.json").is_file()]
    if unknown:
        print(f"corpus.py: no such case: {', '.join(unknown)} (in {corpus})", file=sys.stderr)
        return 2
    results = []
    for name in names:
        res = run_case(corpus, name)
        results.append(res)
        if args.json:
            continue
        mark = "ok  " if not res["misses"] else "MISS"
        kind = "healthy" if res["healthy"] else "faulty "
        head = f"{res['head'].severity.value}:{res['head'].code}" if res["head"] else "-"
        print(f"{mark} {name:<42} {kind} head={head:<28} {'; '.join(res['misses'])}")
        if args.show:
            show(res)
    passed = sum(not r["misses"] for r in results)
    healthy = [r for r in results if r["healthy"]]
    leads = [r for r in results if r["has_lead"]]
    totals = {
        "cases": len(results), "passed": passed,
        "healthy_passed": sum(not r["misses"] for r in healthy), "healthy": len(healthy),
        "faulty_passed": sum(not r["misses"] for r in results if not r["healthy"]),
        "faulty": len(results) - len(healthy),
        "lead_right": sum(r["lead_ok"] for r in leads), "with_lead": len(leads),
        "seconds": round(sum(r["seconds"] for r in results), 2),
    }
    if args.json:
        print(json.dumps({"totals": totals, "cases": [
            {"name": r["name"], "pass": not r["misses"], "misses": r["misses"],
             "head": r["head"].code if r["head"] else None} for r in results]}, indent=2))
    else:
        print(f"\n{passed}/{len(results)} cases pass (healthy {totals['healthy_passed']}/"
              f"{totals['healthy']}, faulty {totals['faulty_passed']}/{totals['faulty']}); headline "
              f"right in {totals['lead_right']}/{totals['with_lead']}; {totals['seconds']} s")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
