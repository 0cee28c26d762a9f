"""MLflow as people run it today: the SQLite store MLflow 3 writes by default (mlflow.db) and a
tracking server, each holding many runs. One RunHistory per MLflow run, with the run's status;
and `read_new_points` for following a RUNNING run (`traindoctor watch`).

Where runs come from:
    mlflow_sqlite.py  the mlflow.db file, read-only with sqlite3
    mlflow_server.py  a tracking server's REST API, with urllib
    mlflow.py         the older mlruns/ file store, and mlflow.db files found inside a folder
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..history import RunHistory, Series
from . import Part
from . import mlflow_sqlite as sq
from .mlflow_common import MlflowRun, cast_param, is_url, run_meta, select_runs, status_notes, unique_labels

FORMAT = "mlflow"

__all__ = ["is_target", "load_runs", "store_parts", "read_new_points", "NewPoints", "sqlite_path"]


def sqlite_path(target) -> Path | None:
    """The file a `sqlite:///mlflow.db` URI (MLflow's own spelling) names; None for anything else.
    sqlite:///rel/path is relative to the current folder, sqlite:////abs/path absolute."""
    if not isinstance(target, str) or not target.lower().startswith("sqlite:"):
        return None
    rest = target.split(":", 1)[1]
    if rest.startswith("///"):
        return Path(urllib.parse.unquote(rest[3:]))
    raise InputError(target, "expected an MLflow SQLite URI like sqlite:///mlflow.db")


def is_target(target) -> bool:
    """A tracking server URL, a sqlite:/// URI, or a SQLite file (read as an MLflow store: one that
    is not, or cannot be opened, gets a one-line error saying so, not "binary file")."""
    if is_url(target) or sqlite_path(target) is not None:
        return True
    if isinstance(target, str) and "://" in target:
        return False
    p = Path(target).expanduser()
    return p.is_file() and sq.looks_like_sqlite(p)


def load_runs(target, *, experiment: str | None = None, run: str | None = None, progress=None) -> list[RunHistory]:
    if is_url(target):
        return _server_runs(str(target), experiment, run, progress)
    path = sqlite_path(target) or Path(target).expanduser()
    if not path.exists():
        raise InputError(path, "no such file; expected an mlflow.db written by MLflow's SQL store")
    parts = store_parts(path, experiment=experiment, run=run, progress=progress)
    return [_history(p) for p in parts]


# -- SQLite --------------------------------------------------------------------------------------
def store_parts(path: Path, *, experiment=None, run=None, progress=None) -> list[Part]:
    """One Part per run of an mlflow.db (also used when the file is found inside a folder)."""
    store = sq.open_store(path)
    try:
        runs = sq.list_runs(store, include_deleted=run is not None)
        if not runs:
            raise InputError(path, f"this MLflow store holds no runs (schema revision {store.revision or 'unknown'}); "
                                   "log one with mlflow.start_run()")
        chosen = select_runs(runs, str(path), experiment=experiment, run=run)
        labels = dict(zip((r.run_id for r in runs), unique_labels(runs)))
        parts = []
        for i, r in enumerate(chosen):
            if progress is not None:
                progress(i, len(chosen), Path(labels[r.run_id]))
            series, notes, _ = sq.read_metrics(store, r.run_id)
            params = sq.read_params(store, r.run_id)
            parts.append(_part(r, labels[r.run_id], series, params, notes, Path(path) / r.run_id,
                               store="sqlite", schema_revision=store.revision))
        if progress is not None:
            progress(len(chosen), len(chosen), None)
        return parts
    finally:
        store.close()


# -- tracking server -----------------------------------------------------------------------------
def _server_runs(url: str, experiment, run, progress) -> list[RunHistory]:
    from .mlflow_server import Server, params_of  # urllib.request: only for servers

    server = Server.parse(url)
    experiment = experiment or server.experiment_id
    run = run or server.run_id
    if experiment is None and run is not None and _looks_like_run_id(run):
        pairs = [server.get_run(run)]
        labels = unique_labels([pairs[0][0]])
    else:
        if experiment is None:
            raise InputError(url, "name the experiment to read: --experiment NAME (or a UI link "
                                  f"http://host:port/#/experiments/ID); experiments here: {server.experiment_names()}")
        exp = _experiment(server, experiment)
        pairs = server.search_runs(exp)
        if not pairs:
            raise InputError(url, f"experiment {exp.get('name', experiment)!r} has no runs")
        all_labels = unique_labels([r for r, _ in pairs])
        chosen = {r.run_id for r in select_runs([r for r, _ in pairs], url, run=run)}
        keep = [i for i, (r, _) in enumerate(pairs) if r.run_id in chosen]
        pairs, labels = [pairs[i] for i in keep], [all_labels[i] for i in keep]
    out = []
    for i, ((r, data), label) in enumerate(zip(pairs, labels)):
        if progress is not None:
            progress(i, len(pairs), Path(label))
        series, notes, _ = server.read_metrics(r.run_id, data)
        part = _part(r, label, series, params_of(data), notes, None, store="server", server=server.base)
        out.append(_history(part, path=server.ui_link(r)))
    if progress is not None:
        progress(len(pairs), len(pairs), None)
    return out


def _experiment(server, experiment: str) -> dict:
    try:
        return server.experiment_by_name(experiment)
    except InputError:
        if experiment.isdigit():  # an experiment id, as in the UI's address bar
            return server.experiment_by_id(experiment)
        raise


def _looks_like_run_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


# -- shared ---------------------------------------------------------------------------------------
def _part(r: MlflowRun, label: str, series: dict[str, Series], params: dict, notes: list[str],
          run_dir: Path | None, **meta_extra) -> Part:
    if not series:
        notes = [*notes, "this run has logged no metrics (yet)"]
    from . import cumulative_time  # an "elapsed" metric becomes the clock, as for every format

    return cumulative_time(Part(
        series, run_dir if run_dir is not None else Path(r.run_id), FORMAT,
        hparams={k: cast_param(v) for k, v in params.items()},
        notes=status_notes(r) + notes, run=label, status=r.status,
        meta=run_meta(r, **meta_extra), checkpoints=_artifact_checkpoints(r.artifact_uri),
        search_disk=False))  # the run's "folder" is inside mlflow.db: beside it lie other runs' files


def _history(part: Part, path: str | None = None) -> RunHistory:
    return RunHistory(part.series, path=path or str(part.run_dir), format=part.format, run=part.run or "",
                      hparams=part.hparams, checkpoints=tuple(part.checkpoints), notes=tuple(part.notes),
                      status=part.status, meta=part.meta)


def _artifact_checkpoints(artifact_uri: str) -> list:
    """Checkpoints the run logged as artifacts, when they sit on this machine's disk."""
    if not artifact_uri:
        return []
    if artifact_uri.startswith("file:"):
        artifact_uri = urllib.parse.unquote(urllib.parse.urlsplit(artifact_uri).path)
    elif "://" in artifact_uri or ":" in artifact_uri.split("/", 1)[0]:
        return []  # s3://, gs://, mlflow-artifacts:, dbfs:
    d = Path(artifact_uri)
    if not d.is_dir():
        return []
    from . import find_checkpoints

    return [c for c in find_checkpoints(d) if Path(c.path).is_relative_to(d)]


# -- following a live run -------------------------------------------------------------------------
@dataclass(frozen=True)
class NewPoints:
    """What `read_new_points` found: the points logged since `cursor` was taken."""

    series: dict[str, Series]  # only the new points of each metric that has any
    cursor: dict  # pass back to the next call
    status: str  # RUNNING while the run goes on; FINISHED, FAILED or KILLED when it has ended
    notes: tuple[str, ...] = ()


def read_new_points(target, run_id: str, cursor: dict | None = None) -> NewPoints:
    """The metric points of one MLflow run logged since `cursor` (all of them when None).

    `target`: an mlflow.db path, a sqlite:/// URI or a tracking server URL. Call it again with the
    returned cursor to get only what was logged in between. On mlflow.db the database's index
    (key, timestamp) finds the new rows; on a server, only metrics whose latest timestamp moved
    are fetched again (the REST API has no "since" filter) and the old points are cut off here.
    """
    if is_url(target):
        from .mlflow_server import Server

        server = Server.parse(str(target))
        r, data = server.get_run(run_id)
        series, notes, cur = server.read_metrics(r.run_id, data, since=cursor)
        return NewPoints(series, cur, r.status, tuple(notes))
    path = sqlite_path(target) or Path(target).expanduser()
    store = sq.open_store(path)
    try:
        runs = select_runs(sq.list_runs(store, include_deleted=True), str(path), run=run_id)
        series, notes, cur = sq.read_metrics(store, runs[0].run_id, since=cursor)
        return NewPoints(series, cur, runs[0].status, tuple(notes))
    finally:
        store.close()
