"""Score the zoo's rows: detection per operator and way in, false alarms on the clean twins, watch latency.

detection: the share of a fault's cases where the way in (or peer) raised one of the operator's
  expected codes (expected.py) at warning or above. A way in from which the fault cannot be seen
  (expected None) is shown as "n/v" and left out of the totals.
false alarm: the share of clean twins with any finding at warning or above (any code at all).
watch latency: steps from the fault's first visible effect (expected.py `onset`) to the first live
  warning with an expected code; a code found only when the run closed counts the whole run.
"""

from __future__ import annotations

import statistics

from . import peers
from .expected import EXPECTED, expected_codes

WAYS = ("probe", "watch", "tensorboard", "csv", "text")
LOG_WAYS = ("tensorboard", "csv", "text")
PEER_COLUMNS = ("torchtest2",) + tuple(f"{p}/{w}" for p in ("runmedic", "trainspotter") for w in LOG_WAYS)


def codes_for(row: dict, column: str) -> list[str] | None:
    """What a column found on this row (our codes), or None when the tool could not run here."""
    if column in WAYS:
        return row["ways"].get(column)
    checks = row["peers"].get(column)
    if checks is None:
        return None
    return peers.to_codes(column.split("/")[0], checks)


def any_warning(row: dict, column: str) -> bool | None:
    if column in WAYS:
        got = row["ways"].get(column)
        return None if got is None else bool(got)
    got = row["peers"].get(column)
    return None if got is None else bool(got)


def _way(column: str) -> str:
    if column == "torchtest2":
        return "probe"
    return column.split("/")[-1]


def hit(row: dict, column: str) -> bool | None:
    """True/False: detected or not; None: not visible from this way in, or the tool did not run."""
    want = expected_codes(row["op"], _way(column))
    if want is None:
        return None
    got = codes_for(row, column)
    if got is None:
        return None
    return bool(set(got) & set(want))


def latency(row: dict) -> tuple[int, bool] | None:
    """(steps from onset to the first expected live warning, found only at close?)"""
    want = expected_codes(row["op"], "watch")
    if not want or row.get("onset") is None or not hit(row, "watch"):
        return None
    live = [s for s, code, _ in row.get("watch_said", []) if code in want]
    if live:
        return max(0, live[0] - row["onset"]), False
    return max(0, row["steps"] - row["onset"]), True


def summary(rows: list[dict], columns=WAYS + PEER_COLUMNS) -> dict:
    """Overall detection and false-alarm rates per column (what the gate compares)."""
    out = {}
    for col in columns:
        hits = [h for r in rows if r["op"] != "clean" for h in [hit(r, col)] if h is not None]
        alarms = [a for r in rows if r["op"] == "clean" for a in [any_warning(r, col)] if a is not None]
        out[col] = {"detection": round(sum(hits) / len(hits), 3) if hits else None, "cases": len(hits),
                    "false_alarm": round(sum(alarms) / len(alarms), 3) if alarms else None, "clean": len(alarms)}
    lat = [v[0] for r in rows if r["op"] != "clean" for v in [latency(r)] if v is not None]
    out["watch"]["median_latency_steps"] = statistics.median(lat) if lat else None
    return out


def _cell(rows, op, col):
    hs = [hit(r, col) for r in rows if r["op"] == op]
    if all(h is None for h in hs):
        return "n/v" if expected_codes(op, _way(col)) is None else "-"
    hs = [h for h in hs if h is not None]
    return f"{sum(hs)}/{len(hs)}"


