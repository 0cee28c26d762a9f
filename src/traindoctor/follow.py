"""`traindoctor watch PATH`: follow a running job's logs like `tail -f`, say each finding once.

For a job that is already running and whose code cannot be changed: its `nohup` log, TensorBoard
logdir, metrics.csv, trainer_state.json or MLflow store grows on disk, and this follows it. Any
format `diagnose` reads is followed, through the same readers, so what `watch` says while the run
goes is what `diagnose` would say of the log at that moment.

How it stays cheap (measured in benchmarks/follow_cpu.py):

- Waiting is `os.stat`: every `interval` seconds each followed file (and each folder, which is how
  a new run folder or events file shows up) is stat'ed and compared with its last (inode, size,
  mtime). Nothing is opened or parsed while nothing changes.
- A text log is read as a tail: only the bytes appended since the last read, cut at the last
  complete line (a block-buffered `nohup` log is often cut mid-line, and "loss=0.4" may be half
  of "loss=0.45"). Its lines are not parsed one chunk at a time, though: the text reader's parse is
  stateful over the whole file (progress-bar step offsets across epochs, `Epoch 3/50` headers for
  the lines below them, and step-less lines placed by a decision over all of them), so a chunk
  parsed alone can get steps wrong, and a wrong finding cannot be taken back once printed. The
  whole text is re-parsed instead, and throttled: after a parse that took t seconds the next
  waits t / duty seconds (duty 2 %, `--cpu`), so parsing takes about that share of a core, plus
  what parsing the appended lines once costs (which only matters on a log of thousands of lines
  a second); the price is latency on a huge log (about 50 x its parse time: 100,000 lines parse
  in under a second, so such a log is re-read about every 40 s).
- Other formats are re-read whole by their reader when a file of theirs changed, under the same
  t / duty throttle. A CSV/JSONL file whose last byte is not a newline is mid-write and waits
  (at most a few polls) for its line to end.
- The detectors run through LiveDiagnosis (live.py): again only when the run has grown enough
  and within the same 2 % duty.
- A rescan of the folder (to find new runs and files) happens when one of its folders changed, or
  every `rescan` seconds, and never more often than its own cost allows.
- Costs are process CPU time, so a busy machine's wall time does not stretch the waits.
- An MLflow store given directly (mlflow.db, sqlite:///..., http://host:5000) is not a file to
  re-read: its RUNNING runs are asked for the points logged since the last poll
  (mlflow_store.read_new_points), on mlflow.db only when the database files changed.

A file that shrinks or is replaced by a new one (truncated, rotated, rerun with `>`) is read from
its start, and its run is diagnosed anew. The run ends when nothing grew for `idle` seconds, when
the followed MLflow runs leave RUNNING, or on Ctrl-C / SIGTERM; the final report is then
`diagnose` of the path as it is, with the same renderers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

from .errors import InputError
from .finding import Finding, Severity, json_safe
from .history import RunHistory, Series
from .live import LiveDiagnosis
from .readers import READERS, Part, _concat, _group, _reader

__all__ = ["Follower", "follow", "command", "Event"]

# Line-oriented formats whose last line may be half-written while the job runs.
_LINE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
_MAX_DEFER = 3  # polls a half-written CSV/JSONL line may hold a read back
_SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".ipynb_checkpoints", "wandb-artifacts"}


@dataclass(frozen=True)
class Event:
    """What one poll found: a finding on a run, or a notice (new run, file restarted, ...)."""

    kind: str  # "finding" | "notice"
    text: str = ""
    finding: Finding | None = None
    run: str = ""  # the run's label ("" for the path itself)
    path: str = ""  # the run's folder


# -- file stamps ----------------------------------------------------------------------------
Stamp = tuple[int, int, int]  # (inode, size, mtime_ns)


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """Every file and every folder under root (sorted), skipping VCS and virtualenv folders."""
    files, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        dirs.append(Path(dirpath))
        files.extend(Path(dirpath) / f for f in sorted(filenames))
    return files, dirs


def _unit_stamps(unit: Path) -> dict[Path, Stamp]:
    """A unit is a file (most formats) or a run folder (MLflow, W&B): the stamps of its files."""
    if not unit.is_dir():
        s = _stamp(unit)
        return {unit: s} if s else {}
    out = {}
    for f in _walk(unit)[0]:
        s = _stamp(f)
        if s:
            out[f] = s
    return out


# -- a text log read as a tail --------------------------------------------------------------
@dataclass
class _TextTail:
    """The complete lines of a growing text log, read from where the last read stopped."""

    path: Path
    inode: int = -1
    offset: int = 0  # bytes of the file consumed (complete lines + the pending partial line)
    data: bytearray = field(default_factory=bytearray)  # complete lines only
    partial: bytes = b""  # the last line, not ended yet

    def advance(self, stamp: Stamp) -> str:
        """Read what was appended. 'same', 'grew' (new complete lines), or 'restarted'."""
        inode, size, _ = stamp
        restarted = self.inode != -1 and (inode != self.inode or size < self.offset)
        if restarted or self.inode == -1:
            self.inode, self.offset, self.data, self.partial = inode, 0, bytearray(), b""
        if size <= self.offset:
            return "restarted" if restarted else "same"
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            new = fh.read(size - self.offset)
        self.offset += len(new)
        chunk = self.partial + new
        # A line ends at \n, and a progress bar's redraw at \r: what follows the last one may be
        # half-written.
        end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
        self.partial = chunk[end:]
        if end:
            self.data += chunk[:end]
        return "restarted" if restarted else ("grew" if end else "same")


def _text_part(path: Path, data: bytes, textlog: ModuleType) -> Part | None:
    """What the text reader makes of the complete lines read so far; None before a metric line."""
    try:
        return textlog.read_bytes(path, bytes(data))
    except InputError:
        return None  # no metric line yet (the job is still starting) or not text at all


# -- units and runs -------------------------------------------------------------------------
@dataclass
class _Unit:
    reader: ModuleType
    path: Path
    seen: dict[Path, Stamp] = field(default_factory=dict)  # stamps at the last poll
    read_stamps: dict[Path, Stamp] | None = None  # stamps at the last read (None: never read)
    parts: tuple[Part, ...] = ()  # one, or one per run for a store of many runs (an mlflow.db)
    tail: _TextTail | None = None
    cost: float = 0.0  # seconds the last read took
    read_at: float = float("-inf")
    deferred: int = 0

    @property
    def size(self) -> int:
        return sum(s[1] for s in self.seen.values())


@dataclass
class _Run:
    live: LiveDiagnosis
    label: str
    dirty: bool = True  # grew since the detectors last ran


class Follower:
    """Follows PATH; each `poll()` returns the new Events. No thread, no sleeping: the caller loops.

    `duty`: the share of one core that reading and parsing may take while the run grows (measured
    with `cpu`, process CPU time); `clock` says when.
    `rescan`: seconds between rescans of a folder for new files when none of its folders changed.
    """

    def __init__(self, path, *, format: str | None = None, only=None, ignore=None, params=None,
                 duty: float = 0.02, rescan: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time):
        self.root = Path(path).expanduser()
        if not self.root.exists():
            raise InputError(self.root, "no such file or folder; expected a training-log file or a run "
                                        "folder (watch follows a log that exists; start the job first)")
        if format is not None and format not in READERS:
            raise InputError(None, f"unknown format {format!r}; formats are: {', '.join(READERS)}")
        self.format = format
        self.only, self.ignore, self.params = only, ignore, params
        self.duty = duty
        self.rescan_every = rescan
        self.clock = clock
        self.cpu = cpu  # what a read costs is CPU time: a busy machine's wall time would overcharge it
        self.units: dict[Path, _Unit] = {}
        self.runs: dict[Path, _Run] = {}
        self.last_growth = clock()
        self.polls = 0
        self._dirs: dict[Path, Stamp | None] = {}
        self._scan_at = float("-inf")
        self._scan_cost = 0.0
        self._textlog = _reader("textlog")
        _import_detectors()
        self._regroup = False  # parts appeared for a run not followed yet, or a unit went away

    # -- one round ------------------------------------------------------------------------
    def poll(self) -> list[Event]:
        """Stat, read what changed (within the budgets), run the detectors where due."""
        self.polls += 1
        now = self.clock()
        events: list[Event] = []
        if self._rescan_due(now):
            events += self._rescan()
        touched: set[Path] = set()
        for unit in list(self.units.values()):
            stamps = _unit_stamps(unit.path)
            if stamps != unit.seen:
                self.last_growth = now
                unit.seen = stamps
            if self._read_due(unit, now):
                before = unit.parts
                events += self._read(unit)
                if unit.parts is not before:
                    touched.update(Path(p.run_dir) for p in before + unit.parts)
        for run_dir in touched:
            if run_dir in self.runs:
                self.runs[run_dir].dirty = True
            else:
                self._regroup = True  # a run not seen before
        events += self._diagnose()
        return events

    # -- discovery ------------------------------------------------------------------------
    def _rescan_due(self, now: float) -> bool:
        if self.polls == 1:
            return True
        # never more than 1 % of the time on rescans, however big the folder
        if now < self._scan_at + self._scan_cost / 0.01:
            return False
        if now >= self._scan_at + self.rescan_every:
            return True
        return any(_stamp(d) != s for d, s in self._dirs.items())

    def _rescan(self) -> list[Event]:
        c0 = self.cpu()
        if self.root.is_dir():
            files, dirs = _walk(self.root)
        else:
            files, dirs = None, [self.root.parent]
        self._dirs = {d: _stamp(d) for d in dirs}
        found = _discover(self.root, files, self.format)
        events = []
        for path, mod in found.items():
            unit = self.units.get(path)
            if unit is not None and unit.reader is mod:
                continue
            self.units[path] = _Unit(mod, path, tail=_TextTail(path) if mod is self._textlog else None)
        for path in [p for p in self.units if p not in found]:
            gone = self.units.pop(path)
            for part in gone.parts:
                if Path(part.run_dir) in self.runs:
                    self.runs[Path(part.run_dir)].dirty = True
                self._regroup = True
            if not path.exists():  # else superseded (HF's newest checkpoint-N/trainer_state.json)
                events.append(Event("notice", f"{path} is gone; no longer following it"))
        self._scan_at = self.clock()
        self._scan_cost = self.cpu() - c0
        return events

    # -- reading --------------------------------------------------------------------------
    def _read_due(self, unit: _Unit, now: float) -> bool:
        if unit.read_stamps == unit.seen:
            return False
        # After a read that took t seconds the next waits t / duty. The next read is larger by what
        # was appended meanwhile, so the share of a core spent is duty + what parsing the new
        # lines once costs: ~duty on a normal log; on one growing faster than a core parses, more
        # (waiting for the share to fall below duty would then mean never reading again).
        if now < unit.read_at + unit.cost / self.duty:
            return False
        if unit.tail is None and unit.path.suffix.lower() in _LINE_SUFFIXES and unit.deferred < _MAX_DEFER:
            if not _ends_with_newline(unit.path):
                unit.deferred += 1
                return False
        unit.deferred = 0
        return True

    def _read(self, unit: _Unit) -> list[Event]:
        events = []
        c0 = self.cpu()
        old_size = sum(s[1] for s in (unit.read_stamps or {}).values())
        unit.read_stamps = dict(unit.seen)
        if unit.tail is not None and unit.tail.offset == 0 and _is_utf16(unit.path):
            unit.tail = None  # no line-by-line tail in UTF-16 (PowerShell's `>`): read it whole
        if unit.tail is not None:
            stamp = unit.seen.get(unit.path)
            state = unit.tail.advance(stamp) if stamp else "same"
            if state == "restarted":
                events += self._restart(unit, "was truncated or replaced")
            if state != "same":
                part = _text_part(unit.path, unit.tail.data, self._textlog)
                unit.parts = (part,) if part is not None else ()
        else:
            if unit.read_stamps and unit.size < old_size and unit.parts:
                events += self._restart(unit, "shrank")
            try:
                got = unit.reader.read(unit.path)
            except (InputError, OSError):
                got = None  # mid-write (half a JSON file) or not started: keep what we had
            parts = tuple(p for p in (got if isinstance(got, list) else [got]) if p is not None and p.series)
            if parts:
                unit.parts = parts
        for part in unit.parts:
            if not part.source:
                part.source = str(unit.path)  # as load_runs does: --show-series names the file
        unit.read_at = self.clock()
        unit.cost = self.cpu() - c0
        return events

    def _restart(self, unit: _Unit, what: str) -> list[Event]:
        events = []
        for run_dir in {Path(p.run_dir) for p in unit.parts}:
            old = self.runs.pop(run_dir, None)
            self._regroup = True
            if old is not None:
                events.append(Event("notice", f"{unit.path} {what}: following it from its start; run "
                                              f"{old.label or str(run_dir)!r} is diagnosed anew", path=str(run_dir)))
        unit.parts = ()
        return events

    def final_runs(self) -> list[RunHistory]:
        """The runs read again whole from disk: what `diagnose PATH` reads now."""
        from .readers import load_runs

        self.units.clear()  # their copy of the logs: the final read needs the memory more
        return load_runs(self.root, format=self.format)

    # -- detectors ------------------------------------------------------------------------
    def histories(self, *, checkpoints: bool = False) -> list[RunHistory]:
        """The runs as read so far (what the detectors see)."""
        parts = [p for u in self.units.values() for p in u.parts]
        if not parts:
            return []
        return _group(parts, self.root, checkpoints=checkpoints)

    def _points(self, run_dir: Path) -> int:
        return sum(len(s) for u in self.units.values() for p in u.parts
                   if Path(p.run_dir) == run_dir for s in p.series.values())

    def _diagnose(self) -> list[Event]:
        # cheap checks first: grouping parts into runs is a few ms, too much for every idle poll
        dirty = {d for d, r in self.runs.items() if r.dirty and r.live.due(self._points(d))}
        if not (dirty or self._regroup):
            return []
        self._regroup = False
        events = []
        for history in self.histories():
            run_dir = Path(history.path)
            state = self.runs.get(run_dir)
            if state is None:
                # A process of its own, off the training's cores: the detectors may take the same
                # share as reading (2 %), not the in-process recorder's 1 %, so findings come sooner.
                state = self.runs[run_dir] = _Run(
                    LiveDiagnosis(only=self.only, ignore=self.ignore, params=self.params,
                                  duty=self.duty, clock=self.clock, cpu=self.cpu), history.run)
                n = sum(len(s) for s in history.series.values())
                events.append(Event("notice", f"following {'run ' + repr(history.run) if history.run else history.path}"
                                              f" ({history.format}, {len(history.series)} series, "
                                              f"{n} points so far)", run=history.run, path=history.path))
            elif run_dir not in dirty:
                continue
            runs_before = state.live.runs
            for f in state.live.update(history):
                events.append(Event("finding", f.title, f, history.run, history.path))
            if state.live.runs != runs_before:
                state.dirty = False
        return events


def _import_detectors() -> None:
    """Import the detectors up front: their import would otherwise count as the first live
    pass's cost, and the duty budget would then hold the second pass back for many seconds."""
    from .registry import detectors

    detectors()


