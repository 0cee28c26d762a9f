"""load(): read any supported run folder or file into RunHistory objects.

Each format is one module with three names:

    FORMAT = "tensorboard"                       # what `source.format` says
    def discover(root, files=None) -> list[Path] # the units (files or folders) it reads under root;
                                                 # `files`: every file under root, walked once
    def read(unit: Path) -> Part                 # one unit -> series, hparams, notes

`discover` gets a folder (search it recursively) or a single file (return [file] if it is
yours). Modules are asked in READERS order and a unit claimed by an earlier one is not offered
to a later one, so specific formats (Lightning's metrics.csv) go before generic ones (any CSV).
Units are grouped into runs by `Part.run_dir`; parts of one run are merged.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..history import Checkpoint, RunHistory, Series

__all__ = ["load", "load_runs", "Part", "READERS", "find_checkpoints", "run_matches"]

# Order matters: most specific first.
READERS = (
    "tensorboard",
    "traindoctor_run",
    "lightning_csv",
    "hf_trainer",
    "detectron2",
    "mmengine",
    "mlflow",
    "wandb",
    "tabular",
    "textlog",
)

# Folders that never hold the user's logs and can be huge.
_SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".ipynb_checkpoints", "wandb-artifacts"}


@dataclass
class Part:
    """What a reader got from one unit."""

    series: dict[str, Series]
    run_dir: Path
    format: str
    hparams: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # True when several units of one run log the same series (a restarted run's event files):
    # same-named series of merge parts are joined, the later part winning a duplicate step,
    # instead of being kept apart as "name#2".
    merge: bool = False
    source: str = ""  # the file or folder read (set by load_runs): --show-series names it per series
    stats: dict[str, Any] = field(default_factory=dict)  # how much of the file was understood (text logs)
    # checkpoints the log itself names (HF's best_model_checkpoint), beside those found on disk
    checkpoints: list[Checkpoint] = field(default_factory=list)
    # Readers of run databases (MLflow's mlflow.db) know more than a folder name can say:
    run: str | None = None  # the run's name ("experiment/run name"), instead of its folder
    status: str = ""  # RunHistory.status: RUNNING, FINISHED, FAILED, KILLED
    meta: dict[str, Any] = field(default_factory=dict)  # RunHistory.meta
    search_disk: bool = True  # False: run_dir is not a folder on disk (a run inside mlflow.db)


def _reader(name: str):
    return importlib.import_module(f".{name}", __name__)


def walk_files(root: Path) -> list[Path]:
    """Every file under root, sorted, skipping VCS and virtualenv folders."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        out.extend(Path(dirpath) / f for f in sorted(filenames))
    return out


def load_runs(path, *, format: str | None = None, progress=None, experiment: str | None = None,
              run: str | None = None) -> list[RunHistory]:
    """Read every run under `path` (a file or a folder searched recursively).

    `progress(done, total, unit)` is called before each file or folder is read (the CLI draws a
    progress bar with it); all units are discovered first so that `total` is known.
    An MLflow tracking server (http://host:5000), a `sqlite:///mlflow.db` URI or an mlflow.db file
    is read run by run: `experiment` and `run` (an id, a name) pick runs before any is read.
    """
    from . import mlflow_store

    if mlflow_store.is_target(path):
        return mlflow_store.load_runs(path, experiment=experiment, run=run, progress=progress)
    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(root, "no such file or folder; expected a training-log file or a run folder")
    if root.is_dir() and not any(root.iterdir()):
        raise InputError(root, "the folder is empty; expected training logs (TensorBoard events, "
                               "metrics.csv, trainer_state.json, mlruns/, mlflow.db, a .log/.txt/.csv/.jsonl file)")
    names = READERS if format is None else (format,)
    if format is not None and format not in READERS:
        raise InputError(None, f"unknown format {format!r}; formats are: {', '.join(READERS)}")
    claimed: set[Path] = set()
    todo = []
    files = walk_files(root) if root.is_dir() else None  # one walk, shared by every reader
    for name in names:
        mod = _reader(name)
        for unit in mod.discover(root, files):
            unit = Path(unit)
            if unit in claimed or any(p in claimed for p in unit.parents):
                continue
            claimed.add(unit)
            todo.append((mod, unit))
    parts: list[Part] = []
    errors: list[InputError] = []
    for i, (mod, unit) in enumerate(todo):
        if progress is not None:
            progress(i, len(todo), unit)
        try:
            got = mod.read(unit)
        except InputError as exc:
            errors.append(exc)
            continue
        # a unit may hold several runs (one Part each): an mlflow.db found in a folder
        for part in got if isinstance(got, list) else [got]:
            if part is not None and part.series:
                if not part.source:
                    part.source = str(unit)
                parts.append(cumulative_time(part))
    if progress is not None:
        progress(len(todo), len(todo), None)
    if not parts:
        if errors:
            raise errors[0]
        what = "file" if root.is_file() else "folder"
        raise InputError(root, f"no training metrics found in this {what}; expected TensorBoard "
                               "events, Lightning metrics.csv, HF trainer_state.json, MLflow mlruns/ or mlflow.db, "
                               "W&B run folders, CSV/JSONL with a step or epoch column, or a text log "
                               "with loss values")
    runs = _group(parts, root)
    if experiment is not None:  # MLflow runs found in a folder (mlruns/, mlflow.db)
        found = sorted({str(r.meta.get("experiment")) for r in runs if r.meta.get("experiment")})
        runs = [r for r in runs if experiment in (r.meta.get("experiment"), r.meta.get("experiment_id"))]
        if not runs:
            raise InputError(root, f"no MLflow experiment named {experiment!r} here; experiments: "
                                   f"{', '.join(map(repr, found)) or 'none'}")
    notes_from_errors = [str(e) for e in errors]
    if notes_from_errors:
        runs = [_add_notes(r, notes_from_errors) for r in runs]
    return runs


