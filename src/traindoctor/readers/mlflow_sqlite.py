"""MLflow's SQL tracking store in a SQLite file: `mlflow.db`, what MLflow 3 writes by default
(`mlflow.start_run()` in a fresh folder logs to `sqlite:///mlflow.db`).

The schema is MLflow's own (mlflow/store/tracking/dbmodels/models.py, migrated by alembic; the
revision read is `alembic_version.version_num`):

    experiments(experiment_id, name, lifecycle_stage, ...)
    runs(run_uuid, name, status, start_time, end_time, lifecycle_stage, experiment_id, ...)
    metrics(key, value, timestamp, run_uuid, step, is_nan)     one row per logged point
    params(key, value, run_uuid)    tags(key, value, run_uuid)

Read with the standard library's sqlite3 and no mlflow import. The file is opened read-only
(`mode=ro`): we never write to it, and a training process logging to it waits at most for one of
our queries (one metric of one run), because each query is its own short read transaction;
MLflow's sessions wait up to 20 s for a lock (PRAGMA busy_timeout = 20000, mlflow/store/db/utils.py).

Speed: a Python sqlite3 row costs most of a microsecond, so each row is three numbers that go
straight from the cursor into one float64 array (np.fromiter over the flattened rows: 20% less
CPU than a record array), one query per metric so the key is not re-read per row. NaN comes back
as +inf: MLflow writes NaN as 0 with is_nan=1 and an infinity as +/-DBL_MAX, so an infinity in
the value column is never anything else.
The query uses the primary-key index (key, timestamp, step, run_uuid, value, is_nan), which holds
every column (no table look-ups), when the run owns a good share of the table; otherwise MLflow's
index on (run_uuid, key, step), so one run of a big store costs its own rows, not everyone's.
"""

from __future__ import annotations

import itertools
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..history import Series
from .mlflow_common import MlflowRun, advance_cursor, metric_series, unseen

SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = ("experiments", "runs", "metrics", "params", "tags")
_RUN_KEY_STEP_INDEX = "index_metrics_run_uuid_key_step"  # MLflow 3.x, revision a5b4c3d2e1f0
# Use the covering key index when the run holds at least this share of all metric rows: scanning
# other runs' rows in C costs ~1/20 of reading a row into Python, a table look-up about half.
_COVER_SHARE = 0.1


@dataclass(frozen=True)
class Store:
    """An open, read-only MLflow SQLite store and what its schema offers."""

    path: Path
    conn: sqlite3.Connection = field(repr=False)
    revision: str  # alembic_version.version_num, "" when the table is empty or absent
    columns: dict[str, frozenset[str]] = field(repr=False)
    indexes: frozenset[str] = field(repr=False)

    def close(self) -> None:
        self.conn.close()


def looks_like_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def is_store(path: Path) -> bool:
    """A SQLite file holding MLflow's tracking tables (cheap: the header, then the table list)."""
    if not looks_like_sqlite(path):
        return False
    try:
        conn = _connect(path)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return {"runs", "metrics", "experiments"} <= names


def _connect(path: Path) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(str(Path(path).resolve())) + "?mode=ro"
    # timeout: if the writer holds its lock for a moment, wait for it rather than fail
    return sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None, check_same_thread=False)