def _discover(root: Path, files: list[Path] | None, format: str | None) -> dict[Path, ModuleType]:
    """{unit: reader} as load_runs() claims them: most specific reader first, one reader a unit."""
    claimed: dict[Path, ModuleType] = {}
    for name in READERS if format is None else (format,):
        mod = _reader(name)
        for unit in mod.discover(root, files):
            unit = Path(unit)
            if unit in claimed or any(p in claimed for p in unit.parents):
                continue
            claimed[unit] = mod
    return claimed


def _is_utf16(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) in (b"\xff\xfe", b"\xfe\xff")
    except OSError:
        return False


def _ends_with_newline(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) in (b"\n", b"\r")
    except OSError:
        return True  # empty or unreadable: nothing half-written to wait for


# -- an MLflow store: poll a RUNNING run for new metric points ---------------------------------
@dataclass
class _StoreRun:
    history: RunHistory
    live: LiveDiagnosis
    cursor: dict | None = None
    running: bool = True
    dirty: bool = False  # new points since the detectors last ran


class StoreFollower:
    """Follows the RUNNING runs of an MLflow store: an mlflow.db (or sqlite:/// URI) or a
    tracking server URL. Each poll asks for the points logged since the last one (MLflow's
    (key, timestamp) order; on mlflow.db only when the database file changed), and a run whose
    status leaves RUNNING has ended: when every followed run has, so has the watch.
    `run` (an id or name) follows that run whatever its status says."""

    def __init__(self, target, *, experiment=None, run=None, only=None, ignore=None, params=None,
                 duty: float = 0.02, clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time):
        from .readers import mlflow_store

        self._store = mlflow_store
        _import_detectors()
        self.target, self.experiment, self.run = str(target), experiment, run
        self.clock, self.cpu = clock, cpu
        self.duty = duty
        self.last_growth = clock()
        self.polls = 0
        listed = mlflow_store.load_runs(self.target, experiment=experiment, run=run)
        picked = listed if run is not None else [h for h in listed if h.status == "RUNNING"]
        self.listed = listed
        self.runs: dict[str, _StoreRun] = {
            h.meta["run_id"]: _StoreRun(replace(h, series={}),
                                        LiveDiagnosis(only=only, ignore=ignore, params=params,
                                                      duty=duty, clock=clock, cpu=cpu))
            for h in picked}
        db = mlflow_store.sqlite_path(self.target) or (None if "://" in self.target else Path(self.target))
        self._files = None if db is None else [db, Path(f"{db}-wal"), Path(f"{db}-journal")]
        self._seen: list | None = None
        self._read_at = float("-inf")
        self._cost = 0.0

    @property
    def ended(self) -> bool:
        return not any(r.running for r in self.runs.values())

    def poll(self) -> list[Event]:
        self.polls += 1
        events: list[Event] = []
        if self.polls == 1:
            if not self.runs:
                listing = ", ".join(f"{h.run} ({h.status or '?'})" for h in self.listed[:8])
                return [Event("notice", f"no RUNNING run in {self.target} ({listing}); "
                                        "name one with --run to follow it anyway")]
            for r in self.runs.values():
                events.append(Event("notice", f"following run {r.history.run!r} ({r.history.status})",
                                    run=r.history.run, path=r.history.path))
        ended = self._read(self.clock())
        for r in self.runs.values():
            if r.dirty and r.live.due(sum(len(s) for s in r.history.series.values())):
                for f in r.live.update(r.history):
                    events.append(Event("finding", f.title, f, r.history.run, r.history.path))
                r.dirty = False
        return events + ended

    def _read(self, now: float) -> list[Event]:
        """New points of every followed run, when the store changed and the budget allows."""
        stamps = None
        if self._files is not None:  # mlflow.db: nothing to ask while its files stand still
            stamps = [_stamp(f) for f in self._files]
            if stamps == self._seen:
                return []
            if self._seen is not None:
                self.last_growth = now
        if now < self._read_at + self._cost / self.duty:
            return []
        self._seen = stamps
        c0 = self.cpu()  # our CPU: a server's latency is not ours to budget
        ended = []
        for run_id, r in self.runs.items():
            if not r.running:
                continue
            new = self._store.read_new_points(self.target, run_id, r.cursor)
            r.cursor = new.cursor
            if new.series:
                self.last_growth = now
                r.history = replace(r.history, series=_joined(r.history.series, new.series))
                r.dirty = True
            if new.status != "RUNNING":
                r.running = False
                ended.append(Event("notice", f"run {r.history.run!r} ended: {new.status}",
                                   run=r.history.run, path=r.history.path))
        self._read_at = self.clock()
        self._cost = self.cpu() - c0  # the reads only: the detectors keep their own budget
        return ended

    def final_runs(self) -> list[RunHistory]:
        """The followed runs read again whole: what `diagnose TARGET --run ID` reads."""
        out = []
        for run_id in self.runs:
            out += self._store.load_runs(self.target, experiment=self.experiment, run=run_id)
        return out or self.listed


