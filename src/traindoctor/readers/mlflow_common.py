"""What MLflow's three stores share: a run's identity and status, and turning raw metric rows
(key, value, timestamp, step, is_nan) into Series the same way whichever store they came from.

The file store (mlruns/), the SQL store (mlflow.db) and a tracking server (REST) all hold the
same entities (mlflow/entities: Experiment, RunInfo, Metric, Param, RunTag); only the transport
differs, so the rules about what a value means live here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..history import Series

# MLflow's SQL store cannot hold an infinity, so it writes +/-DBL_MAX instead and never maps it
# back (mlflow/store/tracking/sqlalchemy_store.py, sanitize_metric_value); the server returns
# that stand-in too. A value of exactly +/-DBL_MAX is the infinity the user logged.
_DBL_MAX = np.finfo(np.float64).max

# RunStatus in mlflow/protos/service.proto (the file store writes the number, SQL and REST the name)
STATUS_NAMES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


def is_url(target) -> bool:
    """A tracking server's address (http:// or https://)."""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in ("http", "https")


@dataclass(frozen=True)
class MlflowRun:
    """One MLflow run's identity, as every store describes it."""

    run_id: str
    name: str = ""
    experiment_id: str = ""
    experiment: str = ""
    status: str = ""  # RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
    start_time: int | None = None  # ms since the epoch
    end_time: int | None = None
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    artifact_uri: str = ""

    @property
    def label(self) -> str:
        """"experiment/run name", what a person recognises in the MLflow UI."""
        return f"{self.experiment or self.experiment_id}/{self.name or self.run_id}"


def status_notes(run: MlflowRun) -> list[str]:
    """What the report must say about how the run ended (a crashed run is what people come with)."""
    notes = []
    if run.status in ("FAILED", "KILLED"):
        notes.append(f"MLflow marks this run {run.status}: its metrics stop where it died")
    elif run.status == "RUNNING" and not run.end_time:
        notes.append("MLflow still marks this run RUNNING: it is in progress, or its process died "
                     "without ending the run (killed, out of memory, preempted)")
    if run.lifecycle_stage == "deleted":
        notes.append("MLflow marks this run deleted")
    return notes


def run_meta(run: MlflowRun, **extra) -> dict[str, Any]:
    """The run's identity for `RunHistory.meta` (JSON-safe; not hyperparameters, so `compare`
    does not list a run id as a hyperparameter that differs)."""
    meta: dict[str, Any] = {"run_id": run.run_id, "run_name": run.name, "experiment": run.experiment,
                            "experiment_id": run.experiment_id, "status": run.status,
                            "start_time": _iso(run.start_time), "end_time": _iso(run.end_time)}
    user_tags = {k: v for k, v in run.tags.items() if not k.startswith("mlflow.")}
    if user_tags:
        meta["tags"] = user_tags
    for key in ("mlflow.source.name", "mlflow.source.git.commit", "mlflow.user", "mlflow.parentRunId"):
        if run.tags.get(key):
            meta[key.removeprefix("mlflow.")] = run.tags[key]
    meta.update(extra)
    return {k: v for k, v in meta.items() if v not in (None, "")}


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")


def metric_series(key: str, values, timestamps, steps, is_nan=None) -> tuple[Series, str | None]:
    """Rows of one metric, in any order -> a Series sorted by (step, timestamp), and a note.

    Every point is kept (a step logged twice stays twice, the later one last: Series.normalized
    keeps the last). NaN comes back as NaN, +/-DBL_MAX as +/-inf. A metric logged several times
    with one step for all (mlflow.log_metric without step= writes step 0 every time) is ordered
    by timestamp and numbered 0, 1, 2, ...; the note says so.
    """
    values = np.array(values, dtype=np.float64)
    ts = np.asarray(timestamps, dtype=np.int64)
    st = np.asarray(steps, dtype=np.int64)
    if is_nan is not None:
        values[np.asarray(is_nan, dtype=bool)] = np.nan
    values[values == _DBL_MAX] = np.inf
    values[values == -_DBL_MAX] = -np.inf
    note = None
    if st.size > 1 and (st == st[0]).all():
        order = np.argsort(ts, kind="stable")
        st_out = np.arange(st.size, dtype=np.float64)
        note = (f"{key}: all {st.size} points were logged at step {int(st[0])} (no step= given); "
                f"read in timestamp order as steps 0..{st.size - 1}")
    else:
        order = np.lexsort((ts, st))
        st_out = st[order].astype(np.float64)
    return Series(key, st_out, values[order], None, ts[order] / 1000.0), note


def cast_param(text: str):
    """MLflow stores every param as a string; give numbers back as numbers for `compare`."""
    for cast in (int, float):
        try:
            return cast(text)
        except (TypeError, ValueError):
            continue
    return text


def select_runs(runs: list[MlflowRun], where: str, *, experiment: str | None = None,
                run: str | None = None) -> list[MlflowRun]:
    """The runs the user named: `experiment` by name or id, `run` by id (or its first 8+
    characters), name, or "experiment/name". No match is an InputError listing what there is."""
    from ..errors import InputError

    if experiment is not None:
        exps = sorted({(r.experiment, r.experiment_id) for r in runs})
        runs = [r for r in runs if experiment in (r.experiment, r.experiment_id)]
        if not runs:
            known = ", ".join(f"{n!r} (id {i})" for n, i in exps) or "none"
            raise InputError(where, f"no experiment named {experiment!r} with runs; experiments: {known}")
    if run is not None:
        hit = [r for r in runs if run in (r.run_id, r.name, r.label)
               or (len(run) >= 8 and r.run_id.startswith(run))]
        if not hit:
            shown = ", ".join(f"{r.label} ({r.run_id[:8]})" for r in runs[:10])
            raise InputError(where, f"no run {run!r}; runs: {shown}{', ...' if len(runs) > 10 else ''} "
                                    "(--run takes a run id, a run name or experiment/name)")
        runs = hit
    return runs


def unique_labels(runs: list[MlflowRun]) -> list[str]:
    """experiment/name for each run; a name used twice in one experiment (a re-run "baseline")
    gets its run id's first 8 characters."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.label] = counts.get(r.label, 0) + 1
    return [f"{r.label}@{r.run_id[:8]}" if counts[r.label] > 1 else r.label for r in runs]


# -- following a live run ------------------------------------------------------------------------
# A cursor maps a metric key to (last timestamp read, rows read at that timestamp). MLflow orders
# a metric's history by (timestamp, step, value) (SqlAlchemyStore.get_metric_history), so the
# rows newer than a cursor are those after the first `n` rows at its timestamp.
def unseen(timestamps, steps, values, last: tuple[int, int] | None) -> np.ndarray:
    """Indices of the rows not yet read, in MLflow's (timestamp, step, value) order."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if last is None:
        return np.arange(ts.size)
    order = np.lexsort((np.asarray(values), np.asarray(steps), ts))
    ts_sorted = ts[order]
    first_new = int(np.searchsorted(ts_sorted, last[0], side="left"))
    at_last = int(np.searchsorted(ts_sorted, last[0], side="right")) - first_new
    return order[first_new + min(last[1], at_last):]


def advance_cursor(new_timestamps, last: tuple[int, int] | None) -> tuple[int, int]:
    ts = np.asarray(new_timestamps, dtype=np.int64)
    top = int(ts.max())
    n = int(np.count_nonzero(ts == top))
    if last is not None and last[0] == top:
        n += last[1]
    return top, n
