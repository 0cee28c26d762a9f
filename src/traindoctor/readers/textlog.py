"""Plain-text training logs: stdout captures, `nohup.out`, `train.log`, SLURM `.out` files.

The last reader asked: it gets whatever no structured format claimed. It understands

* `key=value` and `key: value` pairs (`step=100 loss=0.41 lr=1e-4`, `Train Loss: 0.5 | Val Acc: 0.8`);
  a bare `loss 0.41` is too loose to trust and is not read;
* `Epoch N Train - Loss: x` / `Epoch N Val - Loss: x` (a split word before the pairs qualifies them:
  `Val Loss`), and `Epoch 3/50` headers that give the epoch of the lines below them;
* tqdm bars with a postfix (`45/100 [00:05<00:06, 8.91it/s, loss=0.5]`) and Lightning's progress
  bar (`Epoch 0: 120/5000 [01:02<43:10:00, 0.82it/s, v_num=3, train/total_loss=2.400]`): every
  redraw with a new batch counter is a point, an identical redraw is not;
* Keras `model.fit` output, progress bars drawn with `\\b` and `\\r`: only each epoch's final
  line (`32/32 [====] - 1s 10ms/step - loss: 0.41 - val_loss: 0.52`) is an epoch point.

Throughput (`it/s`, `s/it`, Keras `ms/step`) becomes the series `it_per_sec` (role `time`).
Warnings, tracebacks, banners and config dumps are skipped; a line counts only when at least one
of its keys names a metric (a loss, accuracy, error, lr or grad norm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import _SPLIT_TOKENS, Series, _tokens, infer_role

FORMAT = "text"

_EXTS = {".log", ".txt", ".out", ".err"}
SNIFF_BYTES = 64 * 1024
THROUGHPUT = "it_per_sec"

EXPECTED_SHAPES = (
    "`key=value` or `key: value` pairs naming a metric (loss=0.41, val_acc: 0.9), "
    "`Epoch N Train - Loss: x`, tqdm/Lightning progress bars with metrics in the postfix, "
    "or Keras model.fit output"
)


# -- discovery ------------------------------------------------------------------------------
def discover(root: Path, files: list[Path] | None = None) -> list[Path]:
    """A file given directly is always tried; in a folder, text files that hold metric lines."""
    root = Path(root)
    if root.is_file():
        return [root]
    from . import walk_files

    out = []
    for f in (walk_files(root) if files is None else files):
        if f.name.startswith("."):
            continue
        if f.suffix.lower() in _EXTS or f.suffix == "":
            if _sniff(f):
                out.append(f)
    return out


def _sniff(path: Path) -> bool:
    """True when the first 64 KB decode as text and hold at least one metric line."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return False
    if _looks_binary(_strip_bom(head)[0]):
        return False
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="replace")
    else:
        text = head.decode("utf-8", errors="replace")
    return parse(text).metric_frames > 0


# -- reading --------------------------------------------------------------------------------
def read(unit: Path):
    from . import Part

    path = Path(unit)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror}); check its permissions") from None
    text, notes = decode(path, raw)
    parsed = parse(text)
    if not parsed.points:
        if not text.strip():
            raise InputError(path, f"the file is empty; expected a training log with {EXPECTED_SHAPES}")
        raise InputError(path, f"no metric lines found in this text file; expected {EXPECTED_SHAPES}")
    series = {name: _series(name, pts) for name, pts in parsed.points.items()}
    # The bar's total is how long an epoch is; the throughput check turns it into hours per epoch.
    hparams = {"steps_per_epoch": parsed.steps_per_epoch} if parsed.steps_per_epoch else {}
    return Part(series, path.parent, FORMAT, hparams=hparams,
                notes=[f"{path.name}: {n}" for n in notes + parsed.notes])


def _series(name: str, pts: list[tuple[float, float, float]]) -> Series:
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    role = "time" if name == THROUGHPUT else ""
    return Series(name, arr[:, 0], arr[:, 2], arr[:, 1], role=role)


