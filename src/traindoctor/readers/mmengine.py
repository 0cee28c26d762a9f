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
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Series
from . import Part, walk_files
from ._tabular_util import Table, column, group_rows, head_lines, json_chunks, json_rows, number, read_text

FORMAT = "mmengine"

_EXPECTED = ('MMEngine vis_data/scalars.json (JSON lines with "step") or an mmcv <timestamp>.log.json '
             '(JSON lines with "mode", "epoch", "iter")')
_AXIS = {"step", "epoch", "iter", "mode"}
_STAMP_LOG = re.compile(r"\d{8}_\d{6}\.log")  # runner.timestamp: time.strftime("%Y%m%d_%H%M%S")
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
    if not rows or number(rows[0].get("step")) is None:
        return None
    if path.parent.name == "vis_data":
        return "mmengine"
    # elsewhere (a copied scalars.json), MMEngine's training line: the global `iter` beside
    # `step`, and the IterTimerHook's `time`/`data_time`; a script's own {"step", "loss"} is not it
    if any("iter" in r and number(r.get("step")) is not None and {"data_time", "time"} & set(r) for r in rows):
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
            # the Runner's text log: work_dir/<timestamp>/<timestamp>.log, beside vis_data/
            units.extend(g for g in f.parent.parent.glob("*.log") if _STAMP_LOG.fullmatch(g.name) and g.is_file())
        else:
            units.append(f)
            if f.name.endswith(".log.json"):
                # mmcv's text log beside it: <timestamp>.log.json -> <timestamp>.log
                units.extend(g for g in [f.with_name(f.name[:-5])] if g.is_file())
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


def _role(name: str) -> str | None:
    last = name.rsplit("/", 1)[-1]
    if last in _NOT_STEP_TIME or (name.startswith("val/") and last == "time"):
        return "other"  # not the seconds per training step the throughput check reads
    return None


def _series(table: Table) -> dict[str, Series]:
    out = {}
    for name, s in table.series().items():
        role = _role(name)
        out[name] = Series(name, s.steps, s.values, s.epochs, None, role or s.role).normalized()
    return out


def _read_mmengine(path: Path, run_dir: Path) -> Part:
    text, notes = read_text(path)
    table = Table()
    ends = None  # (epochs, the last training step logged in each)
    val = []  # (keys, row numbers, rows, steps): a validation a epoch, few; placed at the end
    for done, lines, rows in json_chunks(text, table):
        for keys, idx in group_rows(rows):
            sub = [rows[i] for i in idx]
            step, ok = column(sub, "step")
            ok &= np.isfinite(step)
            for i in idx[~ok]:
                table.bad(lines[i])
            if not ok.any():
                continue
            sub, idx, step = [r for r, good in zip(sub, ok) if good], idx[ok] + done, step[ok]
            if not {"iter", "lr", "epoch"} & set(keys):
                val.append((keys, idx, sub, step))
                continue
            epoch = column(sub, "epoch")[0] if "epoch" in keys else np.full(len(sub), np.nan)
            _add_columns(table, keys, idx, sub, step, epoch, "")
            if "epoch" in keys:
                ends = _merge_ends(ends, epoch, step)
    for keys, idx, sub, step in val:
        if ends is not None:  # log_metric_by_epoch: `step` is the epoch just finished
            _add_columns(table, keys, idx, sub, _epoch_end_steps(ends, step), step, "val/")
        else:
            _add_columns(table, keys, idx, sub, step, np.full(len(sub), np.nan), "val/")
    if table.empty:
        where = f" ({table.bad_rows} malformed, first at line {table.first_bad_line})" if table.bad_rows else ""
        raise InputError(path, f"no line holds numeric metrics with a step{where}; expected {_EXPECTED}")
    if val and ends is not None:
        notes.append(f"{path.name}: validation 'step' is the epoch (MMEngine log_metric_by_epoch); "
                     "placed at the last training step logged in that epoch")
    return Part(_series(table), run_dir, FORMAT, notes=notes + table.notes(path))


