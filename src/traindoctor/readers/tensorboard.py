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

Speed: the only per-record Python loop walks the record lengths. The common record (`add_scalar`
from PyTorch/Lightning: wall_time, step, one simple_value) is then recognised by its byte layout
for all records at once with numpy, and steps, floats and tags are gathered vectorised; anything
else goes through a small general protobuf decoder. The CRCs of every header and every record
are checked (vectorised CRC-32C), as strictly as TensorBoard's own reader: the header CRC tells a
crashed writer's cut-off record from a corrupt length, the data CRC keeps a flipped bit from
being read as a wrong value. Together they cost about as much as the walk.
"""

from __future__ import annotations

import os
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
_CHUNK = 1 << 16  # records handled per numpy block: keeps temporaries small on a million records
_PAD = 512  # zero bytes after the file's bytes in memory; > the most a layout test reads past a record

_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


# -- discovery ------------------------------------------------------------------------------
def is_events_file(path: Path) -> bool:
    return path.is_file() and bool(_NAME_RE.search(path.name))


def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if is_events_file(root) else []
    files = [f for f in (walk_files(root) if files is None else files) if _NAME_RE.search(f.name)]
    # Oldest first, so that a restart's file comes after the file it resumes from and its points
    # win on duplicate steps. The name carries the writer's start time: events.out.tfevents.<ts>.*
    return sorted(files, key=_file_order)


def _file_order(f: Path) -> tuple:
    m = _TS_RE.search(f.name)
    tail = re.search(r"\.(\d+)$", f.name)  # torch appends a per-process counter: ...<pid>.<n>
    return (str(f.parent), int(m.group(1)) if m else 0, int(tail.group(1)) if tail else 0, f.name)


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
        # One buffer with zero padding after the file's bytes (see _parse); `buf` is the file.
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            padded = bytearray(size + _PAD)
            got = fh.readinto(memoryview(padded)[:size])
        buf = memoryview(padded)[:got]
    except OSError as exc:
        raise InputError(path, f"cannot read the events file ({exc.strerror or exc}); check permissions") from None
    if not buf:
        raise InputError(path, "the events file is empty (0 bytes); expected TFRecord events written by "
                               "a TensorBoard SummaryWriter; the writer may not have flushed yet")
    starts, ends, stop_at, why = _frame(buf)
    bad = _first_bad_crc(buf, starts, ends)
    if bad is not None:
        why = f"record {bad} fails its CRC-32C check (corrupt file?)"
        stop_at = int(starts[bad]) - 12
        starts, ends = starts[:bad], ends[:bad]
    if starts.size == 0:
        raise InputError(path, "not a TensorBoard event file: expected TFRecord framing (uint64 length + "
                               f"masked CRC-32C) at byte 0, found {buf[:12].hex(' ')}; "
                               "pass the run folder or a file named events.out.tfevents.*")
    try:
        data = _parse(buf, padded, starts, ends)
    except (_NotEvents, IndexError, struct.error):  # a field runs past its record's end
        raise InputError(path, "not a TensorBoard event file: the records are not Event protobufs "
                               "(expected wall_time/step/summary fields); pass the run folder "
                               "or a file named events.out.tfevents.*") from None
    notes = []
    if why:
        n_points = sum(v[0].size for v in data.values())
        last = max((float(v[0].max()) for v in data.values() if v[0].size), default=None)
        after = f"after step {int(last)}" if last is not None else "before any scalar"
        crashed = " (crashed run?)" if why.endswith("mid-record") else ""
        notes.append(f"{path.name}: {why} at byte {stop_at} {after}{crashed}; read {n_points} points")
    return data, notes


class _NotEvents(Exception):
    pass


# -- TFRecord framing ------------------------------------------------------------------------
def _frame(buf):
    """Start/end offsets of every complete record's data; where and why reading stopped early.

    This walk is the one per-record Python loop on the fast path, so it does the least possible:
    read the length, remember where the record starts. Lengths are not trusted here: the
    header CRCs are checked afterwards (vectorised) and a bad one cuts the file at that record.
    """
    n = len(buf)
    heads = array("q")
    push = heads.append
    unpack = _U64.unpack_from
    pos = 0
    limit = n - 16  # a record needs 12 header bytes + data + 4 CRC bytes
    while pos <= limit:
        nxt = pos + 16 + unpack(buf, pos)[0]
        if nxt > n:
            break
        push(pos)
        pos = nxt
    why = ""
    if pos < n:
        why = "file ends mid-record"
        if n - pos >= 12:
            # A length that runs past the end is a truncation only if the header is intact.
            b = np.frombuffer(buf, dtype=np.uint8)
            if _masked_crc_at(b, np.array([pos]), 8)[0] != _at(buf, "<u4")[pos + 8]:
                why = "a record header fails its CRC-32C check (corrupt file?)"
            elif _U64.unpack_from(buf, pos)[0] > _MAX_RECORD:
                why = "a record header holds an implausible length (corrupt file?)"
    heads = np.frombuffer(heads, dtype=np.int64)
    if heads.size == 0:
        return heads, heads, pos, why
    lengths = _at(buf, "<u8")[heads].astype(np.int64)
    return heads + 12, heads + 12 + lengths, pos, why


def _at(buf: bytes, dtype: str) -> np.ndarray:
    """A read-only view giving the little-endian `dtype` value that starts at every byte offset.

    Stride 1 over the file's bytes, so `_at(buf, "<f4")[offsets]` gathers unaligned floats
    in one numpy call without copying the file.
    """
    size = np.dtype(dtype).itemsize
    return np.ndarray(shape=(max(len(buf) - size + 1, 0),), dtype=dtype, buffer=buf, strides=(1,))


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


def _masked_crc_at(b: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """Masked CRC-32C of the `width` bytes at each offset, vectorised over offsets."""
    crc = np.full(offsets.size, 0xFFFFFFFF, dtype=np.uint32)
    eight = np.uint32(8)
    for j in range(width):
        crc = _TABLE[(crc ^ b[offsets + j]) & 0xFF] ^ (crc >> eight)
    crc ^= np.uint32(0xFFFFFFFF)
    # TFRecord's mask: rotate right by 15 bits and add a constant (tensorflow/core/lib/hash/crc32c.h)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)


def _first_bad_crc(buf: bytes, starts: np.ndarray, ends: np.ndarray) -> int | None:
    """Index of the first record whose header or data CRC is wrong, or None.

    Both CRCs are checked, as TensorBoard's own reader does, so a flipped bit is reported
    instead of read as a wrong value. Vectorised: records of one length are checked together,
    one numpy pass per byte (about 50 passes for a scalar log), about as long as the walk.
    """
    if starts.size == 0:
        return None
    b = np.frombuffer(buf, dtype=np.uint8)
    u32 = _at(buf, "<u4")
    for c0 in range(0, starts.size, _CHUNK):  # a block at a time: bounded temporaries, early stop
        st, en = starts[c0:c0 + _CHUNK], ends[c0:c0 + _CHUNK]
        heads = st - 12
        bad = _masked_crc_at(b, heads, 8) != u32[heads + 8]
        want = u32[en]
        lengths = en - st
        for length in np.unique(lengths).tolist():
            idx = np.flatnonzero(lengths == length)
            bad[idx] |= _masked_crc_at(b, st[idx], length) != want[idx]
        hit = np.flatnonzero(bad)
        if hit.size:
            return c0 + int(hit[0])
    return None


# -- Event parsing ---------------------------------------------------------------------------
def _parse(buf, padded: bytearray, starts: np.ndarray, ends: np.ndarray) -> dict[str, tuple]:
    """{tag: (steps, wall_times, values)} from the records' data, in file order.

    `padded` is the file followed by _PAD zero bytes: they let the vectorised layout test look
    a few hundred bytes past any record (a varint, a tag length) without bounds checks.
    """
    # -- points from the fast layout, a block of records at a time (bounded temporaries), grouped
    # by tag bytes; values stay float32 until the end (half the memory; widened exactly)
    b = np.frombuffer(padded, dtype=np.uint8)
    wall_at, f32_at = _at(buf, "<f8"), _at(buf, "<f4")
    blocks: dict[bytes, list] = {}  # tag -> [(record indices, steps, walls, values), ...]
    slow_idx = []
    for c0 in range(0, starts.size, _CHUNK):
        st, en = starts[c0:c0 + _CHUNK], ends[c0:c0 + _CHUNK]
        fast, f_steps, tag_at, tag_len, val_at = _fast_layout(b, st, en)
        rec = np.flatnonzero(fast)
        slow_idx.append(np.flatnonzero(~fast) + c0)
        if not rec.size:
            continue
        walls = wall_at[st[rec] + 1]
        values = f32_at[val_at[rec]]
        steps = f_steps[rec].astype(np.float64)
        for tag, members in _group_by_tag(padded, tag_at[rec], tag_len[rec]):
            blocks.setdefault(tag, []).append(((rec[members] + c0).astype(np.int32 if starts.size < 2**31 else np.int64),
                                               steps[members], walls[members], values[members]))
    points: dict[bytes, list] = {}  # tag -> [record indices, steps, walls, values] (arrays)
    for tag in list(blocks):
        parts = blocks.pop(tag)  # joined one tag at a time: the blocks go as the tag is built
        points[tag] = [parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts]) for k in range(4)]

    # -- everything else: the general decoder --------------------------------------------------
    slow: dict[bytes, list] = {}
    plugins: dict[bytes, str] = {}
    for i in np.concatenate(slow_idx).tolist() if slow_idx else []:
        _parse_event(buf, int(starts[i]), int(ends[i]), i, slow, plugins)

    merged = {}
    for tag in set(points) | set(slow):
        if plugins.get(tag, "scalars") != "scalars":
            continue  # a histogram, image, text, ... tag
        parts = points.get(tag)
        extra = slow.get(tag)
        if extra:
            arr = np.array(extra, dtype=np.float64).reshape(-1, 4)
            cols = [arr[:, k] for k in range(4)]
            if parts is not None:
                cols = [np.concatenate([a, c]) for a, c in zip(parts, cols)]
                order = np.argsort(cols[0], kind="stable")  # back into file order
                cols = [c[order] for c in cols]
            parts = cols
        merged[tag] = parts
    # tags in the order they first appear in the file
    return {t.decode("utf-8", "replace"): (p[1], p[2], np.asarray(p[3], dtype=np.float64))
            for t, p in sorted(merged.items(), key=lambda kv: kv[1][0][0])}



def _fast_layout(b: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """Which records have exactly the layout of SummaryWriter.add_scalar, vectorised:

        09 <wall_time:8> [10 <step varint>] 2a L1 0a L2 0a L3 <tag:L3> 15 <simple_value:4>

    (proto3 omits a zero step). Returns the mask and, for those records, step, tag offset,
    tag length and value offset. Every length byte must agree with the record's length, so a
    record that merely starts alike goes to the general decoder instead. `b` is zero-padded.
    """
    ok = b[starts] == 0x09
    q = starts + 9
    has_step = b[q] == 0x10
    # step varint at q + 1: decode up to 10 bytes, all records at once
    byte = b[q + 1]
    step = (byte & 0x7F).astype(np.uint64)
    length = np.ones(starts.size, dtype=np.int64)
    cont = has_step & (byte >= 0x80)
    j = 1
    while cont.any():
        if j >= 10:
            ok &= ~cont
            break
        byte = b[q + 1 + j]
        step[cont] |= (byte[cont] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
        length += cont
        cont &= byte >= 0x80
        j += 1
    step = np.where(has_step, step, np.uint64(0)).view(np.int64)  # int64 two's complement
    q = q + np.where(has_step, 1 + length, 0)
    tl8 = b[q + 5]
    ok &= (b[q] == 0x2A) & (b[q + 2] == 0x0A) & (b[q + 4] == 0x0A) & (tl8 <= 118)
    ok &= (b[q + 1] == tl8 + 9) & (b[q + 3] == tl8 + 7)  # uint8 sums: tl8 <= 118 cannot wrap
    tl = tl8.astype(np.int64)
    v = q + 6 + tl
    ok &= v + 5 == ends
    ok &= b[np.where(ok, v, 0)] == 0x15
    return ok, step, q + 6, tl, v + 1


def _group_by_tag(padded: bytes, tag_at: np.ndarray, tag_len: np.ndarray):
    """(tag bytes, member indices in file order) for the fast records.

    Tags are read 8 bytes at a time; a tag of up to 8 bytes is its own key, longer ones are
    hashed (FNV-1a over words) and every group is checked word for word, falling back to an
    exact grouping if two tags ever share a hash.
    """
    words = _at(padded, "<u8")
    prime = np.uint64(0x100000001B3)
    for n in np.unique(tag_len).tolist():
        idx = np.flatnonzero(tag_len == n)
        at = tag_at[idx]
        cols = []
        for k in range(0, n, 8):
            rest = min(n - k, 8)
            mask = np.uint64((1 << (8 * rest)) - 1)
            cols.append(words[at + k] & mask)
        if not cols:
            key = np.zeros(idx.size, dtype=np.uint64)
        elif len(cols) == 1:
            key = cols[0]
        else:
            key = np.full(idx.size, 0xCBF29CE484222325, dtype=np.uint64)
            for c in cols:
                key = (key ^ c) * prime
        uniq, inv = np.unique(key, return_inverse=True)
        inv = inv.ravel()
        groups = _split_by(inv, uniq.size)
        if len(cols) > 1 and not all(bool((c[g] == c[g[0]]).all()) for g in groups for c in cols):
            # a hash collision (never seen in practice): group on the words themselves
            _, inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
            inv = inv.ravel()
            groups = _split_by(inv, int(inv.max()) + 1)
        for g in groups:
            a = int(at[g[0]])
            yield bytes(padded[a:a + n]), idx[g]


def _split_by(inv: np.ndarray, k: int) -> list[np.ndarray]:
    """Indices of each label 0..k-1, each in ascending (file) order."""
    small = inv.astype(np.int16 if k < 32768 else np.int64)
    order = np.argsort(small, kind="stable")  # a radix sort for int16
    return np.split(order, np.cumsum(np.bincount(small, minlength=k))[:-1])


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


def _parse_event(buf, d: int, e: int, record: int, tags: dict, plugins: dict) -> None:
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
            _parse_value(buf, val[0], val[1], record, step, wall, tags, plugins)


def _parse_value(buf, p: int, end: int, record: int, step: int, wall: float, tags: dict, plugins: dict) -> None:
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
    # TF2 writes the metadata only with a tag's first event; later events inherit its plugin.
    if plugin is not None:
        plugins.setdefault(tag, plugin)
    if plugins.get(tag, "scalars") != "scalars":
        return
    if simple is not None:
        value = simple
    elif tensor is not None:
        value = _scalar_tensor(buf, *tensor)
        if value is None:
            return
    else:
        return
    tags.setdefault(tag, []).append((record, step, wall, value))


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
