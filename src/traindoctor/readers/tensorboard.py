"""TensorBoard event files, parsed natively (no tensorflow or tensorboard import).

An events file is a TFRecord stream; each record is

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

and each data blob is a serialized `tensorboard.Event` protobuf. The field numbers used below are
those of tensorboard/compat/proto/{event,summary,tensor,tensor_shape,types}_pb2 (checked against
the installed descriptors):

    Event:        wall_time=1 (double), step=2 (int64), summary=5 (Summary)
    Summary:      value=1 (repeated Value)
    Value:        tag=1, simple_value=2 (float), tensor=8 (TensorProto), metadata=9
    Metadata:     plugin_data=1 -> PluginData.plugin_name=1
    TensorProto:  dtype=1, tensor_shape=2 (dim=2 -> size=1), tensor_content=4, float_val=5,
                  double_val=6, int_val=7, int64_val=10, bool_val=11, half_val=13

What is read: `add_scalar` simple_values and rank-0 numeric tensors (TF2 / Keras `tf.summary.scalar`,
plugin "scalars"). Images, histograms, text, audio, graphs and hparams are skipped. Every point is
kept (no reservoir sampling as in TensorBoard's EventAccumulator) and float32 values are widened to
float64 exactly.

Speed: the common record (`add_scalar` from PyTorch/Lightning: wall_time, step, one simple_value)
is recognised by its byte layout in one tight loop that only records offsets; the floats are
gathered afterwards with numpy. Anything else goes through a small general protobuf decoder. CRCs
of every header and every record are checked with a vectorised CRC-32C (numpy), so integrity is
verified as strictly as TensorBoard's own reader at a small fraction of the cost.
"""

from __future__ import annotations

import re
import struct
from array import array
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Series
from . import Part, walk_files

__all__ = ["FORMAT", "discover", "read", "read_events"]

FORMAT = "tensorboard"

# Keras' TensorBoard callback writes one subfolder per split; they belong to the parent run.
_SPLIT_DIRS = {"train", "validation", "val", "eval", "test"}
_NAME_RE = re.compile(r"tfevents")
_TS_RE = re.compile(r"tfevents\.(\d+)")
# A single Event bigger than this is not a scalar log we could use; a length field above it is
# taken as a corrupt header rather than as a reason to wait for 2**60 bytes.
_MAX_RECORD = 1 << 31

_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


# -- discovery ------------------------------------------------------------------------------
def is_events_file(path: Path) -> bool:
    return path.is_file() and bool(_NAME_RE.search(path.name))