def _strip_bom(raw: bytes) -> tuple[bytes, int]:
    return (raw[3:], 3) if raw.startswith(b"\xef\xbb\xbf") else (raw, 0)


def _looks_binary(raw: bytes) -> bool:
    head = raw[:SNIFF_BYTES]
    if not head:
        return False
    if b"\x00" in head:
        return True
    # control bytes other than whitespace, backspace (Keras bars) and ESC (ANSI colours)
    ctrl = sum(head.count(bytes([b])) for b in range(32) if b not in (8, 9, 10, 11, 12, 13, 27))
    return ctrl > 0.1 * len(head)


def decode(path: Path, raw: bytes) -> tuple[str, list[str]]:
    """Bytes -> text. UTF-8 (BOM or not) and UTF-16 with a BOM; anything else is a clear error."""
    notes: list[str] = []
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # PowerShell `>` writes UTF-16LE with a BOM
        body = raw[2:]
        if len(body) % 2:
            body = body[:-1]
            notes.append("the file ends in half a UTF-16 character (cut off mid-write?); it was dropped")
        return body.decode("utf-16-le" if raw[:2] == b"\xff\xfe" else "utf-16-be", errors="replace"), notes
    body, skip = _strip_bom(raw)
    if _looks_binary(body):
        raise InputError(
            path,
            "binary file, not a text log; expected UTF-8 text captured from training (stdout, "
            ".log, .txt); if it is UTF-16 without a byte-order mark, convert it with "
            "`iconv -f utf-16le -t utf-8`",
        )
    try:
        return body.decode("utf-8"), notes
    except UnicodeDecodeError as exc:
        if exc.end >= len(body) and len(body) - exc.start < 4 and "end of data" in exc.reason:
            # a crashed writer can stop in the middle of a multi-byte character
            notes.append("the file ends in the middle of a UTF-8 character (cut off mid-write?); "
                         "the last bytes were dropped")
            return body[: exc.start].decode("utf-8"), notes
        offset = exc.start + skip
        line = body.count(b"\n", 0, exc.start) + 1
        raise InputError(
            path,
            f"not UTF-8 text: byte 0x{body[exc.start]:02x} at offset {offset} (line {line}) is not "
            "valid UTF-8; expected a UTF-8 (or UTF-16 with BOM) text log; convert it first, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`",
        ) from None


# -- frames: what was on screen -------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


def frames(text: str):
    """Yield (line_number, frame, ends_line) for every state a line was drawn in.

    `\\r` starts a redraw of the line (tqdm, Lightning, Keras); a run of `\\b` erases characters
    (Keras erases its whole bar, then `\\r`), so the text before the run is one frame. ANSI colour
    and cursor codes (Keras 3, tqdm's nested bars) are removed.
    """
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    for lineno, line in enumerate(text.split("\n"), 1):
        segments = line.split("\r")
        for i, seg in enumerate(segments):
            last = i == len(segments) - 1
            if "\b" in seg:
                for part, is_final in _apply_backspaces(seg):
                    if part.strip():
                        yield lineno, part, last and is_final
            elif seg.strip():
                yield lineno, seg, last


def _apply_backspaces(seg: str):
    """Frames of a segment holding backspaces: the text before each run of \\b, then the rest."""
    buf = ""
    for m in re.finditer("([^\x08]*)(\x08*)", seg):
        text, bs = m.group(1), m.group(2)
        if not text and not bs:
            continue
        buf += text
        if bs:
            if buf.strip():
                yield buf, False
            buf = buf[: max(0, len(buf) - len(bs))]
            continue
    if buf.strip():
        yield buf, True


