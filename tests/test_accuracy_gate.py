"""The accuracy gate: the --quick fault zoo must keep the published detection and false-alarm rates.

benchmarks/faults/published.json holds the rates the quick subset measured when RESULTS.md was
written, and the margin. This test trains the quick zoo for real (two tasks, every operator that
applies, one held-out seed, three clean twins per task; ~2 minutes on 2 cores), scores probe,
watch and diagnose on three log formats, and fails when a way in's detection rate falls below its
published value minus the margin, or its false-alarm rate rises above the published value plus
the margin (on three clean twins per task, one new false alarm is enough to fail).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "benchmarks" / "faults" / "published.json"


def test_quick_zoo_keeps_the_published_rates():
    for mod in ("torch", "sklearn", "lightning", "tensorboard"):
        pytest.importorskip(mod)
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.faults.run import QUICK, run
        from benchmarks.faults.score import WAYS, summary
    finally:
        sys.path.remove(str(ROOT))
    published = json.loads(PUBLISHED.read_text())
    margin = published["margin"]
    rows = run(QUICK, with_peers=False, progress=False)
    measured = summary(rows, WAYS)
    problems = []
    for way in WAYS:
        pub, got = published["quick"][way], measured[way]
        assert got["cases"] == pub["cases"] and got["clean"] == pub["clean"], (way, got, pub)
        if got["detection"] < pub["detection"] - margin:
            problems.append(f"{way}: detection {got['detection']:.3f} < published {pub['detection']:.3f} - {margin}")
        if got["false_alarm"] > pub["false_alarm"] + margin:
            problems.append(f"{way}: false alarms {got['false_alarm']:.3f} > published {pub['false_alarm']:.3f} + {margin}")
    alarms = [f"{r['task']} seed {r['seed']} {w}: {r['ways'][w]}" for r in rows if r["op"] == "clean"
              for w in WAYS if r["ways"].get(w)]
    assert not problems, "\n".join(problems + ["false alarms on clean twins:"] + alarms)