def load(path, *, format: str | None = None, run: str | None = None, experiment: str | None = None) -> RunHistory:
    """Read one run. A folder holding several runs needs `run=` (one of the names listed);
    an MLflow tracking server needs `experiment=` unless `run=` is a run id."""
    runs = load_runs(path, format=format, run=run, experiment=experiment)
    if run is not None:
        match = [r for r in runs if run_matches(r, run)]
        if not match:
            raise InputError(path, f"no run named {run!r}; runs found: {', '.join(r.run for r in runs)}")
        return match[0]
    if len(runs) > 1:
        raise InputError(
            path,
            f"holds {len(runs)} runs ({', '.join(r.run or '.' for r in runs[:8])}"
            f"{', ...' if len(runs) > 8 else ''}); pass one of their folders, "
            "or use `traindoctor compare` / load_runs() to read them all",
        )
    return runs[0]


def run_matches(run: RunHistory, wanted: str) -> bool:
    """`--run` names a run by its label, or (MLflow) by its id, the id's first 8+ characters,
    or its name."""
    meta = run.meta or {}
    rid = str(meta.get("run_id", ""))
    return wanted in (run.run, rid, meta.get("run_name")) or (len(wanted) >= 8 and rid.startswith(wanted))


# tokens of a rate's name (it/s, samples_per_second): a rate that only grows is a warm-up, not a clock
_RATE_TOKENS = {"it", "its", "s", "per", "throughput", "samples", "tokens", "rate", "fps"}


def is_cumulative_time(s: Series) -> bool:
    """A time column that only grows, from near zero to many times its first value: seconds
    since the start (ultralytics' results.csv `time`, a logger's `elapsed`), not seconds per step.

    Five points at least, never falling, rising at 80% of them, ending at least twice as high as
    it began: a per-step or per-epoch time jitters up and down; a rate is excluded by its name.
    """
    if s.role != "time" or len(s) < 5:
        return False
    from ..history import _tokens

    if _RATE_TOKENS & set(_tokens(s.name)):
        return False
    import numpy as np

    v = s.normalized().values
    v = v[np.isfinite(v)]
    if v.size < 5:
        return False
    d = np.diff(v)
    return bool((d >= 0).all() and (d > 0).mean() >= 0.8 and v[-1] >= 2 * v[0] and v[-1] > 0)


def cumulative_time(part: Part) -> Part:
    """Cumulative time columns become the wall clock of the part's other series (so throughput
    reads intervals, not a 'step time' that only grows) and lose the `time` role."""
    from dataclasses import replace

    import numpy as np

    cum = [n for n, s in part.series.items() if is_cumulative_time(s)]
    if not cum:
        return part
    series = dict(part.series)
    clock = series[cum[0]].normalized()
    ok = np.isfinite(clock.values)
    cx, cv = clock.steps[ok], clock.values[ok]
    for name in cum:
        series[name] = replace(series[name], role="other")
    for name, s in series.items():
        if name in cum or s.wall_times is not None or len(s) == 0:
            continue
        inside = (s.steps >= cx[0]) & (s.steps <= cx[-1])
        walls = np.where(inside, np.interp(s.steps, cx, cv), np.nan)
        if inside.any():
            series[name] = replace(s, wall_times=walls)
    note = (f"{', '.join(cum)}: seconds since the start (it only grows), read as the wall clock of "
            "the other series, not as seconds per step")
    return replace(part, series=series, notes=[*part.notes, note])