# -- line shapes ----------------------------------------------------------------------------
_NUM = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|NaN|NAN|inf|Inf|INF|infinity|Infinity)"
_VAL = rf"(?:tensor\()?(?P<val>{_NUM})(?P<pct>%)?(?![\w.])"
_KEY_EQ = re.compile(rf"(?<![\w./\-'\"])(?P<key>[A-Za-z_][\w./\-]*)\s*=\s*{_VAL}")
_KEY_COLON = re.compile(
    rf"(?<![\w./\-'\"])(?P<key>[A-Za-z_][\w./\-]*(?: [A-Za-z_][\w./\-]*){{0,2}})\s*:\s*{_VAL}(?!:)"
)
# "Epoch 3", "epoch=3", "Epoch: 3/50", "Epoch [3/50]", "step 100", "Iter 100/1000", "batch 7/32"
_AXIS = re.compile(
    r"(?<![\w./\-])(?P<key>epoch|step|global_step|iter|iteration|batch)s?\b\s*[:=#]?\s*\[?\s*"
    r"(?P<n>\d+)(?:\s*/\s*(?P<total>\d+))?",
    re.I,
)
_HEADER = re.compile(r"^epoch\s*[:#]?\s*\[?\s*(?P<n>\d+)\s*(?:/\s*(?P<total>\d+))?\s*\]?\s*:?\s*$", re.I)
_SPLIT_WORD = re.compile(
    r"(?<![\w./\-])(train|training|val|valid|validation|eval|evaluation|test|testing)(?![\w./\-])", re.I
)
_PREFIX = re.compile(
    r"^\s*(?:\[[^\]]*\]|\d{4}-\d\d-\d\d[T ][\d:.,]+Z?|\d\d:\d\d:\d\d[\d.,]*|"
    r"(?:INFO|DEBUG|NOTICE|WARN|WARNING|ERROR|CRITICAL)\b:?|[-|:>]+(?=\s))\s*"
)
_LOG_LEVELS = {"info", "debug", "notice", "warn", "error", "critical", "root"}
# keys that are not metrics even when they sit beside one
_NOT_METRICS = {
    "v_num", "eta", "pid", "rank", "local_rank", "global_rank", "node_rank", "world_size", "seed",
    "num_workers", "workers", "batch_size", "bs", "gpu", "gpus", "device", "devices", "port",
    "version", "total", "epochs", "max_epochs", "max_steps", "num_epochs", "patience", "time",
    "elapsed", "remaining",
}
_AXIS_KEYS = {"epoch", "epochs", "step", "steps", "global_step", "iter", "iteration", "it", "batch"}
_METRIC_ROLES_KINDS = ("loss", "accuracy", "error")

# tqdm: "desc: 45%|####5     | 45/100 [00:05<00:06,  8.91it/s, loss=0.5]" (bar and % optional)
_TQDM = re.compile(
    r"^(?P<desc>.*?)(?::\s*)?(?:\s*\d{1,3}%\s*\|[^|]*\|)?\s*(?P<n>\d+)/(?P<total>\d+|\?)\s*"
    r"\[(?P<inner>[^\]]*<[^\]]*?)(?:\]|$)(?P<after>.*)$"
)
_RATE = re.compile(r"(?P<v>\d+(?:\.\d+)?)\s*(?P<a>it|its|batch|batches|step|steps)/s\b"
                   r"|(?P<w>\d+(?:\.\d+)?)\s*s/(?P<b>it|batch|step)\b")
# Keras 2: " 12/32 [=====>....] - ETA: 3s - loss: 0.52"; Keras 3: "12/32 ━━━━━━━╺━━━━ 0s 5ms/step - loss: 0.52"
_KERAS = re.compile(
    r"^\s*(?P<n>\d+)/(?P<total>\d+)\s+(?:\[[=>.]*\]|[━╸╺─ ]+)?\s*(?P<rest>(?:-\s*)?(?:ETA|\d+m?s\b|\d+:\d\d).*)$"
)
_KERAS_RATE = re.compile(r"(?P<v>\d+(?:\.\d+)?)(?P<u>us|µs|ms|s)/step\b")

_NOISE = re.compile(
    r"warning\b|warnings\.warn|^\s*\[W |deprecat|(?:GPU|TPU|HPU|IPU|MPS) available|NCCL|LOCAL_RANK|"
    r"CUDA_VISIBLE_DEVICES|cudnn|Namespace\(|^\s*(?:args|config|hparams|hyperparameters|arguments)\s*[:=]",
    re.I,
)


