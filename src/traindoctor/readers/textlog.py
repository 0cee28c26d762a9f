"""Plain-text training logs: stdout captures, `nohup.out`, `train.log`, SLURM `.out` files.

The last reader asked: it gets whatever no structured format claimed. It understands

* `key=value` and `key: value` pairs (`step=100 loss=0.41 lr=1e-4`, `Train Loss: 0.5 | Val Acc: 0.8`);
* `key value` pairs on a line that names its step or epoch: nanoGPT's
  `iter 100: loss 4.2134, time 120.52ms, mfu 12.34%` and `step 250: train loss 3.1, val loss 3.2`,
  `[epoch 0 | step 20] loss 2.3151`, fairseq's `| valid on 'valid' subset | loss 3.2 | ... |
  num_updates 1000`, PyTorch's word_language_model `| epoch 1 | 200/2983 batches | ... | loss 5.2`;
  a bare `loss 0.41` in prose is too loose to trust and is not read;
* a split word (train/val/valid/validation/eval/test) qualifies the metric keys after it on the
  line (`Train Loss: 9.1 | Token Acc: 0.07 | Val Loss: 9.0 | Token Acc: 0.066`: the second Token Acc
  is the validation accuracy), and a header line such as `Evaluation Results:` the lines below it;
* `Epoch 3/50` headers that give the epoch of the lines below them; a step counted inside the
  epoch (`Epoch [2/10], Step [100/600]`, `200/2983 batches`) becomes a global step,
  (epoch - first epoch) * 600 + 100, when the counter restarts at each epoch;
* tqdm bars with a postfix (`45/100 [00:05<00:06, 8.91it/s, loss=0.5]`) and Lightning's progress
  bar (`Epoch 0: 120/5000 [01:02<43:10:00, 0.82it/s, v_num=3, train/total_loss=2.400]`): every
  redraw with a new batch counter is a point, an identical redraw is not; text printed right after
  a bar (no newline between) is read as its own line;
* Keras `model.fit` output, progress bars drawn with `\\b` and `\\r`: only each epoch's final
  line (`32/32 [====] - 1s 10ms/step - loss: 0.41 - val_loss: 0.52`) is an epoch point;
* fairseq's `--log-format json` lines (`{"epoch": 1, "loss": "9.5", "num_updates": "100"}`).

Throughput (`it/s`, `s/it`, Keras `ms/step`) becomes the series `it_per_sec` (role `time`).
Warnings, tracebacks, banners, `name = value` config dumps and `Final`/`Best` summary lines are
skipped; a line counts only when at least one of its keys names a metric (a loss, accuracy, error,
lr or grad norm). The step of a line is its `step`/`iter`/`global_step`/`num_updates`, else the
last one seen, else its epoch (when each metric appears once an epoch) or its running count.

Big logs: lines are grouped by template (the line with its numbers blanked out, `_textfast`) and
the per-line parser runs once per template; the numbers of the lines of a plain metric template
are parsed with numpy. Progress bars, headers and anything stateful go through the per-line
parser. A frame longer than MAX_FRAME characters, or holding a run of 64 digits, is skipped and
counted: the patterns stay linear and a 100,000-digit line costs nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import _SPLIT_TOKENS, Series
from ..history import _tokens as _history_tokens
from ..history import infer_role as _infer_role
from . import _textfast
from ._decode import sniff_encoding

FORMAT = "text"

_EXTS = {".log", ".txt", ".out", ".err"}
_DOC_EXTS = {".md", ".rst"}  # notes that may hold a pasted log: read only when they clearly do
SNIFF_BYTES = 64 * 1024
THROUGHPUT = "it_per_sec"
MAX_FRAME = 8192  # characters; no training line is longer, and the patterns stay cheap below it
_EXAMPLES = 3

EXPECTED_SHAPES = (
    "`key=value` or `key: value` pairs naming a metric (loss=0.41, val_acc: 0.9), "
    "`step 100: loss 0.41`-style lines, `Epoch N Train - Loss: x`, tqdm/Lightning progress bars "
    "with metrics in the postfix, or Keras model.fit output"
)


# Keys repeat on every line: their role and name tokens are worked out once (bounded caches).
infer_role = lru_cache(maxsize=8192)(_infer_role)


@lru_cache(maxsize=8192)
def _tokens(name: str) -> tuple[str, ...]:
    return tuple(_history_tokens(name))


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
        ext = f.suffix.lower()
        if (ext in _EXTS or ext in _DOC_EXTS or f.suffix == "") and _sniff(f, 3 if ext in _DOC_EXTS else 1):
            out.append(f)
    return out


def _sniff(path: Path, need: int = 1) -> bool:
    """True when the first and last 64 KB decode as text and hold `need` metric lines: the tail
    too, because a log can open with a megabyte of progress bars before its first metric line.
    Documents (.md) must hold `need` metric lines with their own step or epoch."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
            fh.seek(0, 2)
            size = fh.tell()
            tail = b""
            if size > 2 * SNIFF_BYTES:
                fh.seek(size - SNIFF_BYTES)
                tail = fh.read(SNIFF_BYTES)
    except OSError:
        return False
    try:
        d = sniff_encoding(head, path)
    except InputError:
        return False
    texts = [head[d.start:d.end].decode(d.encoding, errors="replace")]
    if tail and not d.encoding.startswith("utf-16"):
        # the tail starts mid-line, maybe mid-character: from its first newline on
        texts.append(tail[tail.find(b"\n") + 1:].decode(d.encoding, errors="replace"))
    for text in texts:
        parsed = parse(text)
        if (parsed.metric_frames if need == 1 else parsed.own_axis_lines) >= need:
            return True
    return False


