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
MIN_GROUP = 8  # lines of one template in a chunk before it is worth a numpy pass
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

    ts, te, keep = _tokens(a)
    # the template: the bytes with each token's tail removed and its first byte set to '#'
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

    first_tok = np.searchsorted(ts, line_start)  # tokens are sorted: a line's are a range
    counts = np.searchsorted(ts, nl) - first_tok

    order = np.argsort(tid, kind="stable")
    bounds = np.searchsorted(tid[order], np.arange(len(keys) + 1))
    for i, key in enumerate(keys):
        idx = order[bounds[i]:bounds[i + 1]]
        if key not in specs and idx.size < MIN_GROUP:
            # a rare shape costs more in numpy calls than it saves: read it line by line
            slow.extend((line0 + r, a[line_start[r]:nl[r]].tobytes()) for r in idx.tolist())
            continue
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
        vals = np.empty((idx.size, len(spec.slots)))
        ok = np.ones(idx.size, dtype=bool)
        ft = first_tok[idx]
        for k, slot in enumerate(spec.slots):  # one slot at a time: its tokens share a shape
            vals[:, k], ok_k = parse_numbers(a, ts[ft + slot], te[ft + slot])
            ok &= ok_k
        parts.setdefault(key, []).append((idx.astype(np.int64) + line0, vals, ok))
    return line0 + n_lines


