"""Shared helpers for the row-oriented readers (Lightning metrics.csv, generic CSV/TSV/JSONL).

A table is a header plus rows; each numeric column becomes a Series from its non-empty cells,
its x axis the step column (or the epoch column, or the row number). Rows that cannot be parsed
(a truncated last line from a crashed run, stray text) are skipped and counted, never guessed at.
"nan" / "inf" are real values — a diverged run writes them and the nan_loss detector needs them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Series, infer_role

# Column names (compared lower-cased, stripped) that are the x axis, not metrics.
STEP_NAMES = ("step", "global_step", "steps", "_step", "iteration", "iter", "it", "trainer/global_step",
              "total_steps", "batch", "update", "updates")
EPOCH_NAMES = ("epoch", "epochs", "_epoch", "trainer/epoch")
WALL_NAMES = ("_timestamp", "timestamp", "wall_time", "walltime", "wall time", "time_stamp")
# a row's split, as mmdetection / many scripts log it: {"mode": "val", "loss": ...}
SPLIT_KEYS = ("mode", "split", "phase", "stage")


class _Bad:
    """Marker for a cell that is neither empty nor a number."""


BAD = _Bad()
# Keras' CSVLogger writes "NA" for a metric missing that epoch; pandas writes "" or "NaN".
_MISSING = {"na", "n/a", "null", "none", "-"}
_TENSOR_RE = re.compile(r"^tensor\(\s*([^,)]+)")


def parse_cell(cell) -> float | None | _Bad:
    """'' -> None (not logged); '0.5', 'nan', '-inf', 'tensor(0.5)' -> float; anything else BAD."""
    if cell is None:
        return None
    if isinstance(cell, bool):
        return BAD
    if isinstance(cell, (int, float)):
        return float(cell)
    text = str(cell).strip().strip('"')
    if not text or text.lower() in _MISSING:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    m = _TENSOR_RE.match(text)  # str(torch.tensor(0.5)) written by a careless logger
    if m:
        try:
            return float(m.group(1))
        except ValueError:
            return BAD
    return BAD


def read_text(path: Path) -> tuple[str, list[str]]:
    """File text, tolerant of the damage a crash leaves (NUL padding, a cut multi-byte char)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc}); check the path and permissions") from None
    notes = []
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"")
        notes.append(f"{Path(path).name}: NUL bytes removed (file not fully written, crashed run?)")
    text = raw.decode("utf-8-sig", errors="replace")
    return text, notes


@dataclass
class Table:
    """Points gathered per column while reading rows, turned into Series at the end.

    Either a point at a time (`add`, for the careful row-by-row paths) or a column of a group of
    rows at a time (`add_chunk`, with each point's row number so that the points of a name keep
    the order of the rows they came from).
    """

    steps: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    epochs: dict[str, list[float]] = field(default_factory=dict)
    walls: dict[str, list[float]] = field(default_factory=dict)
    # name -> [(row numbers, steps, values, epochs or None, walls or None), ...]
    chunks: dict[str, list[tuple]] = field(default_factory=dict)
    bad_rows: int = 0
    first_bad_line: int | None = None
    good_rows: int = 0
    restarts: list = field(default_factory=list)  # lines where the epoch count starts over

    def add(self, name: str, step: float, value: float, epoch: float | None, wall: float | None) -> None:
        self.steps.setdefault(name, []).append(step)
        self.values.setdefault(name, []).append(value)
        self.epochs.setdefault(name, []).append(math.nan if epoch is None else epoch)
        self.walls.setdefault(name, []).append(math.nan if wall is None else wall)

    def add_chunk(self, name: str, order, steps, values, epochs=None, walls=None) -> None:
        if len(values):
            self.chunks.setdefault(name, []).append((order, steps, values, epochs, walls))

    def bad(self, line: int) -> None:
        self.bad_rows += 1
        if self.first_bad_line is None or line < self.first_bad_line:
            self.first_bad_line = line

    def series(self) -> dict[str, Series]:
        out = {}
        first = {name: min(int(np.min(c[0])) for c in parts) for name, parts in self.chunks.items()}
        for name in sorted(self.chunks, key=first.__getitem__):  # in the order names first appear
            parts = self.chunks[name]
            if len(parts) == 1:
                order, st, va, ep, wa = parts[0]
                o = None if np.all(np.diff(order) > 0) else np.argsort(order, kind="stable")
            else:
                order = np.concatenate([c[0] for c in parts])
                st, va = np.concatenate([c[1] for c in parts]), np.concatenate([c[2] for c in parts])
                ep, wa = (None if all(c[j] is None for c in parts) else np.concatenate(
                    [np.full(len(c[2]), np.nan) if c[j] is None else c[j] for c in parts]) for j in (3, 4))
                o = np.argsort(order, kind="stable")
            if o is not None:
                st, va = st[o], va[o]
                ep, wa = (None if a is None else a[o] for a in (ep, wa))
            out[name] = Series(name, st, va, ep, wa)
        for name, vals in self.values.items():
            out[name] = Series(name, np.array(self.steps[name]), np.array(vals),
                               np.array(self.epochs[name]), np.array(self.walls[name]))
        return out

    @property
    def empty(self) -> bool:
        return not (self.values or self.chunks)

    def notes(self, path: Path) -> list[str]:
        out = []
        if self.restarts:
            out.append(f"{Path(path).name}: the epoch count starts over at line(s) "
                       f"{', '.join(map(str, self.restarts))} (several fits appended to one log); "
                       "read as one run whose epochs continue")
        if not self.bad_rows:
            return out
        return out + [f"{Path(path).name}: skipped {self.bad_rows} malformed row{'s' if self.bad_rows != 1 else ''} "
                f"(first at line {self.first_bad_line})"]


