"""Watch: record a live run, say each new finding once, stop it when asked, report on the way out.

    with td.watch(model, optimizer, logdir="runs/exp1", on_finding="stop") as w:
        for x, y in loader:
            out = model(x); loss = loss_fn(out, y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            w.step(loss=loss, outputs=out, targets=y)
            if w.should_stop:
                break
        w.log(val_loss=evaluate(model), epoch=epoch)   # validation metrics, whenever you have them

Each recorded step's statistics (the Recorder's) go to the run file `traindoctor_run.jsonl` in
the logdir, the probes' codes are checked on them at once (LiveChecks), and the curve detectors
run on the growing history through LiveDiagnosis. Two budgets keep the cost small: the recorder
records every step while that costs under `overhead` (0.5 %) of the step time, else every n-th
step (`every="auto"`; the losses in between are averaged into the next record), and the
detectors take at most `duty` (0.5 %) of wall time, except on an evaluation or a first NaN. When the context exits - normally, on an exception or on Ctrl-C - the report is written
beside the run file as Markdown, HTML and JSON. The Lightning and HF callbacks drive this class.
"""

from __future__ import annotations

import atexit
import logging
import math
import time
from pathlib import Path

from ..errors import TraindoctorError
from ..finding import Report, Severity
from ..readers.traindoctor_run import role_for
from ._checks import LiveChecks
from ._history import Columns
from ._runfile import RunFile

__all__ = ["Watch", "TrainingFault", "REPORT_NAMES"]

log = logging.getLogger("traindoctor.watch")
REPORT_NAMES = {"md": "traindoctor_report.md", "html": "traindoctor_report.html", "json": "traindoctor_report.json"}
_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class TrainingFault(TraindoctorError):
    """Raised by w.step / the callbacks when on_finding="raise" and a finding reaches `stop_on`."""

    def __init__(self, finding):
        self.finding = finding
        super().__init__(f"traindoctor stopped the run: [{finding.code}] {finding.title}")


