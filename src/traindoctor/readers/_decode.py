"""Bytes of a text log -> text, with the encoding said out loud.

Training logs are UTF-8 almost always, but not always: PowerShell's `>` writes UTF-16LE with a
byte-order mark, Windows consoles and older editors write cp1252 (`Époque 3 - perte ...`). A log
we cannot decode is the end of the visit, so we fall back instead of failing, and the note says
which encoding was used, so that a user who sees odd characters in a name knows why.

Order tried: a byte-order mark (UTF-8, UTF-16 LE/BE); UTF-16LE without one when every other byte
is NUL (ASCII text written as UTF-16); UTF-8; cp1252; Latin-1 (which decodes anything). Binary
files (NULs, control bytes) are refused with a one-line error.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

__all__ = ["read_text", "decode_bytes", "sniff_encoding", "looks_binary", "Decoded"]

_SNIFF = 64 * 1024
_CHUNK = 8 * 1024 * 1024  # UTF-8 is validated in chunks so that a 1 GB log is never held twice


@dataclass(frozen=True)
class Decoded:
    encoding: str            # the codec name used: utf-8, utf-16-le, utf-16-be, cp1252, latin-1
    start: int               # bytes to skip (a byte-order mark)
    notes: list[str] = field(default_factory=list)
    end: int | None = None   # bytes to stop at (a character cut off mid-write), None for all


def looks_binary(raw: bytes) -> bool:
    """NULs or many control bytes in the first 64 KB (whitespace, \\b and ESC are text)."""
    head = raw[:_SNIFF]
    if not head:
        return False
    if b"\x00" in head:
        return True
    ctrl = sum(head.count(bytes([b])) for b in range(32) if b not in (8, 9, 10, 11, 12, 13, 27))
    return ctrl > 0.1 * len(head)


def _utf16_without_bom(raw: bytes) -> str | None:
    head = raw[:_SNIFF]
    if len(head) < 8:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _first_bad_utf8(raw: bytes, start: int) -> tuple[int, bool] | None:
    """Offset of the first byte that is not UTF-8 (None when all is), and whether that is only
    a character cut off at the very end of the file."""
    if raw.isascii():
        return None
    view = memoryview(raw)
    pos = start
    while pos < len(raw):
        end = min(len(raw), pos + _CHUNK)
        if end < len(raw):  # cut at a newline: never inside a multi-byte character
            nl = raw.rfind(b"\n", pos, end)
            end = nl + 1 if nl >= pos else end
        try:
            codecs.utf_8_decode(view[pos:end], "strict", True)
        except UnicodeDecodeError as exc:
            bad = pos + exc.start
            return bad, end == len(raw) and "end of data" in exc.reason
        pos = end
    return None


def sniff_encoding(raw: bytes, path: Path | str | None = None) -> Decoded:
    """Which codec decodes these bytes; raises InputError for a binary file."""
    if raw.startswith(b"\xef\xbb\xbf"):
        bom, body_start = "utf-8", 3
    elif raw.startswith(b"\xff\xfe"):
        return _utf16(raw, "utf-16-le", 2, "byte-order mark")
    elif raw.startswith(b"\xfe\xff"):
        return _utf16(raw, "utf-16-be", 2, "byte-order mark")
    else:
        bom, body_start = None, 0
        guess = _utf16_without_bom(raw)
        if guess:
            return _utf16(raw, guess, 0, "no byte-order mark; every other byte is NUL")
    if looks_binary(raw[body_start:]):
        raise InputError(
            path,
            "binary file, not a text log; expected text captured from training (stdout, .log, .txt) "
            "in UTF-8, UTF-16 or cp1252",
        )
    bad = _first_bad_utf8(raw, body_start)
    if bad is None:
        return Decoded(bom or "utf-8", body_start)
    offset, cut = bad
    if cut:
        return Decoded("utf-8", body_start, [
            "the file ends in the middle of a UTF-8 character (cut off mid-write?); the last bytes "
            "were dropped"], end=offset)
    line = raw.count(b"\n", 0, offset) + 1
    why = f"not UTF-8: byte 0x{raw[offset]:02x} at offset {offset} (line {line})"
    try:
        raw[body_start:].decode("cp1252")
        enc = "cp1252"
    except UnicodeDecodeError:
        enc = "latin-1"
    return Decoded(enc, body_start, [f"decoded as {enc} ({why}); names with accents may read oddly "
                                      "if that guess is wrong"])


def _utf16(raw: bytes, enc: str, start: int, why: str) -> Decoded:
    notes = [f"decoded as {enc.upper()} ({why})"]
    end = None
    if (len(raw) - start) % 2:
        end = len(raw) - 1
        notes.append("the file ends in half a UTF-16 character (cut off mid-write?); it was dropped")
    return Decoded(enc, start, notes, end)


def decode_bytes(raw: bytes, path: Path | str | None = None) -> tuple[str, Decoded]:
    d = sniff_encoding(raw, path)
    body = raw[d.start:d.end]
    return body.decode(d.encoding, errors="replace"), d


def read_text(path) -> tuple[str, str]:
    """(text, encoding) of a text file: UTF-8 / UTF-16 (BOM) / cp1252 / Latin-1, in that order.

    Raises InputError (one line, naming the file) when it cannot be read or is binary.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror}); check its permissions") from None
    text, d = decode_bytes(raw, path)
    return text, d.encoding