try:  # an optional accelerator: orjson parses 3-5x faster; without it, the standard library
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - depends on the environment
    _orjson_loads = None


def loads(text: str):
    """json.loads, through orjson when it is installed. orjson refuses what Python's json accepts
    (NaN, Infinity: what json.dumps writes for a diverged loss; integers past 64 bits), and then
    the standard parser decides, so both give the same answer."""
    if _orjson_loads is not None:
        try:
            return _orjson_loads(text)
        except ValueError:
            pass
    return json.loads(text)


def json_chunks(text: str, table: Table, chunk: int = 4096):
    """(rows before, line numbers, objects) for each chunk of a JSON-lines text; damaged lines
    (and lines that are not objects) are counted in `table` and skipped. A line over 1 MiB is not
    parsed (a 100,000-digit number, pasted data).

    A chunk of lines is parsed by one call to the C parser (as a JSON array), several times
    faster than a call per line; a chunk that fails is parsed line by line. Readers build their
    columns a chunk at a time, so only one chunk of dicts is alive at once.
    """
    lines = text.splitlines()
    done = 0
    for start in range(0, len(lines), chunk):
        keep = [i for i in range(start, min(start + chunk, len(lines))) if lines[i].strip()]
        rows = None
        if all(len(lines[i]) <= MAX_LINE_CHARS for i in keep):
            try:
                rows = loads("[" + ",".join([lines[i] for i in keep]) + "]")
            except (ValueError, RecursionError):
                rows = None
        if rows is None or len(rows) != len(keep):
            rows = [_json_line(lines[i]) for i in keep]
        out_lines, out_rows = [], []
        for i, obj in zip(keep, rows):
            if type(obj) is dict:
                out_lines.append(i + 1)
                out_rows.append(obj)
            else:
                table.bad(i + 1)
        if out_rows:
            yield done, out_lines, out_rows
            done += len(out_rows)


def json_rows(text: str, table: Table) -> tuple[list[int], list[dict]]:
    """All line numbers and objects of a JSON-lines text at once (see json_chunks)."""
    lines: list[int] = []
    rows: list[dict] = []
    for _, ln, rs in json_chunks(text, table):
        lines.extend(ln)
        rows.extend(rs)
    return lines, rows


def _json_line(line: str):
    if len(line) > MAX_LINE_CHARS:
        return None
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # ValueError: bad JSON, or an int over 4300 digits
        return None


def group_rows(rows: list[dict]) -> list[tuple[tuple, np.ndarray]]:
    """Row numbers grouped by the rows' keys, groups in order of first appearance. A log has few
    row shapes (training rows, evaluation rows, a summary), so each is read a column at a time."""
    shapes: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        shapes.setdefault(tuple(row), []).append(i)
    return [(keys, np.asarray(idx)) for keys, idx in shapes.items()]