def discover(root: Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if is_events_file(root) else []
    files = [f for f in walk_files(root) if _NAME_RE.search(f.name)]
    # Oldest first, so that a restart's file comes after the file it resumes from and its points
    # win on duplicate steps. The name carries the writer's start time: events.out.tfevents.<ts>.*
    return sorted(files, key=_file_order)


def _file_order(f: Path) -> tuple:
    m = _TS_RE.search(f.name)
    return (str(f.parent), int(m.group(1)) if m else 0, f.name)


# -- reading one file ------------------------------------------------------------------------
def read(unit: Path) -> Part:
    unit = Path(unit)
    raw, notes = read_events(unit)
    run_dir, rename = _run_dir_and_names(unit, list(raw))
    series: dict[str, Series] = {}
    epoch_src = raw.get("epoch")
    for tag, (steps, wall, values) in raw.items():
        name = rename(tag)
        epochs = None
        if tag.startswith("epoch_"):
            # Keras logs its epoch-level metrics with step == epoch index.
            epochs = steps
        elif tag != "epoch" and epoch_src is not None:
            epochs = _epochs_from(epoch_src, steps)
        elif tag == "epoch":
            epochs = values
        series[name] = Series(name, steps, values, epochs, wall)
    return Part(series, run_dir, FORMAT, notes=notes, merge=True)


def _epochs_from(epoch_src, steps: np.ndarray) -> np.ndarray:
    """Lightning logs an "epoch" scalar at the steps it logs other metrics: take the epoch at the
    same step, or else at the nearest step before it (NaN before the first one)."""
    e_steps, _, e_vals = epoch_src
    order = np.argsort(e_steps, kind="stable")
    e_steps, e_vals = e_steps[order], e_vals[order]
    idx = np.searchsorted(e_steps, steps, side="right") - 1
    out = np.full(steps.shape, np.nan)
    ok = idx >= 0
    out[ok] = e_vals[idx[ok]]
    return out


def _run_dir_and_names(unit: Path, tags: list[str]):
    parent = unit.parent
    if parent.name.lower() in _SPLIT_DIRS:
        prefix = parent.name
        return parent.parent, lambda t: f"{prefix}/{t}"
    # PyTorch add_scalars("Loss", {"train": ..}) writes tag "Loss" into <logdir>/Loss_train/.
    if tags:
        keys = []
        for t in tags:
            head = t.replace("/", "_") + "_"
            if not parent.name.startswith(head) or len(parent.name) == len(head):
                break
            keys.append(parent.name[len(head):])
        else:
            suffix = dict(zip(tags, keys))
            return parent.parent, lambda t, suffix=suffix: f"{t}/{suffix[t]}"
    return parent, lambda t: t


def read_events(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], list[str]]:
    """{tag: (steps, wall_times, values)} for every scalar in one events file, plus notes.

    Raises InputError when the file is not an events file at all. A file that stops mid-record
    (a crashed or still-running writer) gives what was read before that point and a note.
    """
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the events file ({exc.strerror or exc}); check permissions") from None
    if not buf:
        raise InputError(path, "the events file is empty (0 bytes); expected TFRecord events written by "
                               "a TensorBoard SummaryWriter; the writer may not have flushed yet")
    starts, ends, stop_at, why = _frame(buf)
    bad = _first_bad_crc(buf, starts, ends)
    if bad is not None:
        why = f"record {bad} (byte {int(starts[bad]) - 12}) fails its CRC-32C check (corrupt file?)"
        stop_at = int(starts[bad]) - 12
        starts, ends = starts[:bad], ends[:bad]
    if starts.size == 0:
        raise InputError(path, "not a TensorBoard event file: expected TFRecord framing (uint64 length + "
                               f"masked CRC-32C) at byte 0, found {buf[:12].hex(' ')}; "
                               "pass the run folder or a file named events.out.tfevents.*")
    per_tag = _parse(buf, starts, ends)
    try:
        data = _assemble(buf, per_tag)
    except _NotEvents:
        raise InputError(path, "not a TensorBoard event file: the records are not Event protobufs "
                               "(expected wall_time/step/summary fields); pass the run folder "
                               "or a file named events.out.tfevents.*") from None
    notes = []
    if why:
        n_points = sum(v[0].size for v in data.values())
        last = max((float(v[0].max()) for v in data.values() if v[0].size), default=None)
        after = f"after step {int(last)}" if last is not None else "before any scalar"
        notes.append(f"{path.name}: {why} at byte {stop_at} {after} (crashed run?); read {n_points} points"
                     if "CRC" not in why else
                     f"{path.name}: {why} {after}; read {n_points} points before it")
    return data, notes


class _NotEvents(Exception):
    pass


# -- TFRecord framing ------------------------------------------------------------------------
def _frame(buf: bytes):
    """Start/end offsets of every complete record's data; where and why reading stopped early."""
    n = len(buf)
    starts = array("q")
    ends = array("q")
    push_s, push_e = starts.append, ends.append
    unpack = _U64.unpack_from
    pos = 0
    why = ""
    limit = n - 16  # a record needs 12 header bytes + data + 4 CRC bytes
    while pos <= limit:
        length = unpack(buf, pos)[0]
        end = pos + 12 + length
        if end + 4 > n:
            break
        push_s(pos + 12)
        push_e(end)
        pos = end + 4
    if pos < n:
        rest = n - pos
        if rest >= 8 and _U64.unpack_from(buf, pos)[0] > _MAX_RECORD:
            why = "a record header holds an implausible length (corrupt file?)"
        else:
            why = "file ends mid-record"
    return np.frombuffer(starts, dtype=np.int64), np.frombuffer(ends, dtype=np.int64), pos, why


