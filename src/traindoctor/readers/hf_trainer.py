"""Hugging Face Trainer: `output_dir/trainer_state.json` (and its `checkpoint-N/` snapshots).

`log_history` mixes three kinds of rows (transformers/trainer.py, Trainer._maybe_log_save_evaluate
and Trainer.train):
  - training rows: loss, grad_norm, learning_rate, epoch (a float), step
  - evaluation rows: eval_loss, eval_<metric>, eval_runtime, ..., epoch, step
  - one final summary row: train_runtime, train_loss, total_flos, train_samples_per_second...
The summary's `train_loss` is the AVERAGE over the whole run, not a point of the loss curve, so
it goes to hparams ("trainer_state.train_loss") with best_metric, best_model_checkpoint, etc.

Every checkpoint-N/ holds an older copy of the same state. The output_dir's file is preferred;
the copies are claimed (so nothing else reads them) but only the newest (highest N) is read, and
only when the output_dir has none (a run that crashed before the end). training_args.bin is a
pickle and is never opened.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Checkpoint, Series
from . import Part, walk_files
from ._tabular_util import Table, column, group_rows, loads

FORMAT = "hf_trainer"

_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
_STATE_KEYS = ("best_metric", "best_model_checkpoint", "best_global_step", "global_step", "epoch",
               "max_steps", "num_train_epochs", "train_batch_size", "logging_steps", "eval_steps",
               "save_steps", "total_flos")
# keys only the final summary row has (Trainer.train's `metrics`)
_SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
                 "total_flos"}
_AXIS = {"epoch", "step"}
_RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json", "test_results.json",
                 "predict_results.json")
_EXPECTED = "HF Trainer's trainer_state.json (a JSON object with a 'log_history' list)"


def _ckpt_number(path: Path) -> int | None:
    m = _CKPT_RE.match(path.parent.name)
    return int(m.group(1)) if m else None


def _output_dir(state_file: Path) -> Path:
    return state_file.parent.parent if _ckpt_number(state_file) is not None else state_file.parent


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if root.name == "trainer_state.json" else []
    by_run: dict[Path, list[Path]] = {}
    for f in (walk_files(root) if files is None else files):
        if f.name == "trainer_state.json":
            by_run.setdefault(_output_dir(f), []).append(f)
    units: list[Path] = []
    for files in by_run.values():
        ordered = _newest_first(files)
        units.append(ordered[0])
        # claim the older snapshots by their folder: read() skips folders, and nothing inside
        # a checkpoint (optimizer.pt, rng_state.pth...) is a log for a later reader either
        units.extend(f.parent for f in ordered[1:] if _ckpt_number(f) is not None)
    return units


def _newest_first(files: list[Path]) -> list[Path]:
    # the output_dir's own file (no checkpoint number) first, then checkpoints by step, newest first
    return sorted(files, key=lambda f: (_ckpt_number(f) is not None, -(_ckpt_number(f) or 0)))


def read(unit: Path) -> Part | None:
    unit = Path(unit)
    if unit.is_dir():
        return None  # an older checkpoint snapshot: claimed, deliberately not read
    notes: list[str] = []
    out_dir = _output_dir(unit)
    try:
        state = _load_state(unit)
    except InputError as exc:
        # A damaged final state: fall back to the newest snapshot that still parses.
        fallback = None
        snapshots = _newest_first([c / "trainer_state.json" for c in out_dir.glob("checkpoint-*")
                                   if (c / "trainer_state.json").is_file() and c / "trainer_state.json" != unit])
        for snap in snapshots:
            try:
                state = _load_state(snap)
            except InputError:
                continue
            fallback = snap
            break
        if fallback is None:
            raise exc
        notes.append(f"{exc}; read {fallback.parent.name}/trainer_state.json instead "
                     "(history after that checkpoint is missing)")
        unit = fallback
    n = _ckpt_number(unit)
    if n is not None:
        notes.append(f"no trainer_state.json in the output folder (run stopped before the end?); "
                     f"read the newest checkpoint's copy, {unit.parent.name}/trainer_state.json "
                     f"(global_step {state.get('global_step', n)})")
    series, hparams, row_notes = _from_state(unit, state)
    hparams.update(_results(out_dir))
    return Part(series, out_dir, FORMAT, hparams=hparams, notes=notes + row_notes,
                checkpoints=_best_checkpoint(state))


def _best_checkpoint(state: dict) -> list[Checkpoint]:
    """The checkpoint the Trainer itself kept as best (TrainingArguments.metric_for_best_model),
    as the file names it: tagged "best", its step from its name (or best_global_step)."""
    path = state.get("best_model_checkpoint")
    if not isinstance(path, str) or not path.strip():
        return []
    name = re.split(r"[\\/]", path.rstrip("/\\"))[-1]
    m = _CKPT_RE.match(name)
    step = int(m.group(1)) if m and len(m.group(1)) <= 18 else None  # a damaged name is no step
    if step is None and isinstance(state.get("best_global_step"), int):
        step = state["best_global_step"]
    return [Checkpoint(path, None, step, "best")]


def _load_state(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        state = loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"is not valid JSON ({exc.msg} at line {exc.lineno}; truncated by a crash?); "
                               f"expected {_EXPECTED}") from None
    except ValueError:  # an integer past Python's 4300-digit limit: damage, not a step number
        try:
            state = json.loads(text, parse_int=_bounded_int)
        except (ValueError, RecursionError):
            raise InputError(path, f"is not valid JSON; expected {_EXPECTED}") from None
    except RecursionError:
        raise InputError(path, f"is not valid JSON (nested too deep); expected {_EXPECTED}") from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        found = type(state).__name__ if not isinstance(state, dict) else "no 'log_history' list"
        raise InputError(path, f"found {found}; expected {_EXPECTED}")
    return state


def _bounded_int(text: str) -> float:
    """A JSON integer; one too long for int() is not a number any log meant (inf, then skipped)."""
    return int(text) if len(text) <= 300 else float("inf")


def _is_summary(row: dict) -> bool:
    return "train_runtime" in row or ("train_loss" in row and "loss" not in row and "total_flos" in row)


def _from_state(path: Path, state: dict) -> tuple[dict[str, Series], dict, list[str]]:
    """One Series per logged key. Rows are grouped by their keys (a few shapes: training rows,
    evaluation rows, the summary) and each group is read a column at a time; the points of a key
    keep the order of the rows they came from."""
    hist = state["log_history"]
    hparams: dict = {f"trainer_state.{k}": state[k] for k in _STATE_KEYS if k in state}
    rows = [r for r in hist if type(r) is dict]
    skipped = len(hist) - len(rows)
    table = Table()
    for keys, idx in group_rows(rows):
        sub = [rows[i] for i in idx]
        if _is_summary(sub[0]):
            for row in sub:
                hparams.update({f"trainer_state.{k}": v for k, v in row.items() if k not in _AXIS})
            continue
        steps, ok = column(sub, "step")
        ok &= np.isfinite(steps)
        skipped += int((~ok).sum())
        epochs = np.full(len(sub), np.nan)
        if "epoch" in keys:
            ep, has_ep = column(sub, "epoch")
            epochs = np.where(has_ep, ep, np.nan)
        for k in keys:
            if k in _AXIS:
                continue
            vals, has = column(sub, k)
            has &= ok
            table.add_chunk(k, idx[has], steps[has], vals[has], epochs[has])
    notes = [f"{path.name}: skipped {skipped} log_history entries without a step"] if skipped else []
    return table.series(), hparams, notes


def _results(out_dir: Path) -> dict:
    """all_results.json & co: final one-number summaries, kept as hparams (never as curves)."""
    out: dict = {}
    for name in _RESULT_FILES:
        f = out_dir / name
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for k, v in data.items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    out.setdefault(f"results.{k}", v)
    return out
