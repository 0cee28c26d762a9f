"""MLflow's stores found on disk: the file store `mlruns/<experiment_id>/<run_id>/`, and the
SQLite store `mlflow.db` (MLflow 3's default; one unit holding every run, read by mlflow_store).

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
from .mlflow_common import STATUS_NAMES as _STATUS
from .mlflow_common import MlflowRun, run_meta, status_notes

FORMAT = "mlflow"
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _is_run_dir(d: Path) -> bool:
    return (d / "meta.yaml").is_file() and any((d / sub).is_dir() for sub in ("metrics", "params", "tags"))


def _is_sqlite_store(f: Path) -> bool:
    from .mlflow_sqlite import is_store, looks_like_sqlite

    if f.suffix.lower() not in _DB_SUFFIXES:
        return False
    # a hot journal (a writer died mid-write) stops a read-only open: claim it, so that reading
    # it reports how to recover instead of the folder looking empty
    return is_store(f) or (looks_like_sqlite(f) and Path(f"{f}-journal").exists())


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file() and _is_sqlite_store(root):
        return [root]
    stores = [f for f in (files if files is not None else walk_files(root) if root.is_dir() else [])
              if f.suffix.lower() in _DB_SUFFIXES and _is_sqlite_store(f)]
    return stores + _file_store_runs(root)


def _file_store_runs(root: Path) -> list[Path]:
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


def read(unit: Path) -> Part | list[Part]:
    if Path(unit).is_file():  # an mlflow.db: one Part per run
        from .mlflow_store import store_parts

        return store_parts(Path(unit))
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
    tags_dir = run_dir / "tags"
    tags = {f.relative_to(tags_dir).as_posix(): _read_small(f) for f in walk_files(tags_dir)} if tags_dir.is_dir() else {}
    run = MlflowRun(
        run_id=str(meta.get("run_id") or run_dir.name),
        name=str(meta.get("run_name") or tags.get("mlflow.runName") or ""),
        experiment_id=str(meta.get("experiment_id", run_dir.parent.name)),
        experiment=str(_meta(run_dir.parent / "meta.yaml").get("name") or ""),
        status=_STATUS.get(meta.get("status"), ""),
        start_time=_ms(meta.get("start_time")), end_time=_ms(meta.get("end_time")),
        lifecycle_stage=str(meta.get("lifecycle_stage") or "active"), tags=tags)
    return Part(series, run_dir, FORMAT, hparams=hparams, notes=status_notes(run) + notes,
                status=run.status, meta=run_meta(run, store="file"))


def _ms(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


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