def tables(rows: list[dict], meta: dict) -> str:
    ops = [op for op in EXPECTED if any(r["op"] == op for r in rows)]
    lines = [f"Date: {meta.get('date')}  Machine: {meta.get('machine')}  Wall: {meta.get('seconds')} s  "
             f"Cases: {len(rows)} ({sum(r['op'] == 'clean' for r in rows)} clean)", "",
             f"Corpus track (benchmarks/corpus.py on ../shared/corpus): {meta.get('corpus')}", "",
             "### Detection per operator (cases where an expected code was raised at warning or above)", ""]
    cols = WAYS + PEER_COLUMNS
    lines.append("| operator | " + " | ".join(cols) + " | watch median latency (steps) |")
    lines.append("|---" * (len(cols) + 2) + "|")
    for op in ops:
        lat = [v[0] for r in rows if r["op"] == op for v in [latency(r)] if v is not None]
        lines.append(f"| {op} | " + " | ".join(_cell(rows, op, c) for c in cols) +
                     f" | {statistics.median(lat) if lat else '-'} |")
    s = summary(rows, cols)
    lines.append("| **detection rate** | " + " | ".join(_pct(s[c]["detection"], s[c]["cases"]) for c in cols) +
                 f" | {s['watch']['median_latency_steps']} |")
    lines.append("| **false-alarm rate (clean twins)** | " +
                 " | ".join(_pct(s[c]["false_alarm"], s[c]["clean"]) for c in cols) + " | |")
    lines += ["", "n/v: the fault cannot be seen from this way in (expected.py says so); -: the tool could not read it.", ""]
    lines += ["### Per task (detection over visible cases / false alarms on clean twins)", "",
              "| task | " + " | ".join(WAYS) + " |", "|---" * (len(WAYS) + 1) + "|"]
    for task in sorted({r["task"] for r in rows}):
        st = summary([r for r in rows if r["task"] == task], WAYS)
        lines.append(f"| {task} | " + " | ".join(f"{_pct(st[c]['detection'], st[c]['cases'])} / "
                                                  f"{_pct(st[c]['false_alarm'], st[c]['clean'])}" for c in WAYS) + " |")
    return "\n".join(lines)


def _pct(v, n):
    return "-" if v is None else f"{100 * v:.0f}% (n={n})"


def misses(rows: list[dict]) -> list[str]:
    """Every miss, with what was found instead (for RESULTS.md's explanations)."""
    out = []
    for r in rows:
        if r["op"] == "clean":
            for col in WAYS:
                if r["ways"].get(col):
                    out.append(f"FALSE ALARM {r['task']} seed {r['seed']} {col}: {r['ways'][col]}")
            continue
        for col in WAYS:
            if hit(r, col) is False:
                out.append(f"MISS {r['op']} {r['task']} seed {r['seed']} {col}: found {r['ways'].get(col)}"
                           f"{' ERROR ' + r['errors'][col] if col in r['errors'] else ''}")
    return out


def digest(rows: list[dict]) -> str:
    """Misses grouped by operator and way in: what was said instead, and what the fault did to
    the run (its final validation loss against the clean twins' median on the same task)."""
    import collections

    clean = collections.defaultdict(list)
    for r in rows:
        if r["op"] == "clean" and r.get("outcome", {}).get("val_loss_end") is not None:
            clean[r["task"]].append(r["outcome"]["val_loss_end"])
    lines = ["| operator | way in | missed | tasks missed | said instead (cases) | expected code at info only | "
             "val loss at end, fault vs clean median |", "|---|---|---|---|---|---|---|"]
    for op in EXPECTED:
        for col in WAYS:
            missed = [r for r in rows if r["op"] == op and hit(r, col) is False]
            if not missed:
                continue
            total = sum(1 for r in rows if r["op"] == op and hit(r, col) is not None)
            said = collections.Counter(c for r in missed for c in (r["ways"].get(col) or ["(nothing)"]))
            tasks = collections.Counter(r["task"] for r in missed)
            want = set(expected_codes(op, col))
            at_info = sum(1 for r in missed if want & set(r.get("info", {}).get(col) or ()))
            at_info = f"{at_info}/{len(missed)}" if any("info" in r for r in missed) else "not recorded"
            effect = []
            for task in sorted(tasks):
                f = [r["outcome"]["val_loss_end"] for r in missed if r["task"] == task]
                if clean[task]:
                    effect.append(f"{task} {statistics.median(f):.3g} vs {statistics.median(clean[task]):.3g}")
            lines.append(f"| {op} | {col} | {len(missed)}/{total} | " + ", ".join(f"{t} {n}" for t, n in sorted(tasks.items())) +
                         " | " + ", ".join(f"{c} {n}" for c, n in said.most_common()) + f" | {at_info} | " + "; ".join(effect) + " |")
    alarms = collections.Counter((r["task"], c, col) for r in rows if r["op"] == "clean" for col in WAYS
                                 for c in (r["ways"].get(col) or []))
    lines += ["", "False alarms on clean twins (task, code, way in: cases):", ""]
    lines += [f"- {t} {c} {w}: {n}" for (t, c, w), n in sorted(alarms.items())] or ["- none"]
    return "\n".join(lines)
