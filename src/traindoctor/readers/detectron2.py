"""detectron2: `<OUTPUT_DIR>/metrics.json`, one JSON object per line keyed by `iteration`.

detectron2/utils/events.py, JSONWriter.write: every `period` iterations it writes, for each
iteration with scalars not yet written, `json.dumps({..., "iteration": itr}, sort_keys=True)`.
Training rows hold what the trainer put in the EventStorage: `total_loss` and the loss terms
(`loss_cls`, `loss_box_reg`, `loss_rpn_cls`, ...; medians over the last 20 iterations),
`lr`, `time` (seconds per iteration), `data_time`, `eta_seconds`, and model statistics such as
`fast_rcnn/cls_accuracy`. An evaluation (EvalHook, `flatten_results_dict`) adds rows, or fields
of a training row, named `<task>/<metric>`: `bbox/AP`, `bbox/AP50`, `segm/AP`, `sem_seg/mIoU`,
`panoptic_seg/PQ`, `keypoints/AP` (`<dataset>/bbox/AP` with several test sets). Every one of
these is a validation score where higher is better. A validation loss from a custom hook
(`validation_loss`, `val_loss`) keeps the role its name gives it.

A resumed run appends to the same file and repeats some iterations: the later row wins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Series
from . import Part, walk_files
from ._tabular_util import Table, column, group_rows, head_lines, json_chunks, number, read_text

FORMAT = "detectron2"

_EXPECTED = 'detectron2 metrics.json (one JSON object per line with an "iteration" key)'
# detectron2's evaluators (detectron2/evaluation/*.py): the first part of a result's name
_TASKS = {"bbox", "segm", "keypoints", "sem_seg", "panoptic_seg", "box_proposals"}


def _is_d2(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    lines = head_lines(path, 1)
    if not lines or not lines[0].lstrip().startswith("{"):
        return False
    import json

    try:
        row = json.loads(lines[0])
    except ValueError:
        return False
    return isinstance(row, dict) and number(row.get("iteration")) is not None and "mode" not in row


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if _is_d2(root) else []
    return [f for f in (walk_files(root) if files is None else files) if _is_d2(f)]


def role_of(name: str) -> str | None:
    """The role detectron2's naming fixes; None: the name's own role (history.infer_role)."""
    parts = name.split("/")
    if any(p in _TASKS for p in parts[:-1]):
        return "val_accuracy"  # AP, AR, mIoU, fwIoU, mACC, pACC, PQ, SQ, RQ: higher is better
    if parts[-1] in ("data_time", "eta_seconds") or parts[-1].endswith("_data_time"):
        # the data-loading share of `time`, and a countdown: neither is the seconds per step
        return "other"
    return None


def read(unit: Path) -> Part:
    unit = Path(unit)
    text, notes = read_text(unit)
    table = Table()
    for done, lines, rows in json_chunks(text, table):
        for keys, idx in group_rows(rows):  # a column at a time per row shape
            sub = [rows[i] for i in idx]
            it, ok = column(sub, "iteration")
            ok &= np.isfinite(it)
            for i in idx[~ok]:
                table.bad(lines[i])  # no iteration: cannot be placed
            logged = np.zeros(len(sub), dtype=bool)
            for k in keys:
                if k == "iteration":
                    continue
                vals, has = column(sub, k)
                has &= ok
                logged |= has
                table.add_chunk(k, idx[has] + done, it[has], vals[has])
            table.good_rows += int(logged.sum())
    if table.empty:
        where = f" ({table.bad_rows} malformed, first at line {table.first_bad_line})" if table.bad_rows else ""
        raise InputError(unit, f"no line holds an iteration with numeric metrics{where}; expected {_EXPECTED}")
    series = {}
    for name, s in table.series().items():
        role = role_of(name)
        series[name] = Series(name, s.steps, s.values, role=role or s.role).normalized()
    return Part(series, unit.parent, FORMAT, notes=notes + table.notes(unit))