def _joined(old: dict[str, Series], new: dict[str, Series]) -> dict[str, Series]:
    out = dict(old)
    for name, s in new.items():
        out[name] = _concat(old[name], s) if name in old else s
    return out


# -- the loop -------------------------------------------------------------------------------
def make_follower(path, *, experiment=None, run=None, **kwargs):
    """A StoreFollower for an MLflow store given directly (mlflow.db, sqlite:///, http://), else a
    Follower of files."""
    from .readers import mlflow_store

    if kwargs.get("format") in (None, "mlflow") and mlflow_store.is_target(str(path)):
        kwargs.pop("format", None)
        kwargs.pop("rescan", None)
        return StoreFollower(path, experiment=experiment, run=run, **kwargs)
    if experiment is not None or run is not None:
        raise InputError(path, "--experiment and --run pick runs of an MLflow store (an mlflow.db or a "
                               "tracking server URL); this is not one")
    return Follower(path, **kwargs)


def follow(path, *, on_event: Callable[[Event], None], interval: float = 1.0, idle: float | None = 600.0,
           sleep: Callable[[float], None] = time.sleep, **kwargs) -> Follower:
    """Poll `path` (or a Follower) every `interval` seconds until nothing grew for `idle` seconds
    (None: until KeyboardInterrupt); every event goes to `on_event`. Returns the Follower. The
    final word on the run is `traindoctor.diagnose(path)` of what is then on disk."""
    follower = path if isinstance(path, (Follower, StoreFollower)) else make_follower(path, **kwargs)
    try:
        while True:
            for event in follower.poll():
                on_event(event)
            if getattr(follower, "ended", False):
                break  # the MLflow run(s) left RUNNING: no need to wait for --idle
            if idle is not None and follower.clock() - follower.last_growth >= idle:
                break
            sleep(interval)
    except KeyboardInterrupt:
        on_event(Event("notice", "interrupted: writing the final report"))
    return follower