def _tokens(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every number token in a byte array, and the template mask:
    True for the bytes a line's template keeps (all but a token's second byte on)."""
    numch = _NUMCH[a]
    if a.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.ones(0, dtype=bool)
    edges = np.flatnonzero(numch[1:] != numch[:-1]) + 1
    if numch[0]:
        edges = np.concatenate(([0], edges))
    if numch[-1]:
        edges = np.concatenate((edges, [a.size]))
    rs, re_ = edges[0::2], edges[1::2]
    del edges
    first = _CLS[a[rs]]
    ok = first == 1
    maybe = np.flatnonzero((first == 2) | (first == 3))  # "-0.5", ".5", "-.5": rare, checked apart
    if maybe.size:
        r = rs[maybe]
        nxt = _CLS[a[np.minimum(r + 1, a.size - 1)]]
        nxt2 = _CLS[a[np.minimum(r + 2, a.size - 1)]]
        n = re_[maybe] - r
        ok[maybe] = ((nxt == 1) & (n >= 2)) | ((first[maybe] == 2) & (nxt == 3) & (nxt2 == 1) & (n >= 3))
    ok &= (_CLS[a[rs - 1]] != 5) | (rs == 0)  # not glued to a name: top1, fc-2, layer/3
    keep = np.logical_not(numch, out=numch)
    keep[rs[ok]] = True
    # number characters that are not a token (the `e` of `step`, a `--` rule) stay in the template
    ns, ne = rs[~ok], re_[~ok]
    short = ne - ns == 1
    keep[ns[short]] = True
    ns, ne = ns[~short], ne[~short]
    if ns.size:
        lens = ne - ns
        keep[np.repeat(ns - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))] = True
    return rs[ok].astype(np.int64), re_[ok].astype(np.int64), keep


# A DFA over token characters: [-+]?(digits[.digits]? | .digits)([eE][-+]?digits)?. Character
# classes: 0 anything else (the token has ended: a token is a maximal run of number characters,
# so what follows it is never one), 1 digit, 2 dot, 3 e/E, 4 minus, 5 plus.
_TCLS = np.zeros(256, dtype=np.uint8)
for _c in b"0123456789":
    _TCLS[_c] = 1
_TCLS[ord(".")], _TCLS[ord("e")], _TCLS[ord("E")], _TCLS[ord("-")], _TCLS[ord("+")] = 2, 3, 3, 4, 5
(START, SIGN, INT, DOT0, DOT, FRAC, E, ESIGN, ESIGN_N, EXPD, EXPD_N, ERR, END, END_N) = range(14)
_T = np.full((14, 6), ERR, dtype=np.int64)
_T[START, 1], _T[START, 2], _T[START, 4], _T[START, 5] = INT, DOT0, SIGN, SIGN
_T[SIGN, 1], _T[SIGN, 2] = INT, DOT0
_T[INT, 0], _T[INT, 1], _T[INT, 2], _T[INT, 3] = END, INT, DOT, E
_T[DOT0, 1] = FRAC
_T[DOT, 0], _T[DOT, 1], _T[DOT, 3] = END, FRAC, E
_T[FRAC, 0], _T[FRAC, 1], _T[FRAC, 3] = END, FRAC, E
_T[E, 1], _T[E, 4], _T[E, 5] = EXPD, ESIGN_N, ESIGN
_T[ESIGN, 1], _T[ESIGN_N, 1] = EXPD, EXPD_N
_T[EXPD, 0], _T[EXPD, 1] = END, EXPD
_T[EXPD_N, 0], _T[EXPD_N, 1] = END_N, EXPD_N
_T[END, :] = END
_T[END_N, :] = END_N
_T = _T.ravel()
_MANT = np.isin(np.arange(14), [INT, FRAC])
_FRAC = np.arange(14) == FRAC
_EXPD = np.isin(np.arange(14), [EXPD, EXPD_N])
_ACCEPT = np.isin(np.arange(14), [INT, DOT, FRAC, EXPD, EXPD_N, END, END_N])
_NEG_EXP = np.isin(np.arange(14), [EXPD_N, END_N])


def _same_shape(chars: np.ndarray, cls: np.ndarray) -> np.ndarray | None:
    """Values when every token has one shape (a step counter's digits, `%.6f`, `%.4e`), by a
    matrix product over the digit columns; None when the shapes differ."""
    digit = cls == 1
    if not (digit | (cls == 0)).all():  # not plain integers: one shape for all, or nothing
        if not (cls == cls[:, :1]).all():
            return None
        pattern = cls[:, 0].tolist()
        text = bytes(chars[:, 0].tolist())
        try:
            float(text[:pattern.index(0)] if 0 in pattern else text)
        except ValueError:
            return None
        e = pattern.index(3) if 3 in pattern else len(pattern)
        mcols = [j for j in range(e) if pattern[j] == 1]
        xcols = [j for j in range(e, len(pattern)) if pattern[j] == 1]
        dot = pattern.index(2) if 2 in pattern[:e] else e
        if not mcols or len(mcols) > 15 or len(xcols) > 3:
            return None
        frac = sum(1 for j in mcols if j > dot)
        mant = _horner(chars, mcols)
        e10 = np.full(chars.shape[1], -frac, dtype=np.int64)
        if xcols:
            x = _horner(chars, xcols).astype(np.int64)
            e10 += np.where(chars[xcols[0] - 1] == 45, -x, x)
        if np.abs(e10).max() > 22:
            return None
        p = _POW10[np.abs(e10)]
        v = np.where(e10 < 0, mant / p, mant * p)
        return -v if pattern[0] == 4 else v
    # integers of any length: Horner over the columns, a column past a token's end adds nothing
    if digit.sum(axis=0).max() > 15:
        return None
    mant = np.zeros(chars.shape[1])
    for j in range(chars.shape[0]):
        mant = np.where(digit[j], mant * 10 + (chars[j] - 48), mant)
    return mant


def _horner(chars: np.ndarray, cols: list[int]) -> np.ndarray:
    """The digits in `cols` (the same columns for every token) as an exact float64 integer."""
    w = 10.0 ** np.arange(len(cols) - 1, -1, -1)
    return w @ (chars[cols].astype(np.float64) - 48.0)


def parse_numbers(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values of the number tokens a[starts[i]:ends[i]], and which ones were valid.

    All tokens advance through a small DFA one character column at a time, accumulating the
    mantissa (Horner) and the exponent. The result is the correctly rounded value whenever the
    mantissa fits in 2**53 and the power of ten is within 1e±22 (Clinger's fast path: both
    factors are exact, so the one division or product rounds once); the rare other tokens go
    through float().
    """
    m = starts.size
    vals = np.full(m, np.nan)
    ok = np.zeros(m, dtype=bool)
    if m == 0:
        return vals, ok
    lens = ends - starts
    width = int(min(lens.max(), _MAX_TOKEN)) + 1  # one column past the end: the DFA's end
    last = a.size - 1
    idx = starts[None, :] + np.arange(width)[:, None]
    chars = a[np.minimum(idx, last) if starts.max() + width > last else idx]
    del idx
    # past a token's end: class 0 (the bytes there belong to the next word or number)
    cls = np.where(np.arange(width)[:, None] < lens[None, :], _TCLS[chars], 0)
    if lens.max() < width:
        got = _same_shape(chars, cls)
        if got is not None:
            return got, np.ones(m, dtype=bool)
    has_exp = bool((cls == 3).any())
    state = np.full(m, START, dtype=np.int64)
    mant = np.zeros(m, dtype=np.int64)
    nd = np.zeros(m, dtype=np.int64)
    frac = np.zeros(m, dtype=np.int64)
    ex = np.zeros(m, dtype=np.int64)
    for j in range(width):
        state = _T[state * 6 + cls[j].astype(np.int64)]
        md = _MANT[state]
        d = chars[j].astype(np.int64) - 48
        mant = np.where(md, mant * 10 + d, mant)
        nd += md
        frac += _FRAC[state]
        if has_exp:
            ex = np.where(_EXPD[state], np.minimum(ex * 10 + d, 10_000), ex)
    good = _ACCEPT[state] & (lens < width)
    e10 = np.where(_NEG_EXP[state], -ex, ex) - frac
    fast = good & (nd <= 18) & (mant < 2**53) & (np.abs(e10) <= 22)
    mf = mant.astype(np.float64)
    p = _POW10[np.minimum(np.abs(e10), 22)]
    v = np.where(e10 < 0, mf / p, mf * p)
    v = np.where(chars[0] == 45, -v, v)
    vals[fast] = v[fast]
    ok[fast] = True
    rest = np.flatnonzero(~fast & (good | (lens >= width)))
    for i in rest.tolist():  # long mantissas, huge exponents, very long tokens: rare
        try:
            vals[i] = float(a[starts[i]:ends[i]].tobytes())
            ok[i] = True
        except ValueError:
            pass
    return vals, ok