# -- reading --------------------------------------------------------------------------------
def read(unit: Path):
    path = Path(unit)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror}); check its permissions") from None
    return read_bytes(path, raw)


def read_bytes(path: Path, raw: bytes):
    """`read` of a file whose bytes are already in memory (`traindoctor watch` keeps the complete
    lines of a growing log and reads only what was appended)."""
    from . import Part

    data, notes = _utf8(path, raw)
    del raw
    sc = _scan(data)
    empty = not sc.groups and all(not line.strip() for _, line in sc.slow_lines)
    cut = bool(data) and not data.endswith(b"\n")
    del data  # the lines are in the scan: the bytes need not stay while the series are built
    parsed = _parse_scan(sc)
    del sc
    if not parsed.points:
        if empty:
            raise InputError(path, f"the file is empty; expected a training log with {EXPECTED_SHAPES}")
        raise InputError(path, f"no metric lines found in this text file; expected {EXPECTED_SHAPES}"
                               + _examples_clause(parsed))
    series = {name: _series(name, pts) for name, pts in parsed.points.items()}
    # The bar's total is how long an epoch is; the throughput check turns it into hours per epoch.
    hparams = {"steps_per_epoch": parsed.steps_per_epoch} if parsed.steps_per_epoch else {}
    notes = notes + parsed.notes + _stats_notes(parsed)
    if cut and parsed.last_unread:
        # the last line is a fragment: say where the file stops, as the other readers do
        notes.append(f"the file ends mid-line (cut off mid-write?): line {parsed.lines}, "
                     f"{parsed.last_unread!r}, was not read")
    return Part(series, path.parent, FORMAT, hparams=hparams,
                notes=[f"{path.name}: {n}" for n in notes], stats=parsed.stats())


def _utf8(path: Path, raw: bytes) -> tuple[bytes, list[str]]:
    """The file's text as UTF-8 bytes (what the template scan reads), and notes on decoding."""
    d = sniff_encoding(raw, path)
    if d.encoding == "utf-8":
        data = raw if (d.start == 0 and d.end is None) else raw[d.start:d.end]
    else:
        data = raw[d.start:d.end].decode(d.encoding, errors="replace").encode("utf-8")
    return data, list(d.notes)


def _series(name: str, pts) -> Series:
    steps, epochs, values = pts
    role = "time" if name == THROUGHPUT else ""
    return Series(name, steps, values, epochs, role=role)


def _examples_clause(parsed) -> str:
    if not parsed.examples:
        return ""
    return "; lines with numbers that were not understood, e.g. " + "; ".join(
        repr(e) for _, e in parsed.examples)


def _stats_notes(parsed) -> list[str]:
    notes = []
    if parsed.too_long:
        notes.append(f"{parsed.too_long} line(s) longer than {MAX_FRAME} characters or holding a "
                     "64-digit number were skipped")
    if parsed.bad_numbers:
        notes.append(f"{parsed.bad_numbers} line(s) of a known shape held a number that does not "
                     "parse (e.g. `1.2.3`); they were skipped")
    return notes


# -- frames: what was on screen -------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


def frames(text: str):
    """Yield (line_number, frame, ends_line) for every state a line was drawn in (1-based lines)."""
    yield from _line_frames(enumerate(text.replace("\r\n", "\n").split("\n"), 1))


def _line_frames(lines):
    """`\\r` starts a redraw of the line (tqdm, Lightning, Keras); a run of `\\b` erases characters
    (Keras erases its whole bar, then `\\r`), so the text before the run is one frame. ANSI colour
    and cursor codes (Keras 3, tqdm's nested bars) are removed."""
    for lineno, line in lines:
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        if line.endswith("\r"):
            line = line[:-1]
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
# a number followed by "/N" is a count out of N (`Accuracy: 322/1014=0.3176`), not the metric
_VAL = rf"(?:tensor\()?(?P<val>{_NUM})(?P<pct>%)?(?![\w.])(?!\s*/\s*\d)"
_KEY_EQ = re.compile(rf"(?<![\w./\-'\"])(?P<key>[A-Za-z_][\w./\-]*)\s*=\s*{_VAL}")
_KEY_COLON = re.compile(
    rf"(?<![\w./\-'\"])(?P<key>[A-Za-z_][\w./\-]*(?: [A-Za-z_][\w./\-]*){{0,2}})\s*:\s*{_VAL}(?!:)"
)
# `loss 4.2134`: read only on a line that names its step or epoch (nanoGPT, fairseq, ...)
_KEY_SPACE = re.compile(rf"(?<![\w./\-'\"])(?P<key>[A-Za-z_][\w./\-]*)[ \t]+{_VAL}")
# "Epoch 3", "epoch=3", "Epoch: 3/50", "Epoch [3/50]", "step 100", "Iter 100/1000", "batch 7/32",
# "ep 3/25", "num_updates 1000"; a count is at most 12 digits (a 100,000-digit "step" is noise)
_AXIS = re.compile(
    r"(?<![\w./\-])(?P<key>epochs?|ep|steps?|global_step|iters?|iterations?|batch(?:es)?|num_updates|"
    r"updates)\b\s*[:=#]?\s*\[?\s*(?P<n>\d{1,12})(?![\d.eE])(?:\s*/\s*(?P<total>\d{1,12})(?!\d))?",
    re.I,
)
# "200/ 2983 batches" (PyTorch examples): a counter inside the epoch
_AXIS_AFTER = re.compile(r"(?<![\w./])(?P<n>\d{1,12})\s*/\s*(?P<total>\d{1,12})\s+(?:batches|steps|iters)\b", re.I)
_AXIS_NAME = {"epoch": "epoch", "epochs": "epoch", "ep": "epoch", "global_step": "global_step",
              "num_updates": "num_updates", "step": "step", "steps": "step", "iteration": "iteration",
              "iterations": "iteration", "iter": "iter", "iters": "iter", "updates": "updates",
              "batch": "batch", "batches": "batch"}