# -- --exec ---------------------------------------------------------------------------------
def finding_env(event: Event) -> dict[str, str]:
    """The finding, for a command run on it: TRAINDOCTOR_CODE, _SEVERITY, _TITLE, ... (all str)."""
    f = event.finding
    assert f is not None
    steps = f.steps or (None, None)
    return {
        "TRAINDOCTOR_CODE": f.code,
        "TRAINDOCTOR_SEVERITY": f.severity.value,
        "TRAINDOCTOR_TITLE": f.title,
        "TRAINDOCTOR_METRIC": f.metric or "",
        "TRAINDOCTOR_STEP": "" if steps[-1] is None else f"{steps[-1]:g}",
        "TRAINDOCTOR_RUN": event.run,
        "TRAINDOCTOR_PATH": event.path,
        "TRAINDOCTOR_FINDING": json.dumps(f.to_dict(), default=json_safe),
    }


class _Exec:
    """Runs `--exec` on each finding at or above a severity; never blocks the following."""

    def __init__(self, command: str, at: str, say: Callable[[str], None]):
        self.command = command
        self.rank = Severity.parse(at).rank
        self.say = say
        self.running: list[tuple[subprocess.Popen, str]] = []

    def __call__(self, event: Event) -> None:
        self.reap()
        if event.kind != "finding" or event.finding.severity.rank < self.rank:
            return
        env = {**os.environ, **finding_env(event)}
        try:
            # the command's stdout goes to our stderr: stdout carries the report (--json)
            proc = subprocess.Popen(self.command, shell=True, env=env, stdin=subprocess.DEVNULL,
                                    stdout=_stderr_fd())
        except OSError as exc:
            self.say(f"--exec could not start {self.command!r}: {exc}")
            return
        self.running.append((proc, event.finding.code))

    def reap(self, wait: float = 0.0) -> None:
        deadline = time.monotonic() + wait
        for proc, code in list(self.running):
            left = max(deadline - time.monotonic(), 0.0)
            try:
                rc = proc.wait(left) if wait else proc.poll()
            except subprocess.TimeoutExpired:
                rc = None
            if rc is None:
                continue
            self.running.remove((proc, code))
            if rc != 0:
                self.say(f"--exec for {code} exited with status {rc}: {self.command}")
        if wait and self.running:
            self.say(f"--exec still running for {len(self.running)} finding(s); left running")