def _add_notes(run: RunHistory, notes: list[str]) -> RunHistory:
    from dataclasses import replace

    return replace(run, notes=tuple(run.notes) + tuple(notes))


def _group(parts: list[Part], root: Path, *, checkpoints: bool = True) -> list[RunHistory]:
    """Parts grouped into runs by run_dir. `checkpoints=False` skips the search for checkpoint
    files beside each run (a folder walk), for `watch`, which groups again at every update."""
    by_dir: dict[Path, list[Part]] = {}
    for p in parts:
        by_dir.setdefault(Path(p.run_dir), []).append(p)
    base = root if root.is_dir() else root.parent
    runs = []
    for run_dir, group in sorted(by_dir.items(), key=lambda kv: str(kv[0])):
        series: dict[str, Series] = {}
        hparams: dict[str, Any] = {}
        notes: list[str] = []
        named: list[Checkpoint] = []
        formats = []
        merged: set[str] = set()
        files: dict[str, str] = {}
        stats: dict[str, dict] = {}
        label = next((p.run for p in group if p.run), None)
        status = next((p.status for p in group if p.status), "")
        meta: dict[str, Any] = {}
        search_disk = all(p.search_disk for p in group)
        for p in group:
            if p.stats:
                stats[p.source] = p.stats
            for name, s in p.series.items():
                if p.merge and name in merged:
                    series[name] = _concat(series[name], s)
                    continue
                key = name if name not in series else _unique(name, series)
                series[key] = s
                files[key] = p.source
                if p.merge:
                    merged.add(key)
            hparams.update(p.hparams)
            notes.extend(p.notes)
            named.extend(p.checkpoints)
            meta.update(p.meta)
            if p.format not in formats:
                formats.append(p.format)
        try:
            rel = str(run_dir.resolve().relative_to(base.resolve()))
        except ValueError:
            rel = run_dir.name
        hparams = {**read_hparams_file(run_dir), **hparams}
        runs.append(
            RunHistory(
                series,
                path=str(run_dir),
                format="+".join(formats),
                run=label or ("" if rel == "." else rel),
                hparams=hparams,
                checkpoints=tuple(merge_checkpoints(
                    find_checkpoints(run_dir) if search_disk and checkpoints else [], named)),
                notes=tuple(notes),
                files=files,
                parse_stats=stats,
                status=status,
                meta=meta,
            )
        )
    return runs


def _concat(a: Series, b: Series) -> Series:
    """a then b, sorted by step; on a duplicate step b's point wins (Series.normalized)."""
    import numpy as np

    def cat(x, y, attr):
        if getattr(x, attr) is None and getattr(y, attr) is None:
            return None
        return np.concatenate([np.full(len(s), np.nan) if getattr(s, attr) is None else getattr(s, attr)
                               for s in (x, y)])

    return Series(a.name, np.concatenate([a.steps, b.steps]), np.concatenate([a.values, b.values]),
                  cat(a, b, "epochs"), cat(a, b, "wall_times"), a.role).normalized()


def _unique(name: str, taken) -> str:
    i = 2
    while f"{name}#{i}" in taken:
        i += 1
    return f"{name}#{i}"


def read_hparams_file(run_dir: Path) -> dict[str, Any]:
    """hparams.yaml (Lightning) or hparams.json beside the logs; {} when absent or unreadable.

    A broken hparams file must not stop a diagnosis: hparams only feed `compare` and the report.
    """
    for name in ("hparams.yaml", "hparams.yml", "hparams.json"):
        f = Path(run_dir) / name
        if not f.is_file():
            continue
        try:
            text = f.read_text(encoding="utf-8")
            if name.endswith("json"):
                import json

                data = json.loads(text)
            else:
                try:
                    import yaml

                    data = yaml.safe_load(text)
                except ImportError:
                    data = _flat_yaml(text)
        except Exception:
            return {}
        return dict(data) if isinstance(data, dict) else {}
    return {}