_STEP_KEYS = ("global_step", "num_updates", "step", "iteration", "iter", "updates")
_HEADER = re.compile(r"^epoch\s*[:#]?\s*\[?\s*(?P<n>\d{1,12})\s*(?:/\s*(?P<total>\d{1,12}))?\s*\]?\s*:?\s*$", re.I)
_SPLIT_WORD = re.compile(
    r"(?<![\w./\-])(train|training|val|valid|validation|eval|evaluation|test|testing)(?![\w./\-])", re.I
)
_SUMMARY = re.compile(r"(?<![\w./\-])(?:final|best)(?![\w./\-])", re.I)
# `lr_decay_iters = 10000` alone on a line: a config dump (nanoGPT prints its config this way)
_ASSIGN = re.compile(r"^\s*[A-Za-z_][\w.]*\s+=\s+\S+\s*$")
_LONG_DIGITS = re.compile(r"\d{64}")
_SETTING = re.compile(r"^\s*[A-Za-z_][\w.\-/]*\s*[:=]\s*\S")
_CONFIG_HEADER = re.compile(
    r"(?<![\w])(?:config|configuration|args|arguments|hparams|hyper-?parameters|settings|options)(?![\w])", re.I)
_PREFIX = re.compile(
    r"^\s*(?:\[[^\]\d]*\]|\[[\d\-:.,T Z/]+\]|\d{4}-\d\d-\d\d[T ][\d:.,]+Z?|\d\d:\d\d:\d\d[\d.,]*|"
    r"(?:INFO|DEBUG|NOTICE|WARN|WARNING|ERROR|CRITICAL)\b(?::[\w.]+:|:)?|[-|:>]+(?=\s))\s*"
)
_LOG_LEVELS = {"info", "debug", "notice", "warn", "error", "critical", "root"}
# keys that are not metrics even when they sit beside one
_NOT_METRICS = {
    "v_num", "eta", "pid", "rank", "local_rank", "global_rank", "node_rank", "world_size", "seed",
    "num_workers", "workers", "batch_size", "bs", "gpu", "gpus", "device", "devices", "port",
    "version", "total", "epochs", "max_epochs", "max_steps", "num_epochs", "patience", "time",
    "elapsed", "remaining",
}
_AXIS_KEYS = {"epoch", "epochs", "ep", "step", "steps", "global_step", "iter", "iteration", "it", "batch",
              "num_updates", "updates"}
_METRIC_ROLES_KINDS = ("loss", "accuracy", "error")

# tqdm: "desc: 45%|####5     | 45/100 [00:05<00:06,  8.91it/s, loss=0.5]" (bar and % optional)
_TQDM = re.compile(
    r"^(?P<desc>.*?)(?::\s*)?(?:\s*\d{1,3}%\s*\|[^|]*\|)?\s*(?P<n>\d{1,12})/(?P<total>\d{1,12}|\?)\s*"
    r"\[(?P<inner>[^\]]*<[^\]]*?)(?:\]|$)(?P<after>.*)$"
)
_RATE = re.compile(r"(?P<v>\d+(?:\.\d+)?)\s*(?P<a>it|its|batch|batches|step|steps)/s\b"
                   r"|(?P<w>\d+(?:\.\d+)?)\s*s/(?P<b>it|batch|step)\b")
# Keras 2: " 12/32 [=====>....] - ETA: 3s - loss: 0.52"; Keras 3: "12/32 ━━━━━━━╺━━━━ 0s 5ms/step - loss: 0.52"
_KERAS = re.compile(
    r"^\s*(?P<n>\d{1,12})/(?P<total>\d{1,12})\s+(?:\[[=>.]*\]|[━╸╺─ ]+)?\s*(?P<rest>(?:-\s*)?(?:ETA|\d+m?s\b|\d+:\d\d).*)$"
)
_KERAS_RATE = re.compile(r"(?P<v>\d+(?:\.\d+)?)(?P<u>us|µs|ms|s)/step\b")

_NOISE = re.compile(
    r"^\s*[WEF]\d{4} \d\d:\d\d:\d\d|warning\b|warnings\.warn|^\s*\[W |deprecat|(?:GPU|TPU|HPU|IPU|MPS) available|NCCL|LOCAL_RANK|"
    r"CUDA_VISIBLE_DEVICES|cudnn|Namespace\(|^\s*(?:args|config|hparams|hyperparameters|arguments)\s*[:=]",
    re.I,
)


@dataclass(frozen=True)
class _Num:
    value: float
    start: int  # position in the frame (characters)
    end: int
    scale: float = 1.0  # 0.01 for "91.5%": value is the text's number times this


def _pairs(text: str, spaced: bool = False) -> list[tuple[int, str, _Num]]:
    """(key position, key, number) in reading order: `key=value`, `key: value`, and with
    `spaced` also `key value`. A value claimed by an earlier pattern is not read twice."""
    found = []
    taken = set()
    for rx in (_KEY_EQ, _KEY_COLON, _KEY_SPACE) if spaced else (_KEY_EQ, _KEY_COLON):
        for m in rx.finditer(text):
            if m.start("val") in taken:
                continue
            key = m.group("key")
            words = key.split(" ")
            while len(words) > 1 and words[0].lower() in _LOG_LEVELS:
                words = words[1:]
            key = " ".join(words)
            try:
                val = float(m.group("val"))
            except ValueError:
                continue
            scale = 0.01 if m.group("pct") else 1.0  # "acc: 91.2%" is an accuracy of 0.912
            taken.add(m.start("val"))
            found.append((m.end("key") - len(key), key, _Num(val * scale, m.start("val"), m.end("val"), scale)))
    found.sort(key=lambda x: x[0])
    return found