def _stderr_fd():
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # no real stderr (tests capture it): inherit


# -- the CLI command ------------------------------------------------------------------------
def live_line(event: Event, many_runs: bool) -> str:
    """One line for a finding as it appears: time, severity, code, metric, title."""
    f = event.finding
    where = f" on {f.metric}" if f.metric else ""
    run = f" [{event.run}]" if many_runs and event.run else ""
    return f"{time.strftime('%H:%M:%S')} {f.severity.value.upper():<7} {f.code}{where}{run}: {f.title}"


def command(args) -> int:
    """`traindoctor watch PATH`: follow, print findings as they appear, then the final report."""
    from ._cli_common import codes as _codes
    from ._cli_common import emit, fails
    from .engine import diagnose

    codes = _codes(args.only), _codes(args.ignore)
    # live lines go to stdout, unless stdout carries a machine-readable report
    live_out = sys.stderr if (args.json or args.md == "-") else sys.stdout

    def say(text: str) -> None:
        print(f"traindoctor watch: {text}", file=sys.stderr, flush=True)

    runner = _Exec(args.exec, args.exec_on, say) if args.exec else None
    seen_runs: set[str] = set()

    def on_event(event: Event) -> None:
        if event.kind == "notice":
            seen_runs.add(event.path)
            say(event.text)
        else:
            print(live_line(event, len(seen_runs) > 1), file=live_out, flush=True)
        if runner is not None:
            runner(event)

    idle = args.idle * 60.0 if args.idle > 0 else None
    follower = make_follower(args.path, format=args.format, only=codes[0] or None, ignore=codes[1] or None,
                             duty=args.cpu / 100, experiment=args.experiment, run=args.run)
    say(f"following {args.path} (every {args.interval:g} s"
        + (f"; ends after {args.idle:g} min without growth" if idle else "; Ctrl-C ends") + ")")
    old = _sigterm_as_interrupt()
    try:
        follow(follower, on_event=on_event, interval=args.interval, idle=idle)
    finally:
        _restore_sigterm(old)
    if runner is not None:
        runner.reap(wait=30.0)
    runs = follower.final_runs()  # the final report is `diagnose PATH` now
    reports = [diagnose(r).filtered(*codes) for r in runs]
    emit(reports, args)
    return fails(reports, args)