class Watch:
    """The in-process watcher; build it with `traindoctor.watch(...)`."""

    def __init__(self, model, optimizer=None, *, logdir="traindoctor_run", on_finding: str = "log",
                 stop_on: str = "warning", every="auto", deep_every: int = 50, depth: int = 1,
                 nan_guard: str = "lazy", live: bool = True, only=None, ignore=None, params=None,
                 mirror=None, report: bool = True, everything: bool = False, checks: dict | None = None,
                 overhead: float = 0.005, duty: float = 0.005):
        if on_finding not in ("log", "raise", "stop"):
            raise ValueError(f"on_finding must be 'log', 'raise' or 'stop'; got {on_finding!r}")
        from ._ddp import Ranks
        from .recorder import Recorder

        if everything:  # the benchmark's "everything, every step"
            every, deep_every, nan_guard = 1, 1, "every_step"
        self.on_finding = on_finding
        self.stop_on = Severity.parse(stop_on)
        # every="auto": record every step while that costs under `overhead` (0.5 %) of the step time,
        # else every n-th step with n chosen so that it does (the losses in between are averaged)
        self.auto = every == "auto"
        self.every = 1 if self.auto else max(1, int(every))
        self.overhead = overhead
        self._cost = self._steptime = None
        self._next_log = 1
        self._interval = self.every
        self._nan_forced = False
        optimizers = optimizer if isinstance(optimizer, (list, tuple)) else [optimizer]
        self.recorder = Recorder(model, optimizers, depth=depth, deep_every=deep_every, nan_guard=nan_guard)
        torch = self.recorder.torch
        self.ranks = Ranks(torch, self.recorder.model) if Ranks.active(torch) else None
        self.rank = self.ranks.rank if self.ranks else 0
        self.is_writer = self.rank == 0
        self.logdir = Path(logdir).expanduser()
        self.should_stop = False
        self.findings: list = []  # every finding said, in order
        self.report_obj: Report | None = None
        self.epoch = None
        self.step_count = 0  # calls to step()
        self.ended = None
        self._reported: dict = {}
        self._request = 0.0
        self._mirror = _mirror_fn(mirror)
        self._report_files = report
        self._closed = False
        self._t0 = time.time()
        self.runfile = self.columns = self.live = self.checks = None
        if self.is_writer:
            hparams = _hparams(model, optimizers, self.ranks)
            self.runfile = RunFile(self.logdir, meta={"traindoctor_watch": 1, "started": self._t0, "hparams": hparams})
            if self.runfile.replaced:
                log.warning("traindoctor watch: %s held an earlier run's file; it was replaced", self.runfile.path)
            self.hparams = hparams
            self.columns = Columns()
            self.checks = LiveChecks(**(checks or {}))
            if live:
                from ..live import LiveDiagnosis

                # duty: the detectors' share of wall time (0.5 %), beside the recorder's `overhead`
                self.live = LiveDiagnosis(only=only, ignore=ignore, params=params, duty=duty)
        atexit.register(self._at_exit)

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(exc)
        return False  # never swallow the user's exception

    # -- recording ------------------------------------------------------------------------------
    def step(self, loss=None, outputs=None, targets=None, *, step=None, epoch=None, **metrics) -> None:
        """Record one training step. Extra keyword metrics (e.g. train_acc=...) go in the run file."""
        if self._closed:
            return
        t_in = time.perf_counter()
        self.step_count += 1
        if epoch is not None:
            self.epoch = epoch
        if self.step_count < self._next_log:
            self.recorder.skip(loss)
            self.recorder.next_step(self.step_count + 1 >= self._next_log)
            return
        try:
            rec = self.recorder.record(loss, outputs, targets)
        except Exception as exc:  # never harm the run: lose this step's statistics, keep training
            log.warning("traindoctor watch: step %d not recorded: %s: %s", self.step_count, type(exc).__name__, exc)
            rec = None
        if rec is None and self.ranks is not None:
            rec = {}  # the other ranks wait in the gather: take part in it, with nothing to say
        if rec is not None:
            self._record(rec, step, metrics, t_in)
        self._next_log = self.step_count + self._interval
        self.recorder.next_step(self._interval == 1)

    def _record(self, rec: dict, step, metrics: dict, t_in: float) -> None:
        for k, v in metrics.items():
            f = _as_float(v)
            if f is not None:
                rec[k] = f
        step_no = self.step_count if step is None else step
        self._interval = self.every
        if self.ranks is not None:
            # rank 0's interval, the same on every rank: all of them must record (and gather) the same steps
            rows, request, self._interval = self.ranks.gather(rec, self._request, self.every)
            if self.is_writer:
                self.ranks.merge(rec, rows)
            self._apply_request(request)
        if self.is_writer:
            self._safe_write(rec, step_no)
            new = self.checks.update(rec, step_no)
            if self.auto:  # the live detectors below have their own budget (duty)
                self._adapt(rec, time.perf_counter() - t_in)
                if self.ranks is None:
                    self._interval = self.every
            # The curve detectors judge a run's shape; on its first 30 records (plateau fires on 10
            # points of a healthy start) they would guess: skip them (an evaluation still runs them).
            # A first non-finite loss is news that cannot wait for the duty budget (once a run).
            nan_now = not self._nan_forced and any(
                not math.isfinite(v) for k, v in rec.items() if k.endswith("train_loss") and isinstance(v, float))
            if self.live is not None and (nan_now or (len(self.columns) >= 30 and self.live.due(self.columns.points))):
                self._nan_forced |= nan_now
                new += self._live_update(force=nan_now)
            self._say(new)

    def _adapt(self, rec: dict, seconds: float) -> None:
        """every="auto": the recording interval that keeps the recorder's cost near `overhead`."""
        cost = seconds + rec.get("_hook_s", 0.0)  # this record, its optimizer hooks included
        step_time = rec.get("step_time")
        if step_time is None or step_time <= 0:
            return  # the first record: no step time yet (and its cost is mostly first-call warm-up)
        a = 0.3  # an EMA: one slow step (a checkpoint, a GC pause) does not swing the interval
        self._cost = cost if self._cost is None else (1 - a) * self._cost + a * cost
        self._steptime = step_time if self._steptime is None else (1 - a) * self._steptime + a * step_time
        self.every = int(min(100, max(1, math.ceil(self._cost / (self.overhead * self._steptime)))))

    def log(self, *, step=None, epoch=None, **metrics) -> None:
        """Record metrics that are not per training step: validation loss/accuracy, eval results."""
        if self._closed or not self.is_writer:
            return
        if epoch is not None:
            self.epoch = epoch
        rec = {k: f for k, v in metrics.items() if (f := _as_float(v)) is not None}
        if not rec:
            return
        self._safe_write(rec, self.step_count if step is None else step)
        if self.live is not None:
            # An evaluation is a rare event (once an epoch or every N steps) and the one that
            # overfitting waits for: the detectors run on each, whatever the duty budget says.
            evaluation = any(role_for(k).startswith(("val_", "test_")) for k in rec)
            if evaluation or self.live.due():
                self._say(self._live_update(force=True))

    def _safe_write(self, rec: dict, step_no) -> None:
        row = {"step": step_no}
        if self.epoch is not None:
            row["epoch"] = self.epoch
        row["time"] = time.time()
        for k, v in rec.items():
            if not k.startswith("_"):
                row[k] = v
        try:
            self.columns.add(row)
            self.runfile.write(row)
            if self._mirror is not None:
                self._mirror({k: v for k, v in row.items() if k not in ("step", "epoch", "time")}, step_no)
        except Exception as exc:
            log.warning("traindoctor watch: could not write step %s: %s: %s", step_no, type(exc).__name__, exc)

    def _live_update(self, force: bool = False, final: bool = False) -> list:
        try:
            return self.live.update(self.history(), force=force, final=final)
        except Exception as exc:
            log.warning("traindoctor watch: live diagnosis failed: %s: %s", type(exc).__name__, exc)
            return []

    def history(self):
        """The run so far as a RunHistory (what `traindoctor diagnose LOGDIR` would read)."""
        return self.columns.history(path=str(self.logdir), hparams=self.hparams)

    # -- findings -------------------------------------------------------------------------------
    def _say(self, findings, *, act: bool = True) -> None:
        for f in findings:
            key = (f.code, f.metric)
            if self._reported.get(key, -1) >= f.severity.rank:
                continue
            self._reported[key] = f.severity.rank
            self.findings.append(f)
            log.log(_LEVEL[f.severity.value], "traindoctor [%s] %s", f.code, f.title)
            if act and self.on_finding != "log" and f.severity.rank >= self.stop_on.rank:
                self._act(f)

    def _act(self, finding) -> None:
        if self.on_finding == "raise":
            if self.ranks is None:
                self.should_stop = True
                raise TrainingFault(finding)
            self._request, self._pending = max(self._request, 2.0), finding  # every rank raises next step
        else:
            if self.ranks is None:
                self.should_stop = True
            self._request = max(self._request, 1.0)
            if not self.should_stop:
                log.warning("traindoctor watch: stopping the run at the next step (on_finding='stop')")

    def _apply_request(self, request: float) -> None:
        if request >= 1.0:
            self.should_stop = True
        if request >= 2.0:
            raise TrainingFault(getattr(self, "_pending", None) or _remote_finding())

    # -- the end --------------------------------------------------------------------------------
    def close(self, exc: BaseException | None = None) -> Report | None:
        """Finish: run every check once more on the whole run, write the reports, release the hooks."""
        if self._closed:
            return self.report_obj
        self._closed = True
        atexit.unregister(self._at_exit)
        self.recorder.close()
        if exc is None:
            self.ended = "stopped by traindoctor" if self.should_stop else "completed"
        elif isinstance(exc, KeyboardInterrupt):
            self.ended = "interrupted (KeyboardInterrupt)"
        else:
            self.ended = f"exception: {type(exc).__name__}: {exc}"
        if not self.is_writer:
            return None
        try:
            self.report_obj = self._final_report()
            if self._report_files:
                self._write_reports(self.report_obj)
        except Exception as e:  # the report must not mask the user's own exception
            log.warning("traindoctor watch: could not write the report: %s: %s", type(e).__name__, e)
        finally:
            self.runfile.close()
            try:
                status = ("KILLED" if self.ended.startswith("interrupted") else
                          "FAILED" if self.ended.startswith("exception") else "FINISHED")
                self.runfile.write_meta(ended=self.ended, status=status, steps=self.step_count)
            except Exception:
                pass
        return self.report_obj

    def _final_report(self) -> Report:
        from ..engine import diagnose

        history = self.history()
        if self.live is not None:
            self._say(self._live_update(final=True), act=False)
            base = self.live.report
        else:
            base = None
        if base is None:
            base = diagnose(history) if history.series else Report(source=history.source(), kind="watch")
        curve_keys = {(f.code, f.metric) for f in base.findings}
        extra = [f for f in self.findings if (f.code, f.metric) not in curve_keys and f not in base.findings]
        # the live checks' findings (probe codes) first: they are measured causes, e.g. the dead module
        findings = [f for f in extra if f.code not in {g.code for g in base.findings}] + list(base.findings) + \
            [f for f in extra if f.code in {g.code for g in base.findings}]
        meta = {**dict(base.meta), "ended": self.ended, "steps": self.step_count,
                "seconds": round(time.time() - self._t0, 3),
                "run_file": str(self.runfile.path),
                "watch": {"live_runs": getattr(self.live, "runs", 0),
                          "live_seconds": round(getattr(self.live, "seconds", 0.0), 4),
                          "switched_off": sorted(self.recorder.disabled)}}
        return Report(findings, base.skipped, history.source(), "watch", meta, history=history)

    def _write_reports(self, report: Report) -> None:
        for kind, name in REPORT_NAMES.items():
            path = self.logdir / name
            try:
                text = {"md": report.to_markdown, "html": report.to_html, "json": report.to_json}[kind]()
                path.write_text(text, encoding="utf-8")
            except Exception as exc:
                log.warning("traindoctor watch: could not write %s: %s: %s", path, type(exc).__name__, exc)
        log.info("traindoctor watch: report written to %s", self.logdir / REPORT_NAMES["md"])

    def _at_exit(self) -> None:
        # an HF Trainer, or a loop without `with`, that died: still leave the report behind
        if not self._closed:
            import sys

            # an uncaught exception is in sys.last_value by the time atexit runs
            exc = getattr(sys, "last_value", None)
            self.close(exc if exc is not None else RuntimeError("the interpreter exited before the run was closed"))


