"""Read the numbers of a big text log with numpy, one line *shape* at a time.

A million-line log holds a handful of line shapes: `step=# loss=# lr=#` repeated with different
numbers. So instead of running the line patterns on every line (46 s for 1M lines), we

1. find every number token in the bytes with vectorised byte classes (no regex);
2. blank the numbers out (`step=# loss=# lr=#`): that is the line's *template*;
3. ask the caller, once per template, what its first line means (which token is the step, which
   are metrics): the caller runs its ordinary per-line parser on that one line;
4. parse the tokens of every line of an accepted template at once (`parse_numbers`).

Lines of templates the caller declines (progress bars, headers, anything stateful) come back as
"slow" lines for the per-line parser. A token is a run of `[0-9.eE+-]` that starts with a digit
(or a sign/dot and a digit) and is not glued to a name: `top1`, `fc-2`, `layer/3`, `v1.5` keep
their digits in the template, so names never depend on a number that varies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["scan", "parse_numbers", "Scan", "FastGroup"]

CHUNK = 4 * 1024 * 1024  # bytes per numpy pass: bounds peak memory to a few times this

# byte classes: 0 separator, 1 digit, 2 sign, 3 dot, 4 e/E, 5 part of a name, 6 newline
_CLS = np.zeros(256, dtype=np.uint8)
for _c in b"0123456789":
    _CLS[_c] = 1
_CLS[ord("+")] = _CLS[ord("-")] = 2
_CLS[ord(".")] = 3
_CLS[ord("e")] = _CLS[ord("E")] = 4
for _c in b"abcdfghijklmnopqrstuvwxyzABCDFGHIJKLMNOPQRSTUVWXYZ_/":
    _CLS[_c] = 5
_CLS[128:] = 5  # UTF-8 bytes of non-ASCII letters
_CLS[ord("\n")] = 6
_NUMCH = (_CLS >= 1) & (_CLS <= 4)
_POW10 = 10.0 ** np.arange(23)
_MAX_TOKEN = 24  # longer number tokens are not a metric anybody logs; they read as invalid


@dataclass
class FastGroup:
    """Every line of one accepted template: global line numbers and the slot values."""

    spec: object             # what the caller returned for this template
    lines: np.ndarray        # int64, global 0-based line numbers
    values: np.ndarray       # float64 (len(lines), n_slots)
    ok: np.ndarray           # bool (len(lines),): every slot token parsed as a number


@dataclass
class Scan:
    n_lines: int
    slow_lines: list[tuple[int, bytes]]   # (global line number, the line's bytes)
    groups: list[FastGroup]


def scan(data: bytes, accept: Callable[[bytes, np.ndarray, np.ndarray], object | None],
         chunk: int = CHUNK) -> Scan:
    """Split `data` (UTF-8 bytes) into lines, group them by template and parse accepted ones.

    `accept(line_bytes, token_starts, token_ends)` is called once per template with its first
    line; it returns None (read these lines one by one) or a spec with `.ntok` (tokens on the
    line) and `.slots` (the token ordinals to parse).
    """
    specs: dict[bytes, object | None] = {}
    slow: list[tuple[int, bytes]] = []
    parts: dict[bytes, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    line0 = 0
    pos = 0
    n = len(data)
    while pos < n:
        end = min(n, pos + chunk)
        if end < n:
            nl = data.rfind(b"\n", pos, end)
            end = nl + 1 if nl >= pos else (data.find(b"\n", end) + 1 or n)
        line0 = _scan_chunk(data, pos, end, line0, accept, specs, slow, parts)
        pos = end
    groups = []
    for key, chunks in parts.items():
        lines = np.concatenate([c[0] for c in chunks])
        vals = np.concatenate([c[1] for c in chunks])
        ok = np.concatenate([c[2] for c in chunks])
        groups.append(FastGroup(specs[key], lines, vals, ok))
    slow.sort(key=lambda x: x[0])
    return Scan(line0, slow, groups)


def _scan_chunk(data, pos, end, line0, accept, specs, slow, parts) -> int:
    a = np.frombuffer(data, dtype=np.uint8, count=end - pos, offset=pos)
    n = a.size
    nl = np.flatnonzero(a == 10)
    if nl.size == 0 or nl[-1] != n - 1:
        nl = np.append(nl, n)  # the last line has no newline
    n_lines = nl.size
    line_start = np.empty(n_lines, dtype=np.int64)
    line_start[0] = 0
    line_start[1:] = nl[:-1] + 1

    ts, te = _tokens(a)
    # the template: the bytes with each token's tail removed and its first byte set to '#'
    marks = np.zeros(n + 1, dtype=np.int8)
    marks[ts + 1] = 1
    marks[te] -= 1  # ends are distinct; a one-byte token's +1 and -1 cancel
    keep = np.cumsum(marks[:-1], dtype=np.int8) == 0
    del marks
    b = a.copy()
    b[ts] = 35
    templ = b[keep].tobytes().split(b"\n")
    del b, keep
    if len(templ) > n_lines:
        templ = templ[:n_lines]  # the empty string after a final newline
    ids_of = dict.fromkeys(templ)
    keys = list(ids_of)
    for i, k in enumerate(keys):
        ids_of[k] = i
    tid = np.fromiter(map(ids_of.__getitem__, templ), dtype=np.int64, count=len(templ))
    del templ

    tok_line = np.searchsorted(nl, ts)  # a token before newline j is on line j
    counts = np.bincount(tok_line, minlength=n_lines)
    first_tok = np.cumsum(counts) - counts

    order = np.argsort(tid, kind="stable")
    bounds = np.searchsorted(tid[order], np.arange(len(keys) + 1))
    for i, key in enumerate(keys):
        idx = order[bounds[i]:bounds[i + 1]]
        if key not in specs:
            r = idx[0]
            s, e = line_start[r], nl[r]
            f = first_tok[r]
            specs[key] = accept(a[s:e].tobytes(), ts[f:f + counts[r]] - s, te[f:f + counts[r]] - s)
        spec = specs[key]
        if spec is None:
            for r in idx.tolist():
                slow.append((line0 + r, a[line_start[r]:nl[r]].tobytes()))
            continue
        slots = np.asarray(spec.slots, dtype=np.int64)
        if slots.size:
            tok = first_tok[idx][:, None] + slots[None, :]
            vals, ok = parse_numbers(a, ts[tok.ravel()], te[tok.ravel()])
            vals = vals.reshape(idx.size, slots.size)
            ok = ok.reshape(idx.size, slots.size).all(axis=1)
        else:
            vals, ok = np.empty((idx.size, 0)), np.ones(idx.size, dtype=bool)
        parts.setdefault(key, []).append((idx.astype(np.int64) + line0, vals, ok))
    return line0 + n_lines


def _tokens(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every number token in a byte array."""
    numch = _NUMCH[a]
    if a.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    edges = np.flatnonzero(numch[1:] != numch[:-1]) + 1
    if numch[0]:
        edges = np.concatenate(([0], edges))
    if numch[-1]:
        edges = np.concatenate((edges, [a.size]))
    rs, re_ = edges[0::2], edges[1::2]
    del numch, edges
    cls = _CLS[a[rs]]
    nxt = _CLS[a[np.minimum(rs + 1, a.size - 1)]]
    nxt2 = _CLS[a[np.minimum(rs + 2, a.size - 1)]]
    long_enough = re_ - rs
    starts_number = (cls == 1) | (((cls == 2) | (cls == 3)) & (nxt == 1) & (long_enough >= 2)) | (
        (cls == 2) & (nxt == 3) & (nxt2 == 1) & (long_enough >= 3))
    prev = np.where(rs > 0, _CLS[a[np.maximum(rs - 1, 0)]], 0)
    ok = starts_number & (prev != 5)
    return rs[ok].astype(np.int64), re_[ok].astype(np.int64)