def open_store(path) -> Store:
    path = Path(path)
    if not looks_like_sqlite(path):
        raise InputError(path, "not a SQLite database; expected the mlflow.db that MLflow's SQL "
                               "store writes (sqlite:///mlflow.db)")
    try:
        conn = _connect(path)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        hint = _journal_hint(path) or "; check the file's permissions and that it is not truncated"
        raise InputError(path, f"cannot open this SQLite database read-only ({exc}){hint}") from None
    missing = [t for t in _TABLES if t not in tables]
    if missing:
        conn.close()
        raise InputError(path, f"a SQLite database, but not an MLflow tracking store (no {', '.join(missing)} "
                               "table); expected the mlflow.db written by mlflow with sqlite:///mlflow.db")
    try:
        columns = {t: frozenset(r[1] for r in conn.execute(f"PRAGMA table_info({t})")) for t in _TABLES}
        indexes = frozenset(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'"))
        revision = ""
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = str(row[0]) if row else ""
    except sqlite3.Error as exc:
        conn.close()
        raise InputError(path, f"cannot read MLflow's schema from this database ({exc}); "
                               "is the file complete?") from None
    return Store(path, conn, revision, columns, indexes)


def list_runs(store: Store, *, include_deleted: bool = False) -> list[MlflowRun]:
    """Every run with its experiment, status, times and tags, oldest first."""
    rc = store.columns["runs"]
    name_col = "r.name" if "name" in rc else "NULL"
    rows = _query(store, f"""
        SELECT r.run_uuid, {name_col}, r.status, r.start_time, r.end_time, r.lifecycle_stage,
               r.experiment_id, e.name, e.lifecycle_stage, r.artifact_uri
        FROM runs r LEFT JOIN experiments e ON e.experiment_id = r.experiment_id
        ORDER BY r.start_time, r.run_uuid""")
    tags: dict[str, dict[str, str]] = {}
    for rid, key, value in _query(store, "SELECT run_uuid, key, value FROM tags"):
        tags.setdefault(rid, {})[key] = value
    runs = []
    for rid, name, status, start, end, stage, exp_id, exp_name, exp_stage, artifacts in rows:
        deleted = "deleted" in (stage, exp_stage)
        if deleted and not include_deleted:
            continue
        t = tags.get(rid, {})
        runs.append(MlflowRun(
            run_id=rid, name=name or t.get("mlflow.runName", ""),
            experiment_id=str(exp_id) if exp_id is not None else "", experiment=exp_name or "",
            status=str(status or ""), start_time=start, end_time=end,
            lifecycle_stage="deleted" if deleted else "active", tags=t, artifact_uri=artifacts or ""))
    return runs


def read_params(store: Store, run_id: str) -> dict[str, str]:
    return dict(_query(store, "SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)))


def read_metrics(store: Store, run_id: str, since: dict | None = None) -> tuple[dict[str, Series], list[str], dict]:
    """A run's metrics: {key: Series}, notes, and a cursor for `since` to read only newer points.

    The cursor maps each key to (last timestamp read, rows read at that timestamp): MLflow orders
    a metric's history by (timestamp, step, value), so the next read asks for timestamp >= last
    and drops the rows it already has at exactly that millisecond.
    """
    counts = dict(_query(store, "SELECT key, count(*) FROM metrics WHERE run_uuid = ? GROUP BY key", (run_id,)))
    if not counts:
        return {}, [], dict(since or {})
    mc = store.columns["metrics"]
    step = "step" if "step" in mc else "0"  # before MLflow 0.9 (revision 451aebb31d03) there was no step
    nan = "value IS NULL OR is_nan" if "is_nan" in mc else "value IS NULL"
    cols = f"CASE WHEN {nan} THEN 9e999 ELSE value END, timestamp, {step}"  # 9e999 is +inf in SQLite
    total = _query(store, "SELECT max(rowid) FROM metrics")[0][0] or 0
    if sum(counts.values()) >= _COVER_SHARE * total:
        src, where = "metrics", "key = ? AND +run_uuid = ?"
        order = lambda k: (k, run_id)  # noqa: E731
    else:
        hint = f" INDEXED BY {_RUN_KEY_STEP_INDEX}" if _RUN_KEY_STEP_INDEX in store.indexes else ""
        src, where = f"metrics{hint}", "run_uuid = ? AND key = ?"
        order = lambda k: (run_id, k)  # noqa: E731
    series: dict[str, Series] = {}
    notes: list[str] = []
    cursor = dict(since or {})
    for key in sorted(counts):
        args = order(key)
        sql = f"SELECT {cols} FROM {src} WHERE {where}"
        last = cursor.get(key)
        if last is not None:
            sql += " AND timestamp >= ?"
            args = (*args, last[0])
        try:
            flat = np.fromiter(itertools.chain.from_iterable(store.conn.execute(sql, args)), dtype=np.float64)
        except sqlite3.Error as exc:
            raise InputError(store.path, f"cannot read metric {key!r} of run {run_id} ({exc})"
                                         f"{_journal_hint(store.path)}") from None
        if last is not None:
            flat = flat.reshape(-1, 3)[unseen(flat[1::3], flat[2::3], flat[0::3], last)].ravel()
        if flat.size == 0:
            continue
        values, ts, steps = flat[0::3], flat[1::3].astype(np.int64), flat[2::3].astype(np.int64)
        s, note = metric_series(key, values, ts, steps, is_nan=values == np.inf)
        cursor[key] = advance_cursor(ts, last)
        series[key] = s
        if note:
            notes.append(note)
    return series, notes, cursor


def _query(store: Store, sql: str, args=()) -> list[tuple]:
    try:
        return store.conn.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise InputError(store.path, f"cannot read MLflow's tables ({exc}); schema revision "
                                     f"{store.revision or 'unknown'}{_journal_hint(store.path)}") from None


def _journal_hint(path: Path) -> str:
    # A writer killed inside a transaction leaves a hot journal that only a writable connection
    # may roll back; we open read-only on purpose, so say how to recover instead.
    if Path(f"{path}-journal").exists():
        return (f"; {Path(path).name}-journal is left from a writer that died mid-write: let mlflow "
                "(or `sqlite3 mlflow.db 'PRAGMA integrity_check'`) open the file once to roll it back")
    return ""