def _pairs(text: str) -> list[tuple[int, str, float]]:
    """(position, key, value) in reading order, `key=value` and `key: value` alike."""
    found = []
    for rx in (_KEY_EQ, _KEY_COLON):
        for m in rx.finditer(text):
            key = m.group("key")
            words = key.split(" ")
            while len(words) > 1 and words[0].lower() in _LOG_LEVELS:
                words = words[1:]
            key = " ".join(words)
            try:
                val = float(m.group("val"))
            except ValueError:
                continue
            if m.group("pct"):
                val /= 100.0  # "acc: 91.2%" is an accuracy of 0.912
            found.append((m.start(), key, val))
    found.sort()
    return found


def _is_metric_key(key: str) -> bool:
    low = key.lower()
    if low in _NOT_METRICS or low in _AXIS_KEYS:
        return False
    return True


def _has_named_metric(keys) -> bool:
    """At least one key is a loss/accuracy/error/lr/grad-norm: the line is about training."""
    for k in keys:
        role = infer_role(k)
        if role in ("lr", "grad_norm") or role.rsplit("_", 1)[-1] in _METRIC_ROLES_KINDS:
            return True
    return False


def _qualify(keys_vals, text_before: str):
    """`Epoch 3 Val - Loss: 0.4` -> `Val Loss`: a split word before the pairs names their split."""
    words = _SPLIT_WORD.findall(text_before)
    if not words:
        return keys_vals
    word = words[-1]
    out = []
    for k, v in keys_vals:
        has_split = any(t in _SPLIT_TOKENS for t in _tokens(k))
        kind = infer_role(k).rsplit("_", 1)[-1]
        out.append((f"{word} {k}" if not has_split and kind in _METRIC_ROLES_KINDS else k, v))
    return out


def _strip_prefix(line: str) -> str:
    prev = None
    while prev != line:
        prev, line = line, _PREFIX.sub("", line, count=1)
    return line


def _rate(text: str) -> float | None:
    m = _RATE.search(text)
    if not m:
        return None
    if m.group("v") is not None:
        return float(m.group("v"))
    sec = float(m.group("w"))
    return 1.0 / sec if sec > 0 else None


# -- the parser -----------------------------------------------------------------------------
@dataclass
class Parsed:
    points: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metric_frames: int = 0  # frames that held metrics (for sniffing), epoch points or not
    steps_per_epoch: int | None = None  # the training bar's total ("120/97000"): epoch time and ETA


@dataclass
class _Bar:
    """One tqdm/Lightning progress bar stream."""

    offset: float = 0.0  # steps done in earlier epochs
    epoch: float = float("nan")
    total: int | None = None
    last_n: int = -1
    completed: bool = False
    epoch_level: dict[str, float] = field(default_factory=dict)
    last_step: float = float("nan")
    prev: dict[str, float] = field(default_factory=dict)  # the previous frame's per-step metrics
    before: dict[str, float] = field(default_factory=dict)  # metrics when the counter moved on
    stale_here: bool = False  # every frame at this counter repeats the previous counter's metrics
    zero_fresh: bool = False  # a new value at counter 0: set_postfix() before the update (plain loop)


@dataclass
class _KerasEpoch:
    epoch: float
    frame: tuple | None = None  # (n, total, metrics, rate) of the last n == total frame
    last_n: int = -1
    closed: bool = False  # the epoch-end line was written; later frames are evaluate()/predict()
    partial: tuple | None = None
    ignored: int = 0


def _epoch_level(name: str) -> bool:
    """Metrics a progress bar shows once per epoch (validation, `*_epoch`), not per batch."""
    split = infer_role(name).split("_", 1)[0]
    return split in ("val", "test") or name.lower().endswith("_epoch")