def _flat_yaml(text: str) -> dict[str, Any]:
    """Top-level `key: value` pairs of a YAML file, for when pyyaml is not installed."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line or line[0] in " #-\t" or ":" not in line:
            continue
        key, _, val = line.partition(":")
        val = val.strip().strip("'\"")
        for cast in (int, float):
            try:
                out[key.strip()] = cast(val)
                break
            except ValueError:
                continue
        else:
            out[key.strip()] = val
    return out


# -- checkpoints --------------------------------------------------------------------------
_CKPT_EXT = (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".h5", ".keras", ".pkl", ".npz")
_EPOCH_RE = re.compile(r"epoch[=_-]?(\d+)", re.I)
_STEP_RE = re.compile(r"(?:step|iter|it)[=_-]?(\d+)", re.I)
_HF_RE = re.compile(r"^checkpoint-(\d+)$")
_TAG_RE = re.compile(r"(?:^|[^a-z])(best|last|latest|final)(?:[^a-z]|$)", re.I)


_CKPT_DIR_NAMES = {"checkpoints", "checkpoint", "ckpt", "ckpts", "weights", "saved_models", "models"}


def find_checkpoints(run_dir: Path, max_depth: int = 4) -> list[Checkpoint]:
    """Checkpoints beside the logs, from their names alone (never opened or unpickled).

    Lightning `epoch=9-step=1230.ckpt`, HF `checkpoint-500/`, and files or folders named
    best / last / latest / final. Searches run_dir recursively first. Only when it holds none,
    looks up to two folders above (scripts often save next to a `logs/` or `wandb/` folder), and
    there only at what sits directly in that folder or in a `checkpoints/`-like folder: never
    inside sibling folders, which are usually other runs with checkpoints of their own.
    """
    run_dir = Path(run_dir)
    found = _walk_checkpoints(run_dir, max_depth)
    parent = run_dir
    for _ in range(2):
        if found or parent.parent == parent:
            break
        parent = parent.parent
        found = _walk_checkpoints(parent, 1)
        for d in sorted(parent.iterdir()) if parent.is_dir() else ():
            if d.is_dir() and d.name.lower() in _CKPT_DIR_NAMES:
                found.update(_walk_checkpoints(d, 2))
    return sorted(found.values(), key=lambda c: (c.step is None, c.step or 0, c.epoch or 0, c.path))


def merge_checkpoints(found: list[Checkpoint], named: list[Checkpoint]) -> list[Checkpoint]:
    """Checkpoints on disk plus those a log names (HF's best_model_checkpoint): a named one that
    is on disk (same folder or file name) lends it its tag; one that is not is listed as named."""
    from dataclasses import replace

    out = list(found)
    for ck in named:
        base = re.split(r"[\\/]", ck.path.rstrip("/\\"))[-1]
        same = [i for i, c in enumerate(out) if Path(c.path).name == base]
        if same:
            i = same[0]
            out[i] = replace(out[i], tag=ck.tag or out[i].tag, step=out[i].step if out[i].step is not None else ck.step)
        else:
            out.append(ck)
    return sorted(out, key=lambda c: (c.step is None, c.step or 0, c.epoch or 0, c.path))


def _walk_checkpoints(root: Path, max_depth: int) -> dict[str, Checkpoint]:
    """Checkpoint files and folders under root, at most max_depth folders down (1 = root only)."""
    seen: dict[str, Checkpoint] = {}
    if not root.is_dir():
        return seen
    for dirpath, dirnames, filenames in os.walk(root):
        if len(Path(dirpath).relative_to(root).parts) + 1 >= max_depth:
            descend = []
        else:
            descend = [d for d in dirnames if d not in _SKIP_DIRS]
        for d in sorted(dirnames):
            ck = _checkpoint_from_name(Path(dirpath) / d, is_dir=True)
            if ck:
                seen.setdefault(ck.path, ck)
                if d in descend:
                    descend.remove(d)  # don't look inside a checkpoint folder
        dirnames[:] = sorted(descend)
        for f in filenames:
            ck = _checkpoint_from_name(Path(dirpath) / f, is_dir=False)
            if ck:
                seen.setdefault(ck.path, ck)
    return seen


def _checkpoint_from_name(p: Path, is_dir: bool) -> Checkpoint | None:
    name = p.name
    hf = _HF_RE.match(name)
    if is_dir and hf:
        return Checkpoint(str(p), None, int(hf.group(1)), None)
    stem = name
    if not is_dir:
        if not name.lower().endswith(_CKPT_EXT):
            return None
        stem = name.rsplit(".", 1)[0]
    tag = _TAG_RE.search(stem)
    ep = _EPOCH_RE.search(stem)
    st = _STEP_RE.search(stem)
    looks_ckpt = "ckpt" in stem.lower() or "checkpoint" in stem.lower() or "model" in stem.lower()
    if not (tag or ep or (st and not is_dir) or (not is_dir and looks_ckpt)):
        return None
    if is_dir and not (tag and (looks_ckpt or "model" in stem.lower() or stem.lower() == tag.group(1).lower())):
        # a folder counts only when it is clearly a checkpoint folder (best_checkpoint/, best/)
        if not (is_dir and tag and len(stem) <= 24):
            return None
    return Checkpoint(
        str(p),
        int(ep.group(1)) if ep else None,
        int(st.group(1)) if st else None,
        tag.group(1).lower() if tag else None,
    )