def _sigterm_as_interrupt():
    """`kill` / `timeout` end the watch like Ctrl-C: with the final report."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(old) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)


def add_arguments(p) -> None:
    """The `watch` subcommand's own flags (the report flags are the CLI's shared ones)."""
    p.add_argument("path", help="a log file or run folder that a running job writes to, an mlflow.db "
                                "(or sqlite:///mlflow.db) or an MLflow tracking server URL")
    p.add_argument("--format", help="skip auto-detection (text, tensorboard, lightning_csv, ...)")
    p.add_argument("--experiment", metavar="NAME", help="MLflow: the experiment (needed for a tracking server)")
    p.add_argument("--run", help="MLflow: follow this run (id or name) whatever its status; default: "
                                 "every RUNNING run")
    p.add_argument("--interval", type=_positive, default=1.0, metavar="SECONDS",
                   help="how often to check the files for growth (default: 1)")
    p.add_argument("--idle", type=_non_negative, default=20.0, metavar="MINUTES",
                   help="end, with the final report, when nothing grew for this long "
                        "(default: 20; 0: only Ctrl-C ends; fractions allowed)")
    p.add_argument("--cpu", type=_percent, default=2.0, metavar="PERCENT",
                   help="the share of one core that reading and the detectors may each take while the "
                        "logs grow (default: 2); more: findings sooner on a long, fast-growing log")
    p.add_argument("--exec", metavar="COMMAND",
                   help="run this shell command on each new finding at or above --exec-on; the finding "
                        "is in TRAINDOCTOR_CODE, TRAINDOCTOR_SEVERITY, TRAINDOCTOR_TITLE, "
                        "TRAINDOCTOR_METRIC, TRAINDOCTOR_STEP, TRAINDOCTOR_RUN, TRAINDOCTOR_PATH, "
                        "TRAINDOCTOR_FINDING (JSON)")
    p.add_argument("--exec-on", choices=("info", "warning", "error"), default="error",
                   help="the lowest severity that runs --exec (default: error)")


def _number(what: str, ok, rule: str):
    """An argparse type: a float that `ok` accepts, else one line saying what was expected."""
    import argparse

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return v

    return parse


_positive = _number("a number of seconds", lambda v: v > 0, "> 0")
_percent = _number("a percentage", lambda v: 0 < v <= 100, "in (0, 100]")
_non_negative = _number("a number of minutes", lambda v: v >= 0, ">= 0")

