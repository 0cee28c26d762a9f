"""traindoctor's own run file: the JSONL that `td.watch` and the DoctorCallbacks append to.

One JSON object per line, one line per logged step (and one per validation/eval pass):

    {"step": 12, "epoch": 0, "time": 1732960000.1, "train_loss": 0.53, "lr": 0.001,
     "grad_norm": 1.2, "grad_norm/encoder": 0.9, "update_ratio": 0.0011, "step_time": 0.031, ...}

It is plain JSONL, so `pandas.read_json(path, lines=True)` reads it too. Non-finite values are
written as the tokens NaN / Infinity (Python's json and pandas read them; a NaN loss is exactly
what nan_loss must see). The writer appends whole lines with one write() each, so a killed run
leaves at most its last line cut; that line is skipped and said so in the notes.

This reader goes before the generic tabular one because it knows the roles: the recorder's own
statistics (per-rank losses under `rank/`, activation statistics under `act/`, update/weight
ratios) are context, not more training losses for the curve detectors to fire on twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Series, infer_role
from . import Part, walk_files

__all__ = ["FORMAT", "FILE_NAME", "META_NAME", "role_for", "discover", "read"]

FORMAT = "traindoctor"
FILE_NAME = "traindoctor_run.jsonl"
META_NAME = "traindoctor_meta.json"
# Keys of a line that are its x axis, not metrics.
AXES = ("step", "epoch", "time")
_CONTEXT_PREFIXES = ("rank/", "act/", "mem/", "update_ratio", "output_", "target_", "nonfinite")


def role_for(name: str) -> str:
    """The role of one of the run file's columns (the recorder's statistics are `other`)."""
    if name.startswith(_CONTEXT_PREFIXES):
        return "other"
    if name == "grad_norm" or name.startswith("grad_norm/"):
        return "grad_norm"
    if name in ("step_time", "data_time"):
        return "time"
    return infer_role(name)


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if root.name == FILE_NAME else []
    return [f for f in (walk_files(root) if files is None else files) if f.name == FILE_NAME]


def read(unit: Path) -> Part:
    unit = Path(unit)
    try:
        raw = unit.read_bytes()
    except OSError as exc:
        raise InputError(unit, f"cannot be read ({exc.strerror or exc}); check the path and permissions") from None
    cols: dict[str, list] = {}
    steps: list[float] = []
    epochs: list[float] = []
    walls: list[float] = []
    bad: list[int] = []
    lines = raw.decode("utf-8", errors="replace").split("\n")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad.append(lineno)
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            bad.append(lineno)
            continue
        i = len(steps)
        steps.append(float(row["step"]))
        epochs.append(_num(row.get("epoch")))
        walls.append(_num(row.get("time")))
        for k, v in row.items():
            if k in AXES or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            cols.setdefault(k, []).append((i, float(v)))
    if not steps:
        raise InputError(unit, "holds no complete line; expected traindoctor's run file, one JSON object "
                               'per line with a "step", e.g. {"step": 1, "train_loss": 0.5}')
    st, ep, wt = (np.asarray(a, dtype=np.float64) for a in (steps, epochs, walls))
    series = {}
    for name, pts in cols.items():
        idx = np.fromiter((p[0] for p in pts), dtype=np.int64, count=len(pts))
        vals = np.fromiter((p[1] for p in pts), dtype=np.float64, count=len(pts))
        series[name] = Series(name, st[idx], vals, ep[idx], wt[idx], role_for(name))
    notes = []
    if bad:
        if bad == [_last_nonempty(lines)]:
            what = "its last line is cut (the run was killed while writing it) and was skipped"
        else:
            what = f"{len(bad)} malformed line(s) skipped, first at line {bad[0]}"
        notes.append(f"{unit.name}: {what}")
    meta = _meta(unit.parent)
    # no status in the sidecar: the run is still going, or was killed before it could say (kill -9)
    return Part(series, unit.parent, FORMAT, hparams=meta.get("hparams", {}), notes=notes,
                status=meta.get("status", ""))


def _num(v) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return math.nan


def _last_nonempty(lines: list[str]) -> int:
    for i in range(len(lines), 0, -1):
        if lines[i - 1].strip():
            return i
    return 0


def _meta(run_dir: Path) -> dict:
    """The sidecar file: hparams the recorder saw (optimizer, lr, world size...) and, once the run
    has ended, its status (FINISHED, FAILED, KILLED). {} when missing or damaged."""
    f = Path(run_dir) / META_NAME
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    hp = data.get("hparams")
    status = data.get("status")
    return {"hparams": dict(hp) if isinstance(hp, dict) else {},
            **({"status": status} if isinstance(status, str) else {})}