def _is_metric_key(key: str) -> bool:
    low = key.lower()
    if low in _NOT_METRICS or low in _AXIS_KEYS:
        return False
    # a running best (fairseq's best_loss, "best_acc") restates an earlier value: not a measurement
    return _tokens(key)[:1] != ("best",)


def _has_named_metric(keys) -> bool:
    """At least one key is a loss/accuracy/error/lr/grad-norm: the line is about training."""
    for k in keys:
        role = infer_role(k)
        if role in ("lr", "grad_norm") or role.rsplit("_", 1)[-1] in _METRIC_ROLES_KINDS:
            return True
    return False


def _qualify(found, text: str, block: str | None = None):
    """A split word names the split of the metric keys after it on the line (`Val Loss: 9.0 |
    Token Acc: 0.066` -> `Val Token Acc`); a block header's word those of the lines below it."""
    words = [(m.start(), m.group(1)) for m in _SPLIT_WORD.finditer(text)]
    out = []
    for pos, k, num in found:
        word = next((w for p, w in reversed(words) if p < pos), block)
        has_split = any(t in _SPLIT_TOKENS for t in _tokens(k))
        kind = infer_role(k).rsplit("_", 1)[-1]
        qualify = word and not has_split and kind in _METRIC_ROLES_KINDS
        out.append((f"{word} {k}" if qualify else k, num))
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


def _axes(body: str) -> dict[str, tuple[_Num, _Num | None]]:
    out = {}
    for m in _AXIS.finditer(body):
        name = _AXIS_NAME[m.group("key").lower()]
        total = m.group("total")
        out.setdefault(name, (_Num(float(m.group("n")), m.start("n"), m.end("n")),
                              _Num(float(total), m.start("total"), m.end("total")) if total else None))
    if "batch" not in out:
        m = _AXIS_AFTER.search(body)
        if m:
            out["batch"] = (_Num(float(m.group("n")), m.start("n"), m.end("n")),
                            _Num(float(m.group("total")), m.start("total"), m.end("total")))
    return out


@dataclass(frozen=True)
class _Plain:
    """What one plain line says: its own step/epoch (if any) and its metrics."""

    step: _Num | None
    total: _Num | None      # the step counts inside an epoch of `total` steps ("Step [100/600]")
    in_epoch: bool          # `batch 7/32`: always inside the epoch; a step only if it restarts
    epoch: _Num | None
    metrics: tuple[tuple[str, _Num], ...]


