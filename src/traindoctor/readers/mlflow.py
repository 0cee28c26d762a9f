"""MLflow file store: `mlruns/<experiment_id>/<run_id>/`.

Layout (mlflow/store/tracking/file_store.py): `meta.yaml` (run_name, status, start/end times),
`metrics/<name>` with one "timestamp value step" line per logged point (timestamp in ms; very
old versions wrote "timestamp value" without a step), `params/<name>` holding one value,
`tags/mlflow.runName`. A metric or param named "train/loss" is the file `metrics/train/loss`.
Each run folder is one run. Read with the standard library only: mlflow need not be installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..history import Series
from . import Part, _flat_yaml, walk_files

FORMAT = "mlflow"

# RunStatus in mlflow/protos/service.proto
_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


def _is_run_dir(d: Path) -> bool:
    return (d / "meta.yaml").is_file() and any((d / sub).is_dir() for sub in ("metrics", "params", "tags"))


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        # a single metric file: mlruns/<exp>/<run>/metrics/<name...>
        for parent in root.parents:
            if parent.name == "metrics" and _is_run_dir(parent.parent):
                return [parent.parent]
        return []
    if _is_run_dir(root):
        return [root]
    runs = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in {".git", ".venv", "venv", "node_modules",
                                                                ".trash", "__pycache__"})
        d = Path(dirpath)
        if _is_run_dir(d):
            runs.append(d)
            dirnames[:] = []  # metrics/, params/, artifacts/ belong to this run
    return runs


def read(unit: Path) -> Part:
    run_dir = Path(unit)
    meta = _meta(run_dir / "meta.yaml")
    notes: list[str] = []
    series: dict[str, Series] = {}
    metrics_dir = run_dir / "metrics"
    if metrics_dir.is_dir():
        for f in walk_files(metrics_dir):
            name = f.relative_to(metrics_dir).as_posix()
            s, bad, first_bad = _read_metric(f, name)
            if s is not None:
                series[name] = s
            if bad:
                notes.append(f"metrics/{name}: skipped {bad} malformed row{'s' if bad != 1 else ''} "
                             f"(first at line {first_bad})")
    hparams: dict = {}
    params_dir = run_dir / "params"
    if params_dir.is_dir():
        for f in walk_files(params_dir):
            hparams[f.relative_to(params_dir).as_posix()] = _cast(_read_small(f))
    run_name = meta.get("run_name") or _read_small(run_dir / "tags" / "mlflow.runName")
    if run_name:
        hparams["mlflow.run_name"] = str(run_name)
    hparams["mlflow.run_id"] = meta.get("run_id", run_dir.name)
    exp = _meta(run_dir.parent / "meta.yaml").get("name")
    if exp:
        hparams["mlflow.experiment"] = exp
    status = _STATUS.get(meta.get("status"))
    if status:
        hparams["mlflow.status"] = status
        if status in ("FAILED", "KILLED"):
            notes.append(f"MLflow marks this run {status}: its metrics stop where it died")
        elif status == "RUNNING" and meta.get("end_time") in (None, "", "null"):
            notes.append("MLflow still marks this run RUNNING (in progress, or crashed without ending the run)")
    if meta.get("lifecycle_stage") == "deleted":
        notes.append("MLflow marks this run deleted")
    return Part(series, run_dir, FORMAT, hparams=hparams, notes=notes)


def _read_metric(path: Path, name: str) -> tuple[Series | None, int, int | None]:
    steps, values, walls = [], [], []
    bad, first_bad = 0, None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, 1, 1
    lines = text.splitlines()
    # MLflow < 1.0 wrote "timestamp value" (no step). Only a file written wholly that way is old
    # style; a two-field line among three-field ones is a line cut short by a crash.
    old_style = all(len(ln.split()) == 2 for ln in lines if ln.strip())
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) == 3:
                ts, val, step = int(parts[0]), float(parts[1]), float(parts[2])
            elif len(parts) == 2 and old_style:
                ts, val, step = int(parts[0]), float(parts[1]), float(len(steps))
            else:
                raise ValueError
        except ValueError:
            bad += 1
            first_bad = first_bad or lineno
            continue
        steps.append(step)
        values.append(val)
        walls.append(ts / 1000.0)  # MLflow timestamps are milliseconds since the epoch
    if not values:
        return None, bad, first_bad
    return Series(name, np.array(steps), np.array(values), None, np.array(walls)), bad, first_bad


def _meta(path: Path) -> dict:
    try:
        return _flat_yaml(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return {}


def _read_small(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _cast(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text