def _as_float(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if hasattr(v, "item") and getattr(v, "numel", lambda: 1)() == 1:
        try:
            return float(v.item())
        except (TypeError, ValueError):
            return None
    return None


def _remote_finding():
    from ..finding import Finding

    return Finding("rank_divergence", "error", "Rank 0 asked every rank to stop (on_finding='raise')")


def _mirror_fn(target):
    """A SummaryWriter (add_scalar), a Lightning/any logger (log_metrics) or a callable(dict, step)."""
    if target is None:
        return None
    if hasattr(target, "add_scalar"):
        def to_tb(values, step):
            for k, v in values.items():
                if math.isfinite(v):
                    target.add_scalar(f"traindoctor/{k}", v, step)
        return to_tb
    if hasattr(target, "log_metrics"):
        return lambda values, step: target.log_metrics({f"traindoctor/{k}": v for k, v in values.items()}, step=step)
    if callable(target):
        return target
    raise TypeError(f"mirror must be a SummaryWriter, a logger with log_metrics, or a callable; got {type(target).__name__}")


def _hparams(model, optimizers, ranks) -> dict:
    hp: dict = {"model": type(model).__name__,
                "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    for i, opt in enumerate(o for o in optimizers if o is not None):
        pre = "optimizer" if i == 0 else f"optimizer{i}"
        hp[pre] = type(opt).__name__
        for k in ("lr", "weight_decay", "momentum"):
            v = opt.param_groups[0].get(k) if opt.param_groups else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                hp[f"{pre}.{k}" if i else k] = float(v)
    if ranks is not None:
        hp["world_size"] = ranks.world
    return hp
