"""OpenMMLab logs: MMEngine's `vis_data/scalars.json` and mmcv 1.x's `<timestamp>.log.json`.

MMEngine (mmengine/hooks/logger_hook.py, LoggerHook; visualization/vis_backend.py,
LocalVisBackend.add_scalars): every `interval` training iterations one JSON line
`{"lr", "data_time", "loss", <loss terms>, "time", "epoch", "iter", "memory", "step"}` with
`step` = `iter` = the global iteration (`epoch` only in epoch-based loops); after each validation
one line of the metrics (`accuracy/top1`, `coco/bbox_mAP`, ...) with the validation `data_time`
and `time`, whose `step` is the epoch (`log_metric_by_epoch=True`, the default) or the
iteration. The same lines go to `vis_data/<timestamp>.json` (which a test run overwrites with a
single dict): scalars.json is read, the copy claimed. The `<timestamp>.log` text beside
`vis_data/` says the same in words and is claimed too, so it does not come back as duplicates.

mmcv 1.x (mmcv/runner/hooks/logger/text.py, TextLoggerHook._dump_log): the first line is the
run's meta (`env_info`, `config`, `seed`), then `{"mode": "train", "epoch", "iter", "lr",
"memory", "data_time", <losses>, "loss", "time"}` where `iter` counts within the epoch (the
global step is rebuilt as (epoch - 1) x iterations per epoch + iter), and after each evaluation
`{"mode": "val", "epoch", "iter", "lr", "bbox_mAP", ...}` (`iter`: the number of val batches).

Validation lines become series named `val/<key>` (their `time` is not the training step time);
epochs are labels on the points (1-based, as both tools count them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Series
from . import Part, walk_files
from ._tabular_util import Table, head_lines, json_rows, number, read_text

FORMAT = "mmengine"

_EXPECTED = ('MMEngine vis_data/scalars.json (JSON lines with "step") or an mmcv <timestamp>.log.json '
             '(JSON lines with "mode", "epoch", "iter")')
_AXIS = {"step", "epoch", "iter", "mode"}
# timing keys: the seconds per iteration (`time`), its data-loading share and the memory
_NOT_STEP_TIME = {"data_time", "memory", "eta"}


def _first_rows(path: Path) -> list[dict]:
    rows = []
    lines = head_lines(path, 4)
    if not lines or not lines[0].lstrip().startswith("{"):
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _kind(path: Path) -> str | None:
    """'mmengine', 'mmcv' or None, from the first lines."""
    if path.suffix.lower() != ".json":
        return None
    rows = _first_rows(path)
    if any(r.get("mode") in ("train", "val") and "epoch" in r and "iter" in r for r in rows):
        return "mmcv"
    if rows and number(rows[0].get("step")) is not None and (
            path.parent.name == "vis_data" or {"data_time", "time"} & set(rows[0])):
        return "mmengine"
    return None


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if _kind(root) else []
    units: list[Path] = []
    seen_vis: set[Path] = set()
    for f in (walk_files(root) if files is None else files):
        kind = _kind(f)
        if kind is None:
            continue
        if kind == "mmengine" and f.parent.name == "vis_data":
            if f.parent in seen_vis:
                continue
            seen_vis.add(f.parent)
            units.append(f.parent)  # the folder: scalars.json and its <timestamp>.json copy
            stamp = f.parent.parent
        else:
            units.append(f)
            stamp = f.parent
            if f.name.endswith(".log.json"):
                # mmcv's text log beside it: <timestamp>.log.json -> <timestamp>.log
                units.extend(g for g in [f.with_name(f.name[:-5])] if g.is_file())
                continue
        units.extend(g for g in stamp.glob("*.log") if g.is_file())
    return units


def read(unit: Path) -> Part | None:
    unit = Path(unit)
    if unit.is_dir():  # vis_data/: scalars.json, else the newest <timestamp>.json
        cands = [unit / "scalars.json"] + sorted(unit.glob("*.json"), reverse=True)
        cands = [c for c in cands if c.is_file() and _kind(c) == "mmengine"]
        if not cands:
            raise InputError(unit, f"holds no readable scalars.json; expected {_EXPECTED}")
        return _read_mmengine(cands[0], unit.parent)
    if unit.suffix.lower() == ".log":
        return None  # the text twin of a JSON log read above: claimed, not read twice
    if _kind(unit) == "mmcv":
        return _read_mmcv(unit)
    return _read_mmengine(unit, unit.parent)


def _val_name(key: str) -> str:
    return f"val/{key}"


def _role(name: str) -> str | None:
    last = name.rsplit("/", 1)[-1]
    if last in _NOT_STEP_TIME or (name.startswith("val/") and last == "time"):
        return "other"  # not the seconds per training step the throughput check reads
    return None


def _series(table: Table, epoch_of: dict[str, np.ndarray] | None = None) -> dict[str, Series]:
    out = {}
    for name, s in table.series().items():
        role = _role(name)
        out[name] = Series(name, s.steps, s.values, s.epochs, None, role or s.role).normalized()
    return out


def _read_mmengine(path: Path, run_dir: Path) -> Part:
    text, notes = read_text(path)
    table = Table()
    train: list[tuple[float, float | None, dict]] = []
    val: list[tuple[float, dict]] = []
    for lineno, row in json_rows(text, table):
        step = number(row.get("step"))
        if step is None or not np.isfinite(step):
            table.bad(lineno)
            continue
        if "iter" in row or "lr" in row or "epoch" in row:
            train.append((step, number(row.get("epoch")), row))
        else:
            val.append((step, row))
    by_epoch = any(ep is not None for _, ep, _ in train)
    for step, ep, row in train:
        _add(table, row, step, ep, "")
    val_x = _epoch_ends(train) if by_epoch else None
    for step, row in val:
        if val_x is not None:  # log_metric_by_epoch: `step` is the epoch just finished
            _add(table, row, val_x(step), step, "val/")
        else:
            _add(table, row, step, None, "val/")
    if table.empty:
        where = f" ({table.bad_rows} malformed, first at line {table.first_bad_line})" if table.bad_rows else ""
        raise InputError(path, f"no line holds numeric metrics with a step{where}; expected {_EXPECTED}")
    if val and by_epoch:
        notes.append(f"{path.name}: validation 'step' is the epoch (MMEngine log_metric_by_epoch); "
                     "placed at the last training step logged in that epoch")
    return Part(_series(table), run_dir, FORMAT, notes=notes + table.notes(path))


def _add(table: Table, row: dict, x: float, epoch: float | None, prefix: str) -> None:
    logged = False
    for k, v in row.items():
        val = number(v)
        if val is None or k in _AXIS or (prefix and k == "lr"):
            continue
        table.add(prefix + k, x, val, epoch, None)
        logged = True
    table.good_rows += logged


def _epoch_ends(train: list[tuple[float, float | None, dict]]):
    """epoch -> the training step at its end: the last step logged in it, else interpolated."""
    ends: dict[float, float] = {}
    for step, ep, _ in train:
        if ep is not None:
            ends[ep] = max(step, ends.get(ep, -np.inf))
    eps = np.array(sorted(ends))
    at = np.array([ends[e] for e in eps])
    per = float(at[-1] / eps[-1]) if eps.size and eps[-1] > 0 else 1.0  # steps per epoch, about

    def x(epoch: float) -> float:
        if epoch in ends:
            return ends[epoch]
        if eps.size >= 2 and eps[0] <= epoch <= eps[-1]:
            return float(np.interp(epoch, eps, at))
        return float(epoch * per)

    return x


def _read_mmcv(path: Path) -> Part:
    text, notes = read_text(path)
    table = Table()
    rows = []
    for lineno, row in json_rows(text, table):
        mode = row.get("mode")
        ep, it = number(row.get("epoch")), number(row.get("iter"))
        if mode is None and ep is None:
            continue  # the run's meta line (env_info, config, seed)
        if mode not in ("train", "val") or ep is None or it is None:
            table.bad(lineno)
            continue
        rows.append((mode, ep, it, row))
    train_it = [(ep, it) for mode, ep, it, _ in rows if mode == "train"]
    # `iter` counts inside the epoch when it falls back as the epoch grows (by_epoch runners)
    inner = any(e2 > e1 and i2 < i1 for (e1, i1), (e2, i2) in zip(train_it, train_it[1:]))
    per = max((it for _, it in train_it), default=0.0) if inner else 0.0
    for mode, ep, it, row in rows:
        if mode == "train":
            _add(table, row, (ep - 1) * per + it if inner else it, ep, "")
        else:
            x = ep * per if inner else max((i for e, i in train_it if e <= ep), default=it)
            _add(table, row, x, ep, "val/")
    if table.empty:
        where = f" ({table.bad_rows} malformed, first at line {table.first_bad_line})" if table.bad_rows else ""
        raise InputError(path, f"no train/val line with numeric metrics{where}; expected {_EXPECTED}")
    if inner:
        notes.append(f"{path.name}: 'iter' counts within each epoch; global step = (epoch - 1) x "
                     f"{per:g} (the most iterations logged in an epoch) + iter")
    return Part(_series(table), path.parent, FORMAT, notes=notes + table.notes(path))