def column(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """rows[i][key] as floats and where it was logged: a JSON number (not a bool), NaN included
    (a diverged loss), or a string holding one ("0.5"); missing keys, text, lists: not logged."""
    try:  # rows of one shape all hold the key
        vals = list(map(itemgetter(key), rows))
    except KeyError:
        vals = [r.get(key) for r in rows]
    if set(map(type, vals)) <= {int, float}:
        try:
            arr = np.array(vals, dtype=np.float64)
            return arr, np.ones(arr.size, dtype=bool)
        except OverflowError:  # an integer past the float range: damage, read value by value
            pass
    out = np.full(len(vals), np.nan)
    ok = np.zeros(len(vals), dtype=bool)
    for i, v in enumerate(vals):
        t = type(v)
        if t is float or t is int:
            try:
                out[i], ok[i] = float(v), True
            except OverflowError:
                continue
        elif t is str:
            c = parse_cell(v)
            if c is not None and c is not BAD:
                out[i], ok[i] = c, True
    return out, ok


def number(v) -> float | None:
    """A JSON value as a float: numbers (not booleans) only."""
    if type(v) is float or type(v) is int:
        return float(v)
    return None


def find_column(header: list[str], names: tuple[str, ...]) -> int | None:
    low = [h.strip().lower() for h in header]
    for n in names:
        if n in low:
            return low.index(n)
    return None


def looks_like_metric_header(header: list[str]) -> bool:
    """A step/epoch column, or a loss/accuracy-like column: a training log, not a dataset."""
    if find_column(header, STEP_NAMES + EPOCH_NAMES) is not None:
        return True
    return any(infer_role(_strip_run_prefix(h)).endswith(("_loss", "_accuracy")) for h in header)


def _strip_run_prefix(name: str) -> str:
    return name.split(" - ", 1)[1] if " - " in name else name


SNIFF_BYTES = 64 * 1024
# Never a metric table: skip without opening (a folder can hold thousands of these).
_NOT_TABLES = {".png", ".jpg", ".jpeg", ".gif", ".pdf", ".svg", ".pt", ".pth", ".ckpt", ".bin", ".safetensors",
               ".h5", ".hdf5", ".keras", ".pkl", ".pickle", ".npy", ".npz", ".zip", ".gz", ".tar", ".py",
               ".md", ".rst", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".ipynb", ".html", ".sh", ".onnx",
               ".parquet", ".arrow", ".db", ".sqlite", ".mp4", ".wav", ".whl", ".so", ".tfevents"}


def head_lines(path: Path, n: int = 3) -> list[str]:
    """The first n non-blank lines, skipping any line over 64 KiB (a pasted blob, a corrupted
    number) so one such line does not hide the format; at most 4 MiB are read. [] for binary."""
    lines: list[str] = []
    read = 0
    try:
        with open(path, "rb") as fh:
            while len(lines) < n and read < 4 * SNIFF_BYTES * 16:
                raw = fh.readline(SNIFF_BYTES)
                if not raw:
                    break
                read += len(raw)
                if len(raw) == SNIFF_BYTES and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n") and read < 4 * SNIFF_BYTES * 16:
                        raw = fh.readline(SNIFF_BYTES)  # the rest of the long line: skipped
                        read += len(raw)
                    continue
                if raw.count(b"\x00") > len(raw) // 4 and not lines:
                    return []  # binary
                text = raw.replace(b"\x00", b"").decode("utf-8-sig" if not lines else "utf-8", errors="replace")
                if text.strip():
                    lines.append(text.rstrip("\r\n"))
    except OSError:
        return []
    return lines


def sniff_table(path: Path) -> str | None:
    """'csv' or 'jsonl' when the file's first lines are a metric table, whatever its name says.

    A Keras CSVLogger file is `training.log` in Keras' own docs; DETR writes JSON lines to
    `log.txt`. CSV: a header naming a step/epoch or loss/accuracy-like column, then a row with as
    many fields, mostly numbers. JSONL: the first line a JSON object with such keys.
    """
    if Path(path).suffix.lower() in _NOT_TABLES:
        return None
    lines = head_lines(path, 4)
    if not lines:
        return None
    first = lines[0].strip()
    if first.startswith("{"):
        try:
            row = json.loads(first)
        except ValueError:
            return None
        if isinstance(row, dict):
            from ..history import flatten_names

            flat = flatten_names(row)
            if any(parse_cell(v) not in (None, BAD) for v in flat.values() if not isinstance(v, str)) \
                    and looks_like_metric_header(list(flat)):
                return "jsonl"
        return None
    delim = sniff_delimiter(first, Path(path).suffix.lower())
    if delim not in first or len(lines) < 2 or len(first) > MAX_LINE_CHARS:
        return None
    try:
        header = [h.strip() for h in next(csv.reader([first], delimiter=delim))]
    except (csv.Error, StopIteration):
        return None
    if all(parse_cell(h) is not BAD for h in header if h) or not looks_like_metric_header(header):
        return None

    def numeric_row(line: str) -> bool:  # as many fields as the header, mostly numbers
        try:
            row = next(csv.reader([line[:MAX_LINE_CHARS]], delimiter=delim))
        except (csv.Error, StopIteration):
            return False
        return len(row) == len(header) and sum(parse_cell(c) not in (None, BAD) for c in row) >= max(1, len(row) // 2)

    # one of the next three rows will do: the first may be the damaged one
    return "csv" if any(numeric_row(ln) for ln in lines[1:]) else None


def sniff_delimiter(first_line: str, suffix: str) -> str:
    if suffix == ".tsv" or ("\t" in first_line and "," not in first_line):
        return "\t"
    if ";" in first_line and "," not in first_line:
        return ";"
    return ","


# A line longer than this is not a metric row (a pasted blob, a 100,000-digit number from a
# corrupted write); it is skipped before the csv module sees it (its field limit is 128 KiB).
MAX_LINE_CHARS = 1 << 20


def read_csv_table(path: Path, text: str, *, rename=None, expected: str, fast: bool = True) -> tuple[Table, dict]:
    """Parse CSV text with a header row into a Table.

    rename(header) -> list of metric names (None drops a column), e.g. to strip W&B run prefixes.
    Returns the table and info about the columns used ({"step": name, "epoch": name, ...}).
    A clean numeric file goes through pandas' C parser when pandas is installed (`fast`); anything
    it cannot take whole (text cells, quotes, ragged rows, NaN written as text) is read row by row.
    """
    pos = 0
    while True:  # the first non-blank line is the header
        end = text.find("\n", pos)
        line = text[pos:] if end < 0 else text[pos:end]
        if line.strip() or end < 0:
            break
        pos = end + 1
    if not line.strip():
        raise InputError(path, f"is empty; expected {expected}")
    first = text.count("\n", 0, pos)  # blank lines before the header
    header_line = line.rstrip("\r")
    delim = sniff_delimiter(header_line, Path(path).suffix.lower())
    try:
        header = [h.strip() for h in next(csv.reader([header_line[:MAX_LINE_CHARS]], delimiter=delim))]
    except (csv.Error, StopIteration):
        raise InputError(path, f"has no readable header row; expected {expected}") from None
    if all(parse_cell(h) is not BAD for h in header if h):
        raise InputError(path, f"first row {header_line[:60]!r} is numbers, not column names; expected "
                               f"{expected} (add a header row such as 'step,loss')")
    step_i = find_column(header, STEP_NAMES)
    epoch_i = find_column(header, EPOCH_NAMES)
    wall_i = find_column(header, WALL_NAMES)
    names = rename(header) if rename else list(header)
    axis = {i for i in (step_i, epoch_i, wall_i) if i is not None}
    metric_cols = [i for i, n in enumerate(names) if n and i not in axis]
    start = len(text) if end < 0 else end + 1  # the first data row
    cols = (step_i, epoch_i, wall_i, metric_cols, names)

    got = None
    if fast and len({names[i] for i in metric_cols}) == len(metric_cols):
        got = _fast_rows(path, text, start, first + 1, len(header), delim)
    if got is not None:
        table, text_cols = _table_from_array(*got, first + 2, cols), set()
    else:
        table, text_cols = _table_from_rows(text[start:], header, delim, first + 1, cols)
    info = {"step": header[step_i] if step_i is not None else None,
            "epoch": header[epoch_i] if epoch_i is not None else None,
            "ignored_text_columns": [header[i] for i in sorted(text_cols)]}
    if not [i for i in metric_cols if i not in text_cols]:
        raise InputError(path, f"has no numeric metric columns (header: {', '.join(header[:8])}); expected {expected}")
    if table.empty:
        where = f" (first at line {table.first_bad_line})" if table.first_bad_line else ""
        raise InputError(path, f"no valid data rows: {table.bad_rows} malformed{where}; expected {expected}")
    return table, info


# Cell texts pandas reads as missing or as NaN where parse_cell would not agree: such a file takes
# the row-by-row path ("nan" is a value there, "#N/A" is garbage).
# pandas also reads True/False as 1/0, where parse_cell sees text.
_FAST_UNSAFE = ('"', "#", "<", "nan", "NaN", "NAN", "Nan", "\n\n", "\n\r\n", "rue", "RUE", "alse", "ALSE")


_ODD_BYTE = np.zeros(256, dtype=bool)
_ODD_BYTE[[c for c in range(256) if chr(c).isalpha() and chr(c) not in "eE" or chr(c) in "\"#<"]] = True


def _fast_rows(path: Path, text: str, start: int, skip: int, ncols: int, delim: str) -> tuple[np.ndarray, int] | None:
    """Every data row (text[start:], after `skip` lines) as floats (NaN = empty cell), or None
    when the careful path must read it.

    Returns (array of shape rows x columns, 1 if a cut-short last row was dropped else 0). When
    the text is the file byte for byte (ASCII, no NULs removed) pandas reads the file itself,
    so no copy of the text is made.
    """
    try:
        import pandas as pd
    except ImportError:
        return None
    stop = len(text)
    while stop > start and text[stop - 1] in " \t\r\n":
        stop -= 1
    if stop <= start or ncols < 2:
        return None
    # One pass over the bytes finds whether any letter, quote, '#' or '<' is there at all; only
    # then are the unsafe texts looked for one by one (each a scan of the whole body).
    odd = not text.isascii() or bool(_ODD_BYTE[np.frombuffer(text.encode("ascii"), dtype=np.uint8)[start:stop]].any())
    if odd and any(text.find(u, start, stop) >= 0 for u in _FAST_UNSAFE):
        return None
    if text.count("\r", start, stop) != text.count("\r\n", start, stop):
        return None  # a lone CR ("\r\r\n" from a csv.writer in a Windows text-mode file) ends a line for pandas
    cut = 0
    nlines = text.count("\n", start, stop) + 1
    if text.count(delim, start, stop) != (ncols - 1) * nlines:
        last = text.rfind("\n", start, stop)
        if last < 0 or text.count(delim, last, stop) == ncols - 1:
            return None
        cut, nlines, stop = 1, nlines - 1, last  # a last row cut short by a crash
        if text.count(delim, start, stop) != (ncols - 1) * nlines:
            return None  # ragged rows elsewhere: read them one by one
    try:
        same = os.path.getsize(path) == len(text) and text.isascii()
    except OSError:
        same = False
    # bytes, not a StringIO: pandas would copy one into 4-byte characters
    source = str(path) if same else io.BytesIO(text[start:stop].encode("utf-8"))
    try:
        df = pd.read_csv(source, sep=delim, header=None, names=list(range(ncols)), index_col=False,
                         skiprows=skip if same else 0, nrows=nlines, dtype=np.float64, engine="c",
                         skip_blank_lines=False, on_bad_lines="error", float_precision="round_trip")
    except (ValueError, OverflowError, TypeError, MemoryError, OSError):
        return None  # a text cell: the careful path says which rows
    arr = df.to_numpy(dtype=np.float64)
    if arr.shape != (nlines, ncols) or np.isnan(arr).all(axis=1).any():
        return None  # a row pandas saw that the text does not have (or ",,,"): read row by row
    return arr, cut


def _table_from_array(arr: np.ndarray, cut: int, line0: int, cols) -> Table:
    """The Table of a whole numeric array: same rules as _table_from_rows, column at a time."""
    step_i, epoch_i, wall_i, metric_cols, names = cols
    table = Table()
    n = arr.shape[0]
    nan = np.full(n, np.nan)
    epoch = arr[:, epoch_i] if epoch_i is not None else nan
    wall = arr[:, wall_i] if wall_i is not None else None
    logged = ~np.isnan(arr[:, metric_cols]) if metric_cols else np.zeros((n, 0), dtype=bool)
    any_logged = logged.any(axis=1)
    if step_i is not None:
        x = arr[:, step_i]
        bad = np.isnan(x) & (any_logged | ~np.isnan(epoch) | (False if wall is None else ~np.isnan(wall)))
    else:
        bad = np.zeros(n, dtype=bool)
        x = np.arange(n, dtype=np.float64)
        if epoch_i is not None:
            epoch = epoch + restart_offsets(epoch, table, line0)
            x = np.where(~np.isnan(epoch), epoch, x)
    for k, i in enumerate(metric_cols):
        m = logged[:, k] & ~bad
        if m.any():
            table.add_chunk(names[i], np.flatnonzero(m), x[m], arr[m, i], epoch[m], None if wall is None else wall[m])
    table.good_rows = int((any_logged & ~bad).sum())
    nbad = int(bad.sum())
    if nbad:
        table.bad_rows = nbad
        table.first_bad_line = line0 + int(np.argmax(bad))
    if cut:
        table.bad(line0 + n)
    return table


def restart_offsets(epoch: np.ndarray, table: Table, line0: int | None, lines=None) -> np.ndarray:
    """What to add to each row's epoch so that a log holding several fits runs on.

    Keras' CSVLogger(append=True) appends each `model.fit` call to the same file, and a second
    fit counts its epochs from 0 again while training the same weights further. When the epoch
    column falls back to its first value the rows after it continue the curve (epochs 2, 3, ...)
    instead of overwriting the first fit's points. A fall to a later epoch is a resume from a
    checkpoint: left alone, the later rows win those epochs as for any resumed run.
    """
    off = np.zeros(epoch.size)
    idx = np.flatnonzero(~np.isnan(epoch))
    if idx.size < 2:
        return off
    ev = epoch[idx]
    resets = idx[1:][(ev[1:] == ev[0]) & (ev[1:] <= ev[:-1])]
    if not resets.size or resets.size > 1000:
        return off
    for r in resets:
        prev = idx[np.searchsorted(idx, r) - 1]
        off[r:] = epoch[prev] + off[prev] + 1 - ev[0]
    where = [int(line0 + r) if lines is None else lines[r] for r in resets[:3]]
    table.restarts = [*where, *([] if resets.size <= 3 else ["..."])]
    return off


def _table_from_rows(body: str, header: list[str], delim: str, line0: int, cols) -> tuple[Table, set]:
    """Row by row with the csv module: every damaged row is skipped and counted, never guessed at."""
    step_i, epoch_i, wall_i, metric_cols, names = cols
    table = Table()
    lines = body.splitlines()
    rows: list[tuple[int, list]] = []
    ok_lines, long_lines = [], []
    for i, ln in enumerate(lines):
        (long_lines if len(ln) > MAX_LINE_CHARS else ok_lines).append(i)
    for i in long_lines:
        table.bad(line0 + 1 + i)
    reader = csv.reader((lines[i] for i in ok_lines), delimiter=delim)
    k = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # a quote cut off by a crash swallows the rest of the file: stop at the damage
            table.bad(line0 + 1 + ok_lines[min(k, len(ok_lines) - 1)])
            break
        line = line0 + 1 + ok_lines[min(reader.line_num - 1, len(ok_lines) - 1)]
        k = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) > len(header) and not any(c.strip() for c in row[len(header):]):
            row = row[: len(header)]  # a trailing delimiter
        if len(row) != len(header):
            table.bad(line)
            continue
        rows.append((line, [parse_cell(c) for c in row]))

    # A column that is mostly text (a run name, a date) is not a metric; drop it rather than
    # call every row malformed.
    text_cols = set()
    for i in metric_cols:
        cells = [r[i] for _, r in rows if r[i] is not None]
        if cells and sum(c is BAD for c in cells) > len(cells) / 2:
            text_cols.add(i)
    metric_cols = [i for i in metric_cols if i not in text_cols]

    offsets = None
    if step_i is None and epoch_i is not None:
        eps = np.array([c if isinstance(c, float) else np.nan for c in (r[epoch_i] for _, r in rows)])
        offsets = restart_offsets(eps, table, None, [ln for ln, _ in rows])
    for n, (line, cells) in enumerate(rows):
        step = cells[step_i] if step_i is not None else None
        epoch = cells[epoch_i] if epoch_i is not None else None
        if offsets is not None and isinstance(epoch, float):
            epoch += float(offsets[n])
        wall = cells[wall_i] if wall_i is not None else None
        if any(c is BAD for c in (step, epoch, wall)) or any(cells[i] is BAD for i in metric_cols):
            table.bad(line)
            continue
        if step_i is not None and step is None:
            table.bad(line)  # a row with no x position cannot be placed on the curve
            continue
        x = step if step is not None else (epoch if epoch_i is not None and epoch is not None else float(n))
        logged = False
        for i in metric_cols:
            v = cells[i]
            if v is not None:
                table.add(names[i], x, v, epoch, wall)
                logged = True
        if logged:
            table.good_rows += 1
    return table, text_cols
