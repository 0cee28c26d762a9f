"""Weights & Biases run folders: `wandb/offline-run-<date>-<id>/` and `wandb/run-<date>-<id>/`.

The history lives in `run-<id>.wandb`, read here natively (no wandb install, no network):
  - the container is the LevelDB log format (leveldb/doc/log_format.md) with a 7-byte file
    header ":W&B", 0xBEE1 (little-endian), version 0; 32 KiB blocks; each record a 7-byte header
    (crc32 of type byte + payload, length u16 LE, type FULL=1/FIRST=2/MIDDLE=3/LAST=4);
  - each payload is a protobuf `Record` (wandb/proto/wandb_internal.proto): history = 2,
    summary = 3, config = 5, run = 17, exit = 18. A HistoryRecord holds HistoryItems (key = 1,
    nested_key = 2, boolean = 4, integer = 5 (sint64), number = 6 (double), value_json = 16)
    and a HistoryStep (num = 1).
A crashed run's file ends mid-record; everything before the damage is used and a note says so.
`files/wandb-summary.json` and `files/config.yaml` (written by online runs) go to hparams: a
summary is one final value per metric, not a history.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Series, flatten_names
from . import Part

FORMAT = "wandb"

_MAGIC = b":W&B" + struct.pack("<H", 0xBEE1) + b"\x00"
_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
# Record oneof field numbers (wandb_internal.proto)
_HISTORY, _SUMMARY, _CONFIG, _RUN, _EXIT = 2, 3, 5, 17, 18
# history keys that are the axis, not metrics (Lightning's WandbLogger logs trainer/global_step)
_STEP_KEYS = ("trainer/global_step", "global_step")
_EPOCH_KEYS = ("epoch", "trainer/epoch")


def _is_run_dir(d: Path) -> bool:
    if not d.name.startswith(("offline-run-", "run-")) or not d.is_dir():
        return False
    return any(d.glob("*.wandb")) or (d / "files" / "wandb-summary.json").is_file()


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        if root.suffix == ".wandb":
            return [root.parent]
        if root.name == "wandb-summary.json" and _is_run_dir(root.parent.parent):
            return [root.parent.parent]
        return []
    if _is_run_dir(root) or any(root.glob("run-*.wandb")):
        return [root]
    units = []
    for dirpath, dirnames, _ in os.walk(root):
        d = Path(dirpath)
        # wandb/latest-run is a symlink to the newest run folder: reading it would double a run
        dirnames[:] = sorted(x for x in dirnames if not os.path.islink(d / x)
                             and x not in {".git", ".venv", "venv", "node_modules", "__pycache__"})
        if _is_run_dir(d):
            units.append(d)
            dirnames[:] = []
    return units


def read(unit: Path) -> Part:
    run_dir = Path(unit)
    notes: list[str] = []
    hparams: dict = {}
    series: dict[str, Series] = {}
    wandb_files = sorted(run_dir.glob("*.wandb"))
    for f in wandb_files:
        s, h, n = _read_wandb_file(f)
        series.update(s)
        hparams.update(h)
        notes.extend(n)
    hparams.update(_read_files_dir(run_dir / "files", notes))
    if not wandb_files:
        notes.append(f"no .wandb history file in {run_dir.name}: only the final summary was read "
                     "(one value per metric, kept as hparams 'wandb.summary.*', not as curves)")
    if not series and not hparams:
        raise InputError(run_dir, "no readable W&B data; expected run-<id>.wandb or files/wandb-summary.json")
    return Part(series, run_dir, FORMAT, hparams=hparams, notes=notes)


# -- LevelDB log container ----------------------------------------------------------------
def _records(data: bytes) -> tuple[list[bytes], str | None]:
    """Payloads of the log, and a note when it stops early (truncated or corrupt)."""
    out: list[bytes] = []
    pos = _HEADER
    pending: bytearray | None = None
    while pos < len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer: zero padding
            pos += left
            continue
        if pos + _HEADER > len(data):
            return out, f"ends inside a record header at byte {pos} (truncated: crashed run?)"
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if crc == 0 and length == 0 and kind == 0:  # preallocated zeros at the end
            break
        payload = data[pos + _HEADER:pos + _HEADER + length]
        if len(payload) < length:
            return out, f"ends inside a record at byte {pos} (truncated: crashed run?)"
        if zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF != crc:
            return out, f"checksum mismatch at byte {pos} (corrupt from there on)"
        pos += _HEADER + length
        if kind == _FULL:
            out.append(bytes(payload))
        elif kind == _FIRST:
            pending = bytearray(payload)
        elif kind in (_MIDDLE, _LAST) and pending is not None:
            pending.extend(payload)
            if kind == _LAST:
                out.append(bytes(pending))
                pending = None
        else:
            return out, f"unexpected record type {kind} at byte {pos - _HEADER - length}"
    return out, None


# -- protobuf wire format (only what Record needs) -------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """(field number, value): ints for varint, bytes for length-delimited/fixed."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated field")
        yield num, wire, val


def _item(buf: bytes) -> tuple[str, object]:
    """HistoryItem / SummaryItem / ConfigItem -> (key, python value)."""
    key, nested, value = "", [], None
    for num, wire, val in _fields(buf):
        if num == 1 and wire == 2:
            key = val.decode("utf-8", "replace")
        elif num == 2 and wire == 2:
            nested.append(val.decode("utf-8", "replace"))
        elif num == 4 and wire == 0:
            value = bool(val)
        elif num == 5 and wire == 0:
            value = (val >> 1) ^ -(val & 1)  # sint64 zigzag
        elif num == 6 and wire == 1:
            value = struct.unpack("<d", val)[0]
        elif num == 7 and wire == 2:
            value = val.decode("utf-8", "replace")
        elif num in (8, 16) and wire == 2:
            try:
                value = json.loads(val.decode("utf-8", "replace"))
            except ValueError:
                value = None
    return ("/".join(nested) if nested else key), value


