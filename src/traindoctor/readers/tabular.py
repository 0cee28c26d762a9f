"""Generic metric tables: CSV / TSV with a header, and JSONL (one JSON object per line).

Covers Keras' CSVLogger (`epoch,accuracy,loss,val_accuracy,val_loss[,learning_rate]`), W&B's
"Download CSV" export (`Step`, `<run> - loss`, `<run> - loss__MIN`, `<run> - loss__MAX`: the run
prefix is stripped and the __MIN/__MAX smoothing bounds dropped), TensorBoard's CSV export
(`Wall time,Step,Value`: the metric is named after the file), and hand-rolled loggers. Steps come
from a step/global_step/iteration column, epochs from an epoch column; with only an epoch column
the epoch is the x axis.

In a folder only files that look like metric logs are claimed (a step/epoch column, or a loss- or
accuracy-like column), so a dataset CSV beside the logs is left alone. A file given directly is
always read, and one with nothing usable is an InputError naming it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import flatten_names
from . import Part, walk_files
from ._tabular_util import (
    BAD,
    EPOCH_NAMES,
    SPLIT_KEYS,
    STEP_NAMES,
    WALL_NAMES,
    Table,
    column,
    group_rows,
    json_chunks,
    looks_like_metric_header,
    parse_cell,
    read_csv_table,
    read_text,
    sniff_delimiter,
    sniff_table,
)

FORMAT = "tabular"

_CSV_EXT = (".csv", ".tsv")
_JSONL_EXT = (".jsonl", ".ndjson")
_EXPECTED_CSV = ("a metric log with a header row and a step/epoch/iteration column or loss/accuracy "
                 "columns, e.g. 'epoch,loss,val_loss' (Keras CSVLogger)")
_EXPECTED_JSONL = ("one JSON object per line with numeric metrics, e.g. "
                   '{"step": 10, "loss": 0.5}')
_WANDB_COL = re.compile(r"^(?P<run>.+?) - (?P<metric>.+?)(?P<bound>__MIN|__MAX)?$")
_TB_EXPORT = ["wall time", "step", "value"]


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix.lower() in _CSV_EXT + _JSONL_EXT or sniff_table(root) else []
    out = []
    for f in (walk_files(root) if files is None else files):
        if f.suffix.lower() in _CSV_EXT + _JSONL_EXT:
            if _looks_like_log(f):
                out.append(f)
        elif not f.name.startswith(".") and sniff_table(f):
            out.append(f)  # a metric table under another name: Keras' training.log, DETR's log.txt
    return out


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _JSONL_EXT:
        return "jsonl"
    if suffix in _CSV_EXT:
        return "csv"
    return sniff_table(path) or "csv"


def _looks_like_log(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            first = ""
            for _ in range(20):
                first = fh.readline(65536)
                if first.strip() or not first:
                    break
    except OSError:
        return False
    if path.suffix.lower() in _JSONL_EXT:
        try:
            row = json.loads(first)
        except ValueError:
            return False
        return isinstance(row, dict) and looks_like_metric_header(list(flatten_names(row)))
    import csv

    header = next(csv.reader([first], delimiter=sniff_delimiter(first, path.suffix.lower())), [])
    if [h.strip().lower() for h in header] == _TB_EXPORT:
        return True
    return looks_like_metric_header([h.strip() for h in header])


def read(unit: Path) -> Part:
    unit = Path(unit)
    text, notes = read_text(unit)
    if _kind(unit) == "jsonl":
        table = _read_jsonl(unit, text)
        hparams: dict = {}
    else:
        table, hparams, more = _read_csv(unit, text)
        notes.extend(more)
    return Part(_layout_roles(table.series()), unit.parent, FORMAT, hparams=hparams,
                notes=notes + table.notes(unit))


def _layout_roles(series: dict) -> dict:
    """Roles a known column layout fixes. ultralytics results.csv (ultralytics/engine/trainer.py
    save_metrics; YOLOv5 train.py): `train/*_loss`, `val/*_loss`, and `metrics/precision(B)`,
    `metrics/mAP50-95(B)`... which the validator computed on the validation set, higher better."""
    names = list(series)
    if not (any(n.startswith("metrics/") for n in names) and any(n.startswith("val/") for n in names)
            and any(n.startswith("train/") for n in names)):
        return series
    from dataclasses import replace

    out = {}
    for n, s in series.items():
        if n.startswith("metrics/") and s.split in (None, "train"):
            kind = s.kind if s.kind in ("accuracy", "error", "loss") else "accuracy"
            s = replace(s, role=f"val_{kind}")
        out[n] = s
    return out


# -- CSV ----------------------------------------------------------------------------------------
def _read_csv(path: Path, text: str) -> tuple[Table, dict, list[str]]:
    notes: list[str] = []
    hparams: dict = {}
    runs: set[str] = set()

    def rename(header: list[str]) -> list[str | None]:
        low = [h.lower() for h in header]
        if low == _TB_EXPORT:  # TensorBoard "Download CSV": run-<run>-tag-<tag>.csv
            stem = path.stem
            tag = stem.split("-tag-", 1)[1] if "-tag-" in stem else stem
            return [None, "step", tag]
        names: list[str | None] = []
        for h in header:
            m = _WANDB_COL.match(h)
            if m and h.lower() not in STEP_NAMES + EPOCH_NAMES + WALL_NAMES:
                if m.group("bound"):
                    names.append(None)  # W&B's min/max band around a smoothed/sampled point
                    continue
                runs.add(m.group("run"))
                names.append(m.group("metric"))
            else:
                names.append(h)
        return names

    if not looks_like_metric_header(_header(text, path)) and _header(text, path) and \
            [h.lower() for h in _header(text, path)] != _TB_EXPORT:
        raise InputError(path, f"has no step/epoch/iteration column and no loss/accuracy-like column "
                               f"(header: {', '.join(_header(text, path)[:8])}); expected {_EXPECTED_CSV}")
    table, info = read_csv_table(path, text, rename=rename, expected=_EXPECTED_CSV)
    if len(runs) > 1:
        # Several runs in one export would merge into one curve per metric: refuse to guess.
        raise InputError(path, f"is a W&B export holding {len(runs)} runs ({', '.join(sorted(runs)[:4])}); "
                               "export one run per file, or pass one run's columns")
    if runs:
        hparams["wandb.run_name"] = next(iter(runs))
    if info["ignored_text_columns"]:
        notes.append(f"{path.name}: ignored non-numeric column(s) {', '.join(info['ignored_text_columns'])}")
    return table, hparams, notes


def _header(text: str, path: Path) -> list[str]:
    import csv

    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    row = next(csv.reader([first], delimiter=sniff_delimiter(first, path.suffix.lower())), [])
    return [h.strip() for h in row]


# -- JSONL --------------------------------------------------------------------------------------
def _pick(keys, names: tuple[str, ...]) -> str | None:
    """The first key (in the row's order) whose lower-cased name is one of `names`."""
    for k in keys:
        if k.lower() in names:
            return k
    return None


def _read_jsonl(path: Path, text: str) -> Table:
    """Rows grouped by their keys and read a column at a time, a chunk of lines at a time (see
    group_rows). A row's x is its step, else its epoch, else its rank among the rows that logged
    a metric."""
    table = Table()
    # some row nests an object ({"opt": {"lr": ..}}) when there are more braces than rows
    nested = text.count("{") != text.count("\n{") + text.startswith("{")
    ranked = 0  # rows that logged a metric before this chunk
    for done, lines, rows in json_chunks(text, table):
        if nested:
            rows = [flatten_names(r) if any(type(v) is dict for v in r.values()) else r for r in rows]
        logged_all = np.zeros(len(rows), dtype=bool)
        plans = []
        for keys, idx in group_rows(rows):
            sub = [rows[i] for i in idx]
            step_key, epoch_key, wall_key, split_key = (_pick(keys, n) for n in (STEP_NAMES, EPOCH_NAMES,
                                                                                  WALL_NAMES, SPLIT_KEYS))
            step, bad = _axis(sub, step_key)
            epoch, bad_e = _axis(sub, epoch_key)
            wall, _ = _axis(sub, wall_key)  # an unreadable wall time is only a missing one
            bad |= bad_e
            split = [r.get(split_key) for r in sub] if split_key else None
            axes = {step_key, epoch_key, wall_key, split_key}
            cols = {}
            for k in keys:
                if k in axes:
                    continue
                vals, ok = column(sub, k)
                if ok.any():
                    cols[k] = (vals, ok & ~bad)
            logged = np.zeros(len(sub), dtype=bool)
            for _, ok in cols.values():
                logged |= ok
            logged_all[idx] = logged
            for i in np.flatnonzero(bad):
                table.bad(lines[idx[i]])
            plans.append((idx, step, epoch, wall, split, cols))
        rank = ranked + np.cumsum(logged_all) - 1.0
        ranked += int(logged_all.sum())
        for idx, step, epoch, wall, split, cols in plans:
            x = np.where(~np.isnan(step), step, np.where(~np.isnan(epoch), epoch, rank[idx]))
            prefixes = [""] * len(idx) if split is None else [f"{v}/" if isinstance(v, str) and v else "" for v in split]
            for prefix in dict.fromkeys(prefixes):
                rows_p = np.array([p == prefix for p in prefixes]) if split is not None else np.ones(len(idx), dtype=bool)
                for k, (vals, ok) in cols.items():
                    m = ok & rows_p
                    table.add_chunk(prefix + k, idx[m] + done, x[m], vals[m], epoch[m], wall[m])
    table.good_rows = ranked
    if table.empty:
        where = f" ({table.bad_rows} malformed, first at line {table.first_bad_line})" if table.bad_rows else ""
        raise InputError(path, f"no line holds a JSON object with numeric metrics{where}; expected {_EXPECTED_JSONL}")
    return table


def _axis(rows: list[dict], key: str | None) -> tuple[np.ndarray, np.ndarray]:
    """An axis column (step, epoch, wall time): its values (NaN: missing) and the rows where it
    holds something that is not a number (such a row cannot be placed)."""
    n = len(rows)
    if key is None:
        return np.full(n, np.nan), np.zeros(n, dtype=bool)
    vals, ok = column(rows, key)
    bad = np.zeros(n, dtype=bool)
    if not ok.all():
        for i in np.flatnonzero(~ok):
            bad[i] = parse_cell(rows[i].get(key)) is not None  # present, but not a number
    vals = np.where(ok, vals, np.nan)
    return vals, bad


def _numeric_string(v) -> bool:
    return isinstance(v, str) and parse_cell(v) not in (None, BAD)