def parse_numbers(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values of the number tokens a[starts[i]:ends[i]], and which ones were valid.

    `[-+]?(digits[.digits] | .digits)([eE][-+]?digits)?`, parsed column by column (Horner) over
    all tokens at once. The result is the correctly rounded value whenever the digits fit in
    2**53 and the power of ten is within 1e±22 (Clinger's fast path: both factors are exact, so
    the one division or product rounds once); the rare other tokens go through float().
    """
    m = starts.size
    vals = np.full(m, np.nan)
    ok = np.zeros(m, dtype=bool)
    if m == 0:
        return vals, ok
    lens = ends - starts
    width = int(min(lens.max(), _MAX_TOKEN))
    cols = starts[None, :] + np.arange(width)[:, None]
    inside = np.arange(width)[:, None] < lens[None, :]
    chars = np.where(inside, a[np.minimum(cols, a.size - 1)], 0).astype(np.uint8)
    del cols, inside

    mant = np.zeros(m, dtype=np.int64)
    nd = np.zeros(m, dtype=np.int64)        # mantissa digits
    frac = np.zeros(m, dtype=np.int64)      # of which after the dot
    ex = np.zeros(m, dtype=np.int64)
    ned = np.zeros(m, dtype=np.int64)       # exponent digits
    seen_dot = np.zeros(m, dtype=bool)
    seen_e = np.zeros(m, dtype=bool)
    prev_e = np.zeros(m, dtype=bool)
    neg = chars[0] == 45
    eneg = np.zeros(m, dtype=bool)
    bad = lens > _MAX_TOKEN
    for j in range(width):
        c = chars[j]
        d = c - np.uint8(48)
        isd = d < 10
        md = isd & ~seen_e
        if md.any():
            mant = np.where(md, mant * 10 + d, mant)
            nd += md
            frac += md & seen_dot
        xd = isd & seen_e
        if xd.any():
            ex = np.where(xd, np.minimum(ex * 10 + d, 10_000), ex)
            ned += xd
        isdot = c == 46
        ise = (c | 32) == 101
        iss = (c == 45) | (c == 43)
        if j == 0:
            bad |= ise | ((c != 0) & ~(isd | isdot | iss))
        else:
            bad |= (isdot & (seen_dot | seen_e)) | (ise & (seen_e | (nd == 0))) | (iss & ~prev_e) | (
                (c != 0) & ~(isd | isdot | ise | iss))
            eneg |= (c == 45) & prev_e
        seen_dot |= isdot
        seen_e |= ise
        prev_e = ise
    bad |= (nd == 0) | (seen_e & (ned == 0))
    e10 = np.where(eneg, -ex, ex) - frac
    fast = ~bad & (nd <= 18) & (mant < 2**53) & (np.abs(e10) <= 22)
    mf = mant.astype(np.float64)
    p = _POW10[np.minimum(np.abs(e10), 22)]
    v = np.where(e10 < 0, mf / p, mf * p)
    v = np.where(neg, -v, v)
    vals[fast] = v[fast]
    ok[fast] = True
    slow = np.flatnonzero(~fast & ~bad)
    for i in slow.tolist():  # long mantissas or huge exponents: rare
        s = a[starts[i]:ends[i]].tobytes()
        try:
            vals[i] = float(s)
            ok[i] = True
        except ValueError:
            pass
    return vals, ok