def _flatten(key: str, value, out: dict) -> None:
    """One logged item into flat names; histograms, images and tables (a "_type") are not curves."""
    if isinstance(value, dict):
        if "_type" not in value:
            out.update(flatten_names(value, "/", f"{key}/", skip=lambda d: "_type" in d))
    else:
        out[key] = value


def _scalar(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _read_wandb_file(path: Path) -> tuple[dict[str, Series], dict, list[str]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not data.startswith(_MAGIC[:4]):
        raise InputError(path, f"does not start with the W&B header ':W&B' (found {data[:4]!r}); "
                               "expected a W&B run-<id>.wandb file")
    payloads, damage = _records(data)
    notes = [f"{path.name}: {damage}; read the {len(payloads)} records before it"] if damage else []
    pts: dict[str, tuple[list, list, list, list]] = {}
    hparams: dict = {}
    exit_code = None
    bad = 0
    for payload in payloads:
        try:
            for num, wire, val in _fields(payload):
                if wire != 2:
                    continue
                if num == _HISTORY:
                    _history_row(val, pts)
                elif num == _SUMMARY:
                    _items_into(val, hparams, "wandb.summary.")
                elif num == _CONFIG:
                    _items_into(val, hparams, "")
                elif num == _RUN:
                    _run_record(val, hparams)
                elif num == _EXIT:
                    exit_code = 0
                    for n2, w2, v2 in _fields(val):
                        if n2 == 1 and w2 == 0:
                            exit_code = v2 - (1 << 64) if v2 >= 1 << 63 else v2
        except (ValueError, struct.error, UnicodeError):
            bad += 1
    if bad:
        notes.append(f"{path.name}: skipped {bad} undecodable records")
    if exit_code is None:
        notes.append(f"{path.name}: no exit record (the run crashed, was killed, or is still running)")
    elif exit_code != 0:
        notes.append(f"{path.name}: the run exited with code {exit_code}")
    hparams.pop("_wandb", None)
    series = {k: Series(k, np.array(s), np.array(v), np.array(e), np.array(w))
              for k, (s, v, e, w) in pts.items()}
    return series, hparams, notes


def _history_row(buf: bytes, pts: dict) -> None:
    row: dict = {}
    step = None
    for num, wire, val in _fields(buf):
        if num == 1 and wire == 2:
            key, value = _item(val)
            _flatten(key, value, row)
        elif num == 2 and wire == 2:
            step = 0  # HistoryStep; proto3 omits num when it is 0
            for n2, w2, v2 in _fields(val):
                if n2 == 1 and w2 == 0:
                    step = v2
    if step is None:
        step = _scalar(row.get("_step")) or 0
    for k in _STEP_KEYS:
        if _scalar(row.get(k)) is not None:
            step = row[k]
            break
    epoch = next((_scalar(row[k]) for k in _EPOCH_KEYS if _scalar(row.get(k)) is not None), math.nan)
    wall = _scalar(row.get("_timestamp"))
    for k, v in row.items():
        val = _scalar(v)
        if val is None or k.startswith("_") or k in _STEP_KEYS or k in _EPOCH_KEYS:
            continue
        s, vals, eps, walls = pts.setdefault(k, ([], [], [], []))
        s.append(float(step))
        vals.append(val)
        eps.append(epoch)
        walls.append(math.nan if wall is None else wall)


def _items_into(buf: bytes, out: dict, prefix: str) -> None:
    for num, wire, val in _fields(buf):
        if num == 1 and wire == 2:  # update
            key, value = _item(val)
            if prefix == "" and isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
                value = value["value"]  # config.yaml style {value:, desc:}
            flat: dict = {}
            _flatten(key, value, flat)
            for k, v in flat.items():
                if not k.startswith("_") and (v is None or isinstance(v, (int, float, str, bool))):
                    out[prefix + k] = v


def _run_record(buf: bytes, out: dict) -> None:
    for num, wire, val in _fields(buf):
        if wire != 2:
            continue
        if num == 1:
            out["wandb.run_id"] = val.decode("utf-8", "replace")
        elif num == 3:
            out["wandb.project"] = val.decode("utf-8", "replace")
        elif num == 8:
            out["wandb.run_name"] = val.decode("utf-8", "replace")
        elif num == 4:
            _items_into(val, out, "")


def _read_files_dir(files: Path, notes: list[str]) -> dict:
    out: dict = {}
    summary = files / "wandb-summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text(encoding="utf-8", errors="replace"))
        except ValueError as exc:
            notes.append(f"files/wandb-summary.json is not valid JSON ({exc}); ignored")
            data = {}
        flat: dict = {}
        for k, v in (data.items() if isinstance(data, dict) else ()):
            _flatten(k, v, flat)
        out.update({f"wandb.summary.{k}": v for k, v in flat.items()
                    if not k.startswith("_") and isinstance(v, (int, float, str, bool))})
    config = files / "config.yaml"
    if config.is_file():
        try:
            import yaml

            cfg = yaml.safe_load(config.read_text(encoding="utf-8", errors="replace"))
        except Exception:  # pyyaml missing or a damaged file: config only feeds `compare`
            cfg = None
        for k, v in (cfg.items() if isinstance(cfg, dict) else ()):
            if k.startswith("_") or k == "wandb_version":
                continue
            v = v.get("value") if isinstance(v, dict) and "value" in v else v
            if v is None or isinstance(v, (int, float, str, bool)):
                out.setdefault(k, v)
    return out