def _add_columns(table: Table, keys, idx, sub: list[dict], x: np.ndarray, epoch: np.ndarray, prefix: str) -> None:
    logged = np.zeros(len(sub), dtype=bool)
    for k in keys:
        if k in _AXIS or (prefix and k == "lr"):  # a validation line's lr repeats the training one
            continue
        vals, has = column(sub, k)
        logged |= has
        table.add_chunk(prefix + k, idx[has], x[has], vals[has], epoch[has])
    table.good_rows += int(logged.sum())


def _merge_ends(ends, epoch: np.ndarray, step: np.ndarray):
    """(epochs, the last step logged in each), merged with what earlier row shapes gave."""
    ok = np.isfinite(epoch)
    e, st = epoch[ok], step[ok]
    if ends is not None:
        e, st = np.concatenate([ends[0], e]), np.concatenate([ends[1], st])
    if e.size == 0:
        return ends
    o = np.lexsort((st, e))
    e, st = e[o], st[o]
    last = np.r_[e[1:] != e[:-1], True]
    return e[last], st[last]


def _epoch_end_steps(ends, epochs: np.ndarray) -> np.ndarray:
    """The training step at the end of each epoch: the last step logged in it; for an epoch with
    no training line, interpolated between epochs (or steps-per-epoch times the epoch past them)."""
    eps, at = ends
    if eps.size == 0:
        return epochs.copy()
    per = float(at[-1] / eps[-1]) if eps[-1] > 0 else 1.0  # steps per epoch, about
    i = np.clip(np.searchsorted(eps, epochs), 0, eps.size - 1)
    exact = eps[i] == epochs
    inside = (epochs >= eps[0]) & (epochs <= eps[-1])
    return np.where(exact, at[i], np.where(inside, np.interp(epochs, eps, at), epochs * per))


def _read_mmcv(path: Path) -> Part:
    text, notes = read_text(path)
    table = Table()
    lines, all_rows = json_rows(text, table)
    rows, modes, eps, its = [], [], [], []
    for lineno, row in zip(lines, all_rows):
        mode = row.get("mode")
        ep, it = number(row.get("epoch")), number(row.get("iter"))
        if mode is None and ep is None:
            continue  # the run's meta line (env_info, config, seed)
        if mode not in ("train", "val") or ep is None or it is None:
            table.bad(lineno)
            continue
        rows.append(row)
        modes.append(mode == "train")
        eps.append(ep)
        its.append(it)
    is_train, ep, it = np.array(modes, dtype=bool), np.array(eps), np.array(its)
    te, ti = ep[is_train], it[is_train]
    # `iter` counts inside the epoch when it falls back as the epoch grows (by_epoch runners)
    inner = bool(((np.diff(te) > 0) & (np.diff(ti) < 0)).any())
    per = float(ti.max()) if inner and ti.size else 0.0
    if inner:
        x = np.where(is_train, (ep - 1) * per + it, ep * per)
    else:  # global iterations; a validation sits at the last training iteration before it
        last = np.maximum.accumulate(np.where(is_train, it, -np.inf)) if it.size else it
        x = np.where(is_train | ~np.isfinite(last), it, last)
    for keys, idx in group_rows(rows):
        for train in (True, False):
            sel = idx[is_train[idx] == train]
            if sel.size:
                _add_columns(table, keys, sel, [rows[i] for i in sel], x[sel], ep[sel], "" if train else "val/")
    if table.empty:
        where = f" ({table.bad_rows} malformed, first at line {table.first_bad_line})" if table.bad_rows else ""
        raise InputError(path, f"no train/val line with numeric metrics{where}; expected {_EXPECTED}")
    if inner:
        notes.append(f"{path.name}: 'iter' counts within each epoch; global step = (epoch - 1) x "
                     f"{per:g} (the most iterations logged in an epoch) + iter")
    return Part(_series(table), path.parent, FORMAT, notes=notes + table.notes(path))