def _crc_table() -> np.ndarray:
    poly = 0x82F63B78  # CRC-32C (Castagnoli), reflected, as TFRecord uses
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _crc_table()


def _masked_crc(rows: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of each row of a (n, width) uint8 array, vectorised over rows."""
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for j in range(rows.shape[1]):
        crc = _TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    # TFRecord's mask: rotate right by 15 bits and add a constant (tensorflow/core/lib/hash/crc32c.h)
    return (((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)).astype(np.uint32)


def _first_bad_crc(buf: bytes, starts: np.ndarray, ends: np.ndarray) -> int | None:
    """Index of the first record whose header or data CRC is wrong, or None.

    Both CRCs are checked, like TensorBoard's reader, but vectorised: records of one length are
    checked together, one numpy pass per byte column (a few tens of passes for a scalar log).
    """
    if starts.size == 0:
        return None
    b = np.frombuffer(buf, dtype=np.uint8)
    heads = starts - 12
    bad = np.zeros(starts.size, dtype=bool)
    hdr = b[heads[:, None] + np.arange(8)]
    want = b[heads[:, None] + np.arange(8, 12)].copy().view("<u4").ravel()
    bad |= _masked_crc(hdr) != want
    lengths = ends - starts
    want_d = b[ends[:, None] + np.arange(4)].copy().view("<u4").ravel()
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        rows = b[starts[idx, None] + np.arange(length)] if length else np.zeros((idx.size, 0), np.uint8)
        bad[idx] |= _masked_crc(rows) != want_d[idx]
    hit = np.flatnonzero(bad)
    return int(hit[0]) if hit.size else None


# -- Event parsing ---------------------------------------------------------------------------
class _Tag:
    """Points of one tag: offsets for the fast path, Python floats for the rest."""

    __slots__ = ("steps", "wall_off", "val_off", "slow", "plugin")

    def __init__(self):
        self.steps = array("q")
        self.wall_off = array("q")
        self.val_off = array("q")
        self.slow: list[tuple[int, float, float, int]] = []  # (step, wall, value, order)
        self.plugin: str | None = None


def _parse(buf: bytes, starts: np.ndarray, ends: np.ndarray) -> dict[str, _Tag]:
    tags: dict[bytes, _Tag] = {}
    get = tags.get
    for d, e in zip(starts.tolist(), ends.tolist()):
        # Fast path: exactly what SummaryWriter.add_scalar writes:
        # 09 <wall:8> [10 <step varint>] 2a L1 0a L2 0a L3 <tag> 15 <float:4>
        if buf[d] == 0x09:
            q = d + 9
            c = buf[q]
            if c == 0x10:
                s = buf[q + 1]
                if s < 0x80:
                    q += 2
                else:
                    s, q = _varint(buf, q + 1)
                    if s >= 1 << 63:
                        s -= 1 << 64
                c = buf[q]
            else:
                s = 0  # proto3 omits a zero step
            if c == 0x2A and buf[q + 2] == 0x0A and buf[q + 4] == 0x0A:
                tl = buf[q + 5]
                v = q + 6 + tl
                if v + 5 == e and buf[v] == 0x15 and buf[q + 3] == tl + 7 and buf[q + 1] == tl + 9:
                    key = buf[q + 6:v]
                    t = get(key)
                    if t is None:
                        t = tags[key] = _Tag()
                    if t.plugin is None or t.plugin == "scalars":
                        t.steps.append(s)
                        t.wall_off.append(d + 1)
                        t.val_off.append(v + 1)
                    continue
        _parse_event(buf, d, e, tags)
    return {k.decode("utf-8", "replace"): t for k, t in tags.items() if len(t.steps) or t.slow}


def _varint(buf, p: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        x = buf[p]
        p += 1
        result |= (x & 0x7F) << shift
        if x < 0x80:
            return result, p
        shift += 7
        if shift > 63:
            raise _NotEvents


def _fields(buf, p: int, end: int):
    """(field number, wire type, value or (start, end)) for each field of a message."""
    while p < end:
        key, p = _varint(buf, p)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, p = _varint(buf, p)
        elif wire == 1:
            val, p = p, p + 8
        elif wire == 2:
            n, p = _varint(buf, p)
            val, p = (p, p + n), p + n
        elif wire == 5:
            val, p = p, p + 4
        else:
            raise _NotEvents  # groups (3, 4) are not used by any TensorBoard message
        if p > end or num == 0:
            raise _NotEvents
        yield num, wire, val


def _parse_event(buf, d: int, e: int, tags: dict) -> None:
    wall = float("nan")
    step = 0
    summary = None
    for num, wire, val in _fields(buf, d, e):
        if num == 1 and wire == 1:
            wall = _F64.unpack_from(buf, val)[0]
        elif num == 2 and wire == 0:
            step = val - (1 << 64) if val >= 1 << 63 else val
        elif num == 5 and wire == 2:
            summary = val
    if summary is None:
        return  # file_version, graph, session_log, ... events carry no scalars
    for num, wire, val in _fields(buf, summary[0], summary[1]):
        if num == 1 and wire == 2:
            _parse_value(buf, val[0], val[1], step, wall, tags)


def _parse_value(buf, p: int, end: int, step: int, wall: float, tags: dict) -> None:
    tag = None
    simple = None
    tensor = None
    plugin = None
    for num, wire, val in _fields(buf, p, end):
        if num == 1 and wire == 2:
            tag = bytes(buf[val[0]:val[1]])
        elif num == 2 and wire == 5:
            simple = _F32.unpack_from(buf, val)[0]
        elif num == 8 and wire == 2:
            tensor = val
        elif num == 9 and wire == 2:
            plugin = _plugin_name(buf, *val)
    if tag is None:
        return
    t = tags.get(tag)
    if t is None:
        t = tags[tag] = _Tag()
    # TF2 writes the metadata only with a tag's first event; later events inherit its plugin.
    if plugin is not None and t.plugin is None:
        t.plugin = plugin
    if t.plugin not in (None, "scalars"):
        return
    if simple is not None:
        value = simple
    elif tensor is not None:
        value = _scalar_tensor(buf, *tensor)
        if value is None:
            return
    else:
        return
    t.slow.append((step, wall, value, len(t.steps) + len(t.slow)))


def _plugin_name(buf, p: int, end: int) -> str | None:
    for num, wire, val in _fields(buf, p, end):
        if num == 1 and wire == 2:
            for n2, w2, v2 in _fields(buf, *val):
                if n2 == 1 and w2 == 2:
                    return bytes(buf[v2[0]:v2[1]]).decode("utf-8", "replace")
    return None


# dtype enum -> (numpy dtype of tensor_content, repeated field holding the value, its kind)
_DTYPES = {
    1: ("<f4", 5, "f32"),  # DT_FLOAT   -> float_val
    2: ("<f8", 6, "f64"),  # DT_DOUBLE  -> double_val
    3: ("<i4", 7, "int"),  # DT_INT32   -> int_val
    4: ("<u1", 7, "int"),  # DT_UINT8
    5: ("<i2", 7, "int"),  # DT_INT16
    6: ("<i1", 7, "int"),  # DT_INT8
    9: ("<i8", 10, "int"),  # DT_INT64  -> int64_val
    10: ("<u1", 11, "int"),  # DT_BOOL  -> bool_val
    14: ("<u2", 13, "bf16"),  # DT_BFLOAT16 -> half_val (raw bits)
    19: ("<f2", 13, "f16"),  # DT_HALF  -> half_val (raw bits)
}


def _scalar_tensor(buf, p: int, end: int) -> float | None:
    """The value of a rank-0 (or one-element) numeric TensorProto, else None."""
    dtype = 0
    size = 1
    content = None
    packed: dict[int, list] = {}
    for num, wire, val in _fields(buf, p, end):
        if num == 1 and wire == 0:
            dtype = val
        elif num == 2 and wire == 2:
            for n2, w2, v2 in _fields(buf, *val):
                if n2 == 2 and w2 == 2:  # one Dim
                    for n3, w3, v3 in _fields(buf, *v2):
                        if n3 == 1 and w3 == 0:
                            size *= v3
        elif num == 4 and wire == 2:
            content = bytes(buf[val[0]:val[1]])
        else:
            packed.setdefault(num, []).append((wire, val))
    spec = _DTYPES.get(dtype)
    if spec is None or size != 1:
        return None
    np_dtype, field, kind = spec
    if content is not None:
        arr = np.frombuffer(content, dtype=np_dtype)
        if arr.size != 1:
            return None
        raw = arr[0]
        if kind == "bf16":
            return float(np.array([int(raw) << 16], dtype=np.uint32).view(np.float32)[0])
        return float(raw)
    items = packed.get(field)
    if not items:
        return 0.0 if dtype else None  # proto3: an all-default scalar tensor is zero
    wire, val = items[-1]
    if kind == "f32":
        if wire == 5:
            return _F32.unpack_from(buf, val)[0]
        a, b = val
        return _F32.unpack_from(buf, b - 4)[0] if b - a >= 4 else None
    if kind == "f64":
        if wire == 1:
            return _F64.unpack_from(buf, val)[0]
        a, b = val
        return _F64.unpack_from(buf, b - 8)[0] if b - a >= 8 else None
    if wire == 0:
        ints = [val]
    else:
        ints = []
        q, b = val
        while q < b:
            x, q = _varint(buf, q)
            ints.append(x)
        if not ints:
            return None
    x = ints[-1]
    if kind == "f16":
        return float(np.array([x], dtype=np.uint16).view(np.float16)[0])
    if kind == "bf16":
        return float(np.array([x << 16], dtype=np.uint32).view(np.float32)[0])
    return float(x - (1 << 64) if x >= 1 << 63 else x)


def _assemble(buf: bytes, per_tag: dict[str, _Tag]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    b = np.frombuffer(buf, dtype=np.uint8)
    out = {}
    for name, t in per_tag.items():
        steps = np.frombuffer(t.steps, dtype=np.int64).astype(np.float64)
        voff = np.frombuffer(t.val_off, dtype=np.int64)
        woff = np.frombuffer(t.wall_off, dtype=np.int64)
        values = b[voff[:, None] + np.arange(4)].view("<f4").ravel().astype(np.float64)
        wall = b[woff[:, None] + np.arange(8)].view("<f8").ravel().copy()
        if t.slow:
            # slow-path points were interleaved with fast ones; put them back in file order
            is_slow = np.zeros(steps.size + len(t.slow), dtype=bool)
            is_slow[[x[3] for x in t.slow]] = True
            steps = _interleave(is_slow, steps, [x[0] for x in t.slow])
            wall = _interleave(is_slow, wall, [x[1] for x in t.slow])
            values = _interleave(is_slow, values, [x[2] for x in t.slow])
        out[name] = (steps, wall, values)
    return out


def _interleave(is_slow: np.ndarray, fast: np.ndarray, slow: list) -> np.ndarray:
    arr = np.empty(is_slow.size)
    arr[is_slow] = slow
    arr[~is_slow] = fast
    return arr