def parse(text: str) -> Parsed:
    out = Parsed()
    pts = out.points
    state = {"epoch": float("nan"), "running": 0, "last_step": None}
    bar = _Bar()
    keras: _KerasEpoch | None = None
    keras_offset = 0.0
    in_tb = False
    skipped_eval = 0

    def add(name, step, epoch, value, replace_same_step=False):
        lst = pts.setdefault(name, [])
        if replace_same_step and lst and lst[-1][0] == step:
            lst[-1] = (step, epoch, value)
        else:
            lst.append((step, epoch, value))

    def flush_keras():
        nonlocal keras_offset, skipped_eval
        if keras is None:
            return
        if keras.frame is not None:
            n, total, metrics, rate = keras.frame
            keras_offset += total
            for k, v in metrics:
                add(k, keras_offset, keras.epoch, v)
            if rate is not None:
                add(THROUGHPUT, keras_offset, keras.epoch, rate)
        elif keras.partial is not None:
            n, total = keras.partial
            out.notes.append(f"the log ends inside epoch {_fmt(keras.epoch)} (batch {n}/{total}) before "
                             "its end-of-epoch line; that epoch has no values (crashed or stopped run?)")
        skipped_eval += keras.ignored

    def end_bar():
        # A plain loop calls set_postfix() before tqdm counts the batch (a fresh value at counter
        # 0), so the final counter that close() draws only repeats the step before: not a point.
        # Lightning counts first, then sets the postfix: its last counter is a real step.
        if bar.zero_fresh and bar.stale_here and bar.last_n > 0:
            for k in bar.prev:
                if pts.get(k) and pts[k][-1][0] == bar.last_step:
                    pts[k].pop()
        flush_bar_epoch()

    def flush_bar_epoch():
        # validation metrics appear on the bar's last frame of an epoch and stay on screen
        # during the next one: record them once, when the epoch's bar completed
        if bar.completed or bar.total is None:
            for k, v in bar.epoch_level.items():
                add(k, bar.last_step, bar.epoch, v)
        bar.epoch_level.clear()

    for _lineno, frame, ends_line in frames(text):
        stripped = frame.strip()
        if in_tb:
            if frame[:1].isspace() or stripped.startswith(("During handling", "The above exception")):
                continue
            in_tb = False
            continue  # the exception line itself
        if stripped.startswith("Traceback (most recent call last)"):
            in_tb = True
            continue
        if _NOISE.search(frame):
            continue

        body = _strip_prefix(frame)
        head = _HEADER.match(body)
        if head:  # "Epoch 3/50": the epoch of what follows
            flush_keras()
            ep = float(head.group("n"))
            keras = _KerasEpoch(ep)
            state["epoch"] = ep
            continue

        km = _KERAS.match(body)
        if km and _TQDM.match(body) is None:
            n, total = int(km.group("n")), int(km.group("total"))
            metrics = [(k, v) for _, k, v in _pairs(km.group("rest")) if _is_metric_key(k)]
            if not metrics:
                continue
            out.metric_frames += 1
            if keras is None:
                keras = _KerasEpoch(state["epoch"] if state["epoch"] == state["epoch"] else 1.0)
            if keras.closed or n < keras.last_n:
                keras.closed = True  # model.evaluate()/predict() after the epoch's line
                keras.ignored += 1
                continue
            keras.last_n = n
            if n >= total:
                rm = _KERAS_RATE.search(km.group("rest"))
                rate = None
                if rm:
                    sec = float(rm.group("v")) * {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}[rm.group("u")]
                    rate = 1.0 / sec if sec > 0 else None
                keras.frame = (n, total, metrics, rate)
                keras.closed = ends_line
            else:
                keras.partial = (n, total)
            continue

        tm = _TQDM.match(body)
        if tm:
            desc = tm.group("desc")
            if re.search(r"valid|\bval\b|test|predict|sanity", desc, re.I):
                continue  # Lightning's validation/test bars: no metrics, and not the training step
            n = int(tm.group("n"))
            total = None if tm.group("total") == "?" else int(tm.group("total"))
            em = re.search(r"\bepoch\s*[:#]?\s*(\d+)", desc, re.I)
            inner = tm.group("inner")
            metrics = [(k, v) for _, k, v in _pairs(inner) if _is_metric_key(k)]
            if not metrics and not em:
                continue  # a bar of the user's own (evaluation, data loading): not training steps
            ep = float(em.group(1)) if em else bar.epoch
            if (em and ep != bar.epoch) or n < bar.last_n:  # a new epoch's bar
                end_bar()
                if bar.last_n > 0:  # Lightning resets the bar to 0 before renaming it "Epoch N+1"
                    bar.offset += bar.total if bar.total is not None else bar.last_n
                bar.completed = False
                bar.zero_fresh = False
            step_metrics = {k: v for k, v in metrics if not _epoch_level(k)}
            same = step_metrics == bar.prev
            if n != bar.last_n:
                bar.before = bar.prev
            bar.stale_here = step_metrics == bar.before and (n != bar.last_n or bar.stale_here)
            bar.prev = step_metrics
            bar.epoch, bar.total, bar.last_n = ep, total, n
            if total is not None and n >= total:
                bar.completed = True
            if metrics:
                out.metric_frames += 1
                if total is not None:
                    out.steps_per_epoch = total
            if n == 0:
                # no batch done yet: Lightning's reset frame still shows the last epoch's postfix
                # (unchanged: skip it); a plain loop's set_postfix() at 0 shows the first batch
                if same or not step_metrics:
                    continue
                bar.zero_fresh = True
            rate = _rate(inner) if n else None
            step = bar.offset + n
            bar.last_step = step
            for k, v in metrics:
                if _epoch_level(k):
                    bar.epoch_level[k] = v
                else:
                    add(k, step, ep, v, replace_same_step=True)
            if rate is not None and (metrics or em):
                add(THROUGHPUT, step, ep, rate, replace_same_step=True)
            continue

        # a plain line: pairs, an axis, maybe a split word
        pairs = _pairs(body)
        if not pairs:
            continue
        axes = {m.group("key").lower(): m for m in _AXIS.finditer(body)}
        found = [(pos, k, v) for pos, k, v in pairs if _is_metric_key(k)]
        metrics = [(k, v) for _, k, v in found]
        if not metrics or not _has_named_metric([k for k, _ in metrics]):
            continue
        metrics = _qualify(metrics, body[: found[0][0]])
        out.metric_frames += 1
        epoch = state["epoch"]
        if "epoch" in axes:
            epoch = float(axes["epoch"].group("n"))
            state["epoch"] = epoch
        step = None
        for key in ("global_step", "step", "iteration", "iter"):
            if key in axes:
                step = float(axes[key].group("n"))
                break
        if step is None and "batch" in axes and axes["batch"].group("total") and epoch == epoch:
            step = epoch * int(axes["batch"].group("total")) + int(axes["batch"].group("n"))
        if step is not None:
            state["last_step"] = step
        elif state["last_step"] is not None:
            step = state["last_step"]  # e.g. a validation line after the training steps
        else:
            step = None
        rec = (step, epoch, metrics)
        state.setdefault("records", []).append(rec)
        state["running"] += 1

    flush_keras()
    end_bar()
    if skipped_eval:
        out.notes.append(f"{skipped_eval} Keras progress line(s) after an epoch's final line were "
                         "ignored (model.evaluate()/predict() output?)")
    _place_plain_records(state.get("records", []), add)
    return out


def _place_plain_records(records, add) -> None:
    """Give step-less plain lines a step: the epoch when every metric appears once an epoch,
    else their running count."""
    stepless = [r for r in records if r[0] is None]
    by_epoch = stepless and all(r[1] == r[1] for r in stepless)
    if by_epoch:
        seen = set()
        for _, ep, metrics in stepless:
            for k, _v in metrics:
                if (k, ep) in seen:
                    by_epoch = False
                    break
                seen.add((k, ep))
            if not by_epoch:
                break
    count = 0
    for step, ep, metrics in records:
        if step is None:
            step = ep if by_epoch else count
            count += 1
        for k, v in metrics:
            add(k, float(step), ep, v)


def _fmt(x: float) -> str:
    return str(int(x)) if x == x and float(x).is_integer() else str(x)
