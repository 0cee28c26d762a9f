"""Lightning CSVLogger: `<save_dir>/<name>/version_N/metrics.csv`.

CSVLogger writes one sparse row per logging call: `epoch` and `step` are always filled, each
metric column only in the rows where it was logged (`train_loss_step` every log_every_n_steps,
`val_loss` / `train_loss_epoch` once an epoch). One Series per metric column, from its
non-empty cells; steps from `step`, epochs from `epoch`. hparams.yaml beside it is read by the
framework.
"""

from __future__ import annotations

from pathlib import Path

from . import Part, walk_files
from ._tabular_util import read_csv_table, read_text

FORMAT = "lightning_csv"

_EXPECTED = "a Lightning CSVLogger metrics.csv (header with 'step' and 'epoch' columns, then numeric rows)"


def _is_lightning_csv(path: Path) -> bool:
    if path.name != "metrics.csv":
        return False
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return False
    cols = [c.strip().lower() for c in header.split(",")]
    return "step" in cols


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if _is_lightning_csv(root) else []
    return [f for f in (walk_files(root) if files is None else files) if _is_lightning_csv(f)]


def read(unit: Path) -> Part:
    unit = Path(unit)
    text, notes = read_text(unit)
    table, info = read_csv_table(unit, text, expected=_EXPECTED)
    if info["epoch"] is None:
        notes.append(f"{unit.name}: no 'epoch' column; findings speak in steps only")
    return Part(table.series(), unit.parent, FORMAT, notes=notes + table.notes(unit))