def _json_line(body: str):
    """fairseq `--log-format json` (and any one-line JSON object): numbers and numeric strings."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):  # `{[[[[...` 8000 deep: not a log line
        return None
    if not isinstance(obj, dict):
        return None
    pairs, axes = [], {}
    for k, v in obj.items():
        if isinstance(v, bool) or not isinstance(k, str):
            continue
        try:
            val = float(v) if isinstance(v, (int, float, str)) and len(str(v)) <= 32 else None
        except ValueError:
            val = None
        if val is None:
            continue
        low = k.lower()
        head, _, rest = low.partition("_")
        # fairseq prefixes every key of a tagged print with the tag: `valid_num_updates`
        name = _AXIS_NAME.get(low) or (_AXIS_NAME.get(rest) if head in _SPLIT_TOKENS else None)
        if name and name != "batch":
            axes.setdefault(name, (_Num(val, -1, -1), None))
        else:
            pairs.append((0, k, _Num(val, -1, -1)))
    return pairs, axes


def _plain(body: str, block: str | None = None):
    """A plain line -> _Plain, or a reason it is not one: None (no metrics), "config", "summary"."""
    stripped = body.strip()
    brace = stripped.find("{") if stripped.endswith("}") else -1
    got = _json_line(stripped[brace:]) if brace >= 0 and len(stripped) - brace > 2 else None
    if got is not None:  # `train_inner | {"epoch": 1, "loss": "9.5", ...}`
        pairs, axes = got
    else:
        axes = _axes(body)
        pairs = _pairs(body, spaced=bool(axes))
    if not pairs:
        return None
    found = [(pos, k, num) for pos, k, num in pairs if _is_metric_key(k)]
    if not found or not _has_named_metric([k for _, k, _ in found]):
        return None
    if not axes and len(pairs) == 1 and _ASSIGN.match(body):
        return "config"
    if _SUMMARY.search(body[: found[0][0]]):
        return "summary"
    metrics = _qualify(found, body, None if axes else block)
    step = total = None
    in_epoch = False
    for key in _STEP_KEYS:
        if key in axes:
            step, total = axes[key]
            break
    if step is None and "batch" in axes and axes["batch"][1] is not None:
        step, total = axes["batch"]
        in_epoch = True
    epoch = axes["epoch"][0] if "epoch" in axes else None
    return _Plain(step, total, in_epoch, epoch, tuple(metrics))


# -- the parser -----------------------------------------------------------------------------
@dataclass
class Parsed:
    # name -> (steps, epochs, values) arrays
    points: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metric_frames: int = 0  # frames that held metrics (for sniffing), epoch points or not
    steps_per_epoch: int | None = None  # the training bar's total ("120/97000"): epoch time and ETA
    lines: int = 0             # lines in the file
    understood: int = 0        # lines that gave a point, an epoch or a step
    not_understood: int = 0    # lines with a number that were neither read nor known noise
    examples: list[tuple[int, str]] = field(default_factory=list)  # (line, text) of such lines
    too_long: int = 0
    bad_numbers: int = 0
    own_axis_lines: int = 0    # metric lines that carry their own step or epoch
    last_unread: str = ""      # the last line, when it was not understood (a cut-off fragment?)

    def stats(self) -> dict:
        return {"lines": self.lines, "understood": self.understood,
                "not_understood": self.not_understood,
                "examples": [{"line": n, "text": t} for n, t in self.examples]}


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


# -- fast path: one decision per line template ------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    """How to read every line of one template: token ordinals, or constants from the template."""

    ntok: int
    slots: tuple[int, ...]
    step: tuple | None      # ("slot", i) or ("const", value)
    total: tuple | None
    in_epoch: bool
    epoch: tuple | None
    metrics: tuple[tuple[str, tuple], ...]


def _accept(line: bytes, tok_starts: np.ndarray, tok_ends: np.ndarray) -> _Spec | None:
    """The per-line parser's verdict on a template's first line, as token ordinals; None sends
    every line of the template through the per-line parser (bars, headers, anything stateful,
    anything not a plain metric line with its own step or epoch)."""
    if b"\r" in line.rstrip(b"\r") or b"\x08" in line or b"\x1b" in line or len(line) > MAX_FRAME:
        return None
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    if _NOISE.search(text) or text.lstrip().startswith("Traceback"):
        return None
    body = _strip_prefix(text)
    if not body.strip() or _HEADER.match(body) or _KERAS.match(body) or _TQDM.match(body) or _LONG_DIGITS.search(body):
        return None
    rec = _plain(body)
    if not isinstance(rec, _Plain) or (rec.step is None and rec.epoch is None):
        return None
    offset = len(text) - len(body)
    ascii_ = text.isascii()
    starts = {int(s): i for i, s in enumerate(tok_starts.tolist())}
    ends = tok_ends.tolist()
    slots: list[int] = []

    def where(num: _Num | None):
        if num is None:
            return None
        if num.start < 0:
            raise ValueError  # a JSON line: its numbers are not at fixed tokens
        s, e = num.start + offset, num.end + offset
        if not ascii_:
            s, e = len(text[:s].encode("utf-8")), len(text[:e].encode("utf-8"))
        i = starts.get(s)
        if i is None:
            return ("const", num.value)  # a literal of the template (nan, a total after "/")
        if ends[i] != e:
            raise ValueError  # the token and the pattern disagree on where the number ends
        slots.append(i)
        return ("slot", len(slots) - 1, num.scale)

    try:
        spec = _Spec(len(ends), (), where(rec.step), where(rec.total), rec.in_epoch, where(rec.epoch),
                     tuple((k, where(n)) for k, n in rec.metrics))
    except ValueError:
        return None
    return _Spec(spec.ntok, tuple(slots), spec.step, spec.total, spec.in_epoch, spec.epoch, spec.metrics)


class _Records:
    """Plain-line records in blocks: a block is rows (line, step, total, in_epoch, epoch) and,
    per metric, its values on all rows (a template's lines) or on some rows (per-line parser)."""

    COLS = ("line", "step", "total", "in_epoch", "epoch")

    def __init__(self):
        self.blocks: list[tuple[dict[str, np.ndarray], list[tuple[str, np.ndarray | None, np.ndarray]]]] = []
        self.rows: list[tuple[float, ...]] = []          # the per-line parser's rows
        self.row_vals: dict[str, tuple[list[int], list[float]]] = {}
        self.dropped: set[float] = set()                 # lines whose values are forgotten

    def add_plain(self, line: int, rec: _Plain):
        def v(n):
            return (np.nan if n is None else n.value)
        self.rows.append((float(line), v(rec.step), v(rec.total), float(rec.in_epoch), v(rec.epoch)))
        r = len(self.rows) - 1
        for name, num in rec.metrics:
            idx, vals = self.row_vals.setdefault(name, ([], []))
            idx.append(r)
            vals.append(num.value)

    def add_group(self, g: _textfast.FastGroup) -> np.ndarray:
        """A block for the good lines of one template; returns the lines that were skipped."""
        spec: _Spec = g.spec
        ok = g.ok
        every = bool(ok.all())
        lines = g.lines if every else g.lines[ok]
        vals = g.values if every else g.values[ok]

        def col(ref):
            if ref is None:
                return np.full(lines.size, np.nan)
            if ref[0] == "const":
                return np.full(lines.size, float(ref[1]))
            return vals[:, ref[1]] if ref[2] == 1.0 else vals[:, ref[1]] * ref[2]

        cols = {"line": (lines + 1).astype(np.float64), "step": col(spec.step), "total": col(spec.total),
                "in_epoch": np.full(lines.size, float(spec.in_epoch)), "epoch": col(spec.epoch)}
        self.blocks.append((cols, [(name, None, col(ref)) for name, ref in spec.metrics]))
        return g.lines[~ok]

    def all_blocks(self):
        blocks = list(self.blocks)
        if self.rows:
            arr = np.asarray(self.rows, dtype=np.float64).reshape(-1, 5)
            cols = {k: arr[:, i] for i, k in enumerate(self.COLS)}
            blocks.append((cols, [(n, np.asarray(i, dtype=np.int64), np.asarray(v, dtype=np.float64))
                                  for n, (i, v) in self.row_vals.items()]))
        return blocks


def _place(records: _Records, epoch_events: list[tuple[int, float]]):
    """Steps and epochs for every plain-line value, all at once (numpy, no per-line Python).

    * a line without an epoch has the epoch of the last header or epoch-bearing line above it;
    * a step counted inside the epoch (it restarts when the epoch moves on, or it is a
      `batch i/N` counter) becomes (epoch - first epoch) * N + step, the first epoch being 0 or 1;
    * a line without a step has the last step above it (a validation line after the training
      steps); lines before any step are placed at their epoch when every metric appears once an
      epoch, else at their running count.
    """
    blocks = records.all_blocks()
    if not blocks:
        return {}
    sizes = [b[0]["line"].size for b in blocks]
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    col = {k: (blocks[0][0][k] if len(blocks) == 1 else np.concatenate([b[0][k] for b in blocks]))
           for k in _Records.COLS}
    line = col["line"]
    if line.size > 1 and not np.all(line[1:] > line[:-1]):
        order = np.argsort(line, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        col = {k: v[order] for k, v in col.items()}
    else:
        rank = None
    line, step, total, in_ep, epoch = (col[k] for k in _Records.COLS)

    missing = np.isnan(epoch)
    if missing.any():
        ev_l = np.concatenate([np.array([e[0] for e in epoch_events], dtype=np.float64), line[~missing]])
        ev_v = np.concatenate([np.array([e[1] for e in epoch_events], dtype=np.float64), epoch[~missing]])
        if ev_l.size:
            o = np.argsort(ev_l, kind="stable")
            ev_l, ev_v = ev_l[o], ev_v[o]
            k = np.searchsorted(ev_l, line[missing], side="left") - 1
            epoch = epoch.copy()
            epoch[missing] = np.where(k >= 0, ev_v[np.maximum(k, 0)], np.nan)

    # a `batch i/N` counter with no epoch to place it in says nothing about the global step
    if (in_ep > 0).any():
        step = np.where((in_ep > 0) & np.isnan(epoch), np.nan, step)
    cand = ~np.isnan(total) & ~np.isnan(step) & ~np.isnan(epoch)
    if cand.any():
        e, s = epoch[cand], step[cand]
        restarts = bool(np.any((np.diff(e) > 0) & (np.diff(s) < 0)))
        conv = cand & ((in_ep > 0) | restarts)
        if conv.any():
            base = 0.0 if np.nanmin(epoch[conv]) == 0 else 1.0
            step = np.where(conv, (epoch - base) * total + step, step)

    has = ~np.isnan(step)
    if not has.all():
        idx = np.maximum.accumulate(np.where(has, np.arange(step.size), -1))
        step = np.where(idx >= 0, step[np.maximum(idx, 0)], np.nan)

    per_name: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for b, (_cols, metrics) in enumerate(blocks):
        for name, rows, vals in metrics:
            pos = np.arange(offsets[b], offsets[b + 1]) if rows is None else rows + offsets[b]
            if rank is not None:
                pos = rank[pos]
            per_name.setdefault(name, []).append((pos, vals))
    if records.dropped:
        drop = np.isin(line, np.fromiter(records.dropped, dtype=np.float64))
    stepless = np.isnan(step)
    if stepless.any():
        step = step.copy()
        ep = epoch[stepless]
        by_epoch = not np.isnan(ep).any()
        for parts in per_name.values() if by_epoch else ():
            pos = np.concatenate([p for p, _ in parts])
            e = epoch[pos[stepless[pos]]]
            if np.unique(e).size != e.size:
                by_epoch = False
                break
        step[stepless] = ep if by_epoch else np.arange(int(stepless.sum()), dtype=np.float64)

    out = {}
    for name, parts in per_name.items():
        pos = parts[0][0] if len(parts) == 1 else np.concatenate([p for p, _ in parts])
        vals = parts[0][1] if len(parts) == 1 else np.concatenate([v for _, v in parts])
        if pos.size > 1 and not np.all(pos[1:] > pos[:-1]):
            o = np.argsort(pos, kind="stable")
            pos, vals = pos[o], vals[o]
        if records.dropped:
            keep = ~drop[pos]
            pos, vals = pos[keep], vals[keep]
        if pos.size:
            out[name] = (step[pos], epoch[pos], vals)
    return out


# -- the per-line parser --------------------------------------------------------------------
class _Parser:
    def __init__(self):
        self.out = Parsed()
        self.pts: dict[str, list[tuple[float, float, float]]] = {}
        self.records = _Records()
        self.epoch_events: list[tuple[int, float]] = []
        self.epoch = float("nan")   # for Keras bars without an "Epoch N/M" header
        self.bar = _Bar()
        self.keras: _KerasEpoch | None = None
        self.keras_offset = 0.0
        self.in_tb = False
        self.block: str | None = None
        self.config = False  # inside a "Configuration:" listing
        self.skipped_eval = 0
        self.status: dict[int, str] = {}  # line -> "ok" | "known" (noise, bars, config)

    # points of bars (kept as lists: few, and stateful)
    def add(self, name, step, epoch, value, replace_same_step=False):
        lst = self.pts.setdefault(name, [])
        if replace_same_step and lst and lst[-1][0] == step:
            lst[-1] = (step, epoch, value)
        else:
            lst.append((step, epoch, value))

    def mark(self, lineno: int, how: str):
        if self.status.get(lineno) != "ok":
            self.status[lineno] = how

    def flush_keras(self):
        keras = self.keras
        if keras is None:
            return
        if keras.frame is not None:
            n, total, metrics, rate = keras.frame
            self.keras_offset += total
            for k, v in metrics:
                self.add(k, self.keras_offset, keras.epoch, v)
            if rate is not None:
                self.add(THROUGHPUT, self.keras_offset, keras.epoch, rate)
        elif keras.partial is not None:
            n, total = keras.partial
            self.out.notes.append(f"the log ends inside epoch {_fmt(keras.epoch)} (batch {n}/{total}) before "
                                  "its end-of-epoch line; that epoch has no values (crashed or stopped run?)")
        self.skipped_eval += keras.ignored
        self.keras = None

    def end_bar(self):
        # A plain loop calls set_postfix() before tqdm counts the batch (a fresh value at counter
        # 0), so the final counter that close() draws only repeats the step before: not a point.
        # Lightning counts first, then sets the postfix: its last counter is a real step.
        bar = self.bar
        if bar.zero_fresh and bar.stale_here and bar.last_n > 0:
            for k in bar.prev:
                if self.pts.get(k) and self.pts[k][-1][0] == bar.last_step:
                    self.pts[k].pop()
        self.flush_bar_epoch()

    def flush_bar_epoch(self):
        # validation metrics appear on the bar's last frame of an epoch and stay on screen
        # during the next one: record them once, when the epoch's bar completed
        bar = self.bar
        if bar.completed or bar.total is None:
            for k, v in bar.epoch_level.items():
                self.add(k, bar.last_step, bar.epoch, v)
        bar.epoch_level.clear()

    def frame(self, lineno: int, frame: str, ends_line: bool):
        stripped = frame.strip()
        if len(frame) > MAX_FRAME or _LONG_DIGITS.search(frame):
            self.out.too_long += 1
            self.mark(lineno, "known")
            return
        if self.in_tb:
            self.mark(lineno, "known")
            if frame[:1].isspace() or stripped.startswith(("During handling", "The above exception")):
                return
            self.in_tb = False
            return  # the exception line itself
        if stripped.startswith("Traceback (most recent call last)"):
            self.in_tb = True
            self.mark(lineno, "known")
            return
        if _NOISE.search(frame):
            self.mark(lineno, "known")
            return

        body = _strip_prefix(frame)
        head = _HEADER.match(body)
        if head:  # "Epoch 3/50": the epoch of what follows
            self.flush_keras()
            ep = float(head.group("n"))
            self.keras = _KerasEpoch(ep)
            self.epoch = ep
            self.epoch_events.append((lineno, ep))
            self.block = None
            self.mark(lineno, "ok")
            return

        km = _KERAS.match(body)
        if km and _TQDM.match(body) is None:
            self.keras_frame(lineno, km, ends_line)
            return
        tm = _TQDM.match(body)
        if tm:
            self.tqdm_frame(lineno, tm)
            after = tm.group("after")
            if after.strip() and not after.lstrip().startswith(("[", ",")):
                # tqdm leaves the cursor after the bar: a print() lands on the same line
                self.plain(lineno, _strip_prefix(after))
            return
        self.plain(lineno, body)

    def plain(self, lineno: int, body: str):
        if self.config:
            if _SETTING.match(body) and len(_pairs(body)) <= 1:
                self.mark(lineno, "known")
                return
            self.config = False
        rec = _plain(body, self.block)
        if isinstance(rec, _Plain):
            self.out.metric_frames += 1
            self.records.add_plain(lineno, rec)
            self.out.own_axis_lines += rec.step is not None or rec.epoch is not None
            if rec.epoch is not None:
                self.epoch = rec.epoch.value
            if rec.step is not None or rec.epoch is not None:
                self.block = None
            self.mark(lineno, "ok")
            return
        if rec in ("config", "summary") or _ASSIGN.match(body) or body.lstrip().startswith("#"):
            self.mark(lineno, "known")  # a summary, a `name = value` setting, a comment
            return
        if _CONFIG_HEADER.search(body) and body.rstrip().endswith(":") and not any(c.isdigit() for c in body):
            self.config = True  # "Configuration:": the `key: value` lines below are settings
            self.mark(lineno, "known")
            return
        words = _SPLIT_WORD.findall(body)
        if words and body.rstrip().endswith(":") and not any(ch.isdigit() for ch in body) and len(body) < 80:
            self.block = words[-1]  # "Evaluation Results:" heads the lines below it
            self.mark(lineno, "known")
            return
        if self.block and (words or _axes(body) or not _pairs(body)):
            self.block = None

    def keras_frame(self, lineno: int, km, ends_line: bool):
        n, total = int(km.group("n")), int(km.group("total"))
        metrics = [(k, num.value) for _, k, num in _pairs(km.group("rest")) if _is_metric_key(k)]
        if not metrics:
            self.mark(lineno, "known")
            return
        self.out.metric_frames += 1
        self.mark(lineno, "ok")
        if self.keras is None:
            self.keras = _KerasEpoch(self.epoch if self.epoch == self.epoch else 1.0)
        keras = self.keras
        if keras.closed or n < keras.last_n:
            keras.closed = True  # model.evaluate()/predict() after the epoch's line
            keras.ignored += 1
            return
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

    def tqdm_frame(self, lineno: int, tm):
        bar = self.bar
        desc = tm.group("desc")
        if re.search(r"valid|\bval\b|test|predict|sanity", desc, re.I):
            self.mark(lineno, "known")
            return  # Lightning's validation/test bars: no metrics, and not the training step
        n = int(tm.group("n"))
        total = None if tm.group("total") == "?" else int(tm.group("total"))
        em = re.search(r"\bepoch\s*[:#]?\s*(\d{1,12})", desc, re.I)
        inner = tm.group("inner")
        metrics = [(k, num.value) for _, k, num in _pairs(inner) if _is_metric_key(k)]
        self.mark(lineno, "known")
        if not metrics and not em:
            return  # a bar of the user's own (evaluation, data loading): not training steps
        ep = float(em.group(1)) if em else bar.epoch
        if (em and ep != bar.epoch) or n < bar.last_n:  # a new epoch's bar
            self.end_bar()
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
            self.out.metric_frames += 1
            self.mark(lineno, "ok")
            if total is not None:
                self.out.steps_per_epoch = total
        if n == 0:
            # no batch done yet: Lightning's reset frame still shows the last epoch's postfix
            # (unchanged: skip it); a plain loop's set_postfix() at 0 shows the first batch
            if same or not step_metrics:
                return
            bar.zero_fresh = True
        rate = _rate(inner) if n else None
        step = bar.offset + n
        bar.last_step = step
        for k, v in metrics:
            if _epoch_level(k):
                bar.epoch_level[k] = v
            else:
                self.add(k, step, ep, v, replace_same_step=True)
        if rate is not None and (metrics or em):
            self.add(THROUGHPUT, step, ep, rate, replace_same_step=True)

    def finish(self):
        self.flush_keras()
        self.end_bar()
        if self.skipped_eval:
            self.out.notes.append(f"{self.skipped_eval} Keras progress line(s) after an epoch's final line were "
                                  "ignored (model.evaluate()/predict() output?)")


def parse(text: str, fast: bool = True) -> Parsed:
    return parse_bytes(text.encode("utf-8", errors="replace"), fast=fast)


def parse_bytes(data: bytes, fast: bool = True) -> Parsed:
    """Parse a text log given as UTF-8 bytes. `fast=False` runs every line through the per-line
    parser (the reference the template path is tested against)."""
    return _parse_scan(_scan(data, fast))


def _scan(data: bytes, fast: bool = True) -> _textfast.Scan:
    if fast:
        return _textfast.scan(data, _accept)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return _textfast.Scan(len(lines), list(enumerate(lines)), [])


def _parse_scan(sc: _textfast.Scan) -> Parsed:
    p = _Parser()
    fast_lines, fast_epoch_lines, fast_epochs, bad = _add_groups(p, sc.groups)

    # the per-line parser sees the slow lines in order; what the fast lines between two of
    # them did (set an epoch, end a traceback or a block) is caught up first
    dropped = []
    prev_k = 0
    for lineno, raw in sc.slow_lines:
        k = int(np.searchsorted(fast_lines, lineno))
        if k > prev_k:
            if p.in_tb:
                dropped.append(fast_lines[prev_k])  # the exception line of a traceback
                p.in_tb = False
            p.block = None
            j = int(np.searchsorted(fast_epoch_lines, lineno)) - 1
            if j >= 0:
                p.epoch = float(fast_epochs[j])
            prev_k = k
        line = raw.decode("utf-8", errors="replace")
        for ln, fr, ends in _line_frames([(lineno + 1, line)]):
            p.frame(ln, fr, ends)
    if p.in_tb and prev_k < fast_lines.size:
        dropped.append(fast_lines[prev_k])  # a traceback's exception line after the last slow line
    p.finish()
    out = p.out
    out.lines = sc.n_lines
    out.metric_frames += sum(int(g.ok.sum()) for g in sc.groups)
    out.own_axis_lines += sum(int(g.ok.sum()) for g in sc.groups)
    out.bad_numbers = len(bad)

    records = p.records
    records.dropped = {float(x + 1) for x in dropped}
    placed = _place(records, p.epoch_events)
    for name, lst in p.pts.items():
        arr = np.asarray(lst, dtype=np.float64).reshape(-1, 3)
        bar_pts = (arr[:, 0], arr[:, 1], arr[:, 2])
        if name in placed:
            placed[name] = tuple(np.concatenate([a, b]) for a, b in zip(placed[name], bar_pts))
        else:
            placed[name] = bar_pts
    out.points = placed

    # what was understood: fast lines (parsed), slow lines that gave something
    ok_slow = sum(1 for v in p.status.values() if v == "ok")
    out.understood = int(fast_lines.size) - len(dropped) + ok_slow
    examples, others = [], []
    unknown = 0
    for lineno, raw in sc.slow_lines:
        if (lineno + 1) in p.status or not _HAS_DIGIT.search(raw, 0, MAX_FRAME):
            continue
        unknown += 1
        if len(examples) < _EXAMPLES:
            text = _ANSI.sub("", raw[:MAX_FRAME].decode("utf-8", errors="replace")).replace("\r", " ").strip()
            # lines that hold a `key value` pair are the likeliest misses: show them first
            (examples if _pairs(text, spaced=True) else others).append(
                (lineno + 1, text[:100] + ("..." if len(text) > 100 else "")))
    examples = sorted(examples + others[: _EXAMPLES - len(examples)])[:_EXAMPLES]
    out.not_understood = unknown + len(bad)
    if sc.slow_lines and sc.slow_lines[-1][0] == sc.n_lines - 1 and p.status.get(sc.n_lines) != "ok":
        tail = sc.slow_lines[-1][1][-200:].decode("utf-8", errors="replace").strip()
        out.last_unread = tail[-100:]
    elif bad and bad[-1] == sc.n_lines - 1:
        out.last_unread = "(a number cut short)"
    out.examples = examples
    return out


_HAS_DIGIT = re.compile(rb"[0-9]")


def _add_groups(p: _Parser, groups):
    """Rows for the fast groups; the sorted fast line numbers and where they set an epoch."""
    lines, ep_lines, eps, bad = [], [], [], []
    for g in groups:
        bad.extend(p.records.add_group(g).tolist())
        every = bool(g.ok.all())
        good = g.lines if every else g.lines[g.ok]
        lines.append(good)
        spec = g.spec
        if spec.epoch is not None:
            ep_lines.append(good)
            if spec.epoch[0] == "slot":
                col = g.values[:, spec.epoch[1]]
                eps.append(col if every else col[g.ok])
            else:
                eps.append(np.full(good.size, spec.epoch[1]))
    if len(lines) == 1:
        fl = lines[0]  # one template: its lines are in order
    else:
        fl = np.sort(np.concatenate(lines)) if lines else np.empty(0, np.int64)
    if len(ep_lines) == 1:
        el, ev = ep_lines[0], eps[0]
    elif ep_lines:
        el, ev = np.concatenate(ep_lines), np.concatenate(eps)
        o = np.argsort(el, kind="stable")
        el, ev = el[o], ev[o]
    else:
        el, ev = np.empty(0, np.int64), np.empty(0)
    return fl, el, ev, bad


def _fmt(x: float) -> str:
    return str(int(x)) if x == x and float(x).is_integer() else str(x)
