"""An MLflow tracking server (`mlflow server`), read through MLflow's REST API with the standard
library's HTTP client. One path serves every backend the server supports (SQLite, PostgreSQL,
MySQL, a file store): the server does the SQL.

Endpoints (https://mlflow.org/docs/latest/api_reference/rest-api.html):
    GET  /api/2.0/mlflow/experiments/get-by-name   ?experiment_name=
    POST /api/2.0/mlflow/experiments/search        (to list experiments in an error message)
    POST /api/2.0/mlflow/runs/search               {experiment_ids, run_view_type, page_token}
    GET  /api/2.0/mlflow/runs/get                  ?run_id=
    GET  /api/2.0/mlflow/metrics/get-history       ?run_id=&metric_key=&max_results=&page_token=

Metric histories come from get-history, paged (_PAGE points a request), because it returns every
point; get-history-bulk-interval is faster but samples a history down to at most 2,500 steps
(MAX_RESULTS_PER_RUN in mlflow/server/handlers.py), and a diagnosis needs every point.

Auth as MLflow's own client does it: MLFLOW_TRACKING_TOKEN (bearer) or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD (basic); timeout MLFLOW_HTTP_REQUEST_TIMEOUT seconds (default 30 here).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..history import Series
from .mlflow_common import MlflowRun, advance_cursor, metric_series, unseen

_PAGE = 25_000  # points per get-history request (the server's own bulk limit, MAX_HISTORY_RESULTS)
_RUNS_PAGE = 1000
_DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    """Where the server is, and what the URL itself named (a link copied from the MLflow UI,
    http://host:5000/#/experiments/3/runs/<id>, names an experiment and a run)."""

    base: str  # scheme://host:port[/prefix], no trailing slash
    experiment_id: str | None = None
    run_id: str | None = None
    timeout: float = _DEFAULT_TIMEOUT

    @classmethod
    def parse(cls, url: str, timeout: float | None = None) -> Server:
        parts = urllib.parse.urlsplit(url)
        if not parts.netloc:
            raise InputError(url, "expected a tracking server URL such as http://localhost:5000")
        exp = run = None
        frag = [p for p in parts.fragment.split("/") if p]
        if len(frag) >= 2 and frag[0] == "experiments":
            exp = frag[1]
            if len(frag) >= 4 and frag[2] == "runs":
                run = frag[3]
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        if timeout is None:
            try:
                timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", _DEFAULT_TIMEOUT))
            except ValueError:
                timeout = _DEFAULT_TIMEOUT
        return cls(base, exp, run, timeout)

    def ui_link(self, run: MlflowRun) -> str:
        return f"{self.base}/#/experiments/{run.experiment_id}/runs/{run.run_id}"

    # -- HTTP -------------------------------------------------------------------------------
    def call(self, endpoint: str, *, query: dict | None = None, body: dict | None = None) -> dict:
        """One REST call; every failure is an InputError naming the URL and what to check."""
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
        req.add_header("Content-Type", "application/json")
        req.add_header("User-Agent", "traindoctor")
        auth = _auth_header()
        if auth:
            req.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            err = self._http_error(exc, endpoint)
            err.http_status = exc.code
            raise err from None
        except TimeoutError:
            raise InputError(self.base, f"the tracking server did not answer within {self.timeout:g} s; "
                                        "check that it is up and not overloaded, or raise "
                                        "MLFLOW_HTTP_REQUEST_TIMEOUT") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise InputError(self.base, f"the tracking server did not answer within {self.timeout:g} s; "
                                            "check that it is up and not overloaded, or raise "
                                            "MLFLOW_HTTP_REQUEST_TIMEOUT") from None
            raise InputError(self.base, f"cannot reach the tracking server ({_reason(reason)}); check that "
                                        "`mlflow server` is running there and the host and port are right") from None
        except (OSError, ValueError) as exc:
            raise InputError(self.base, f"cannot reach the tracking server ({exc}); check the URL") from None
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise InputError(self.base, f"{endpoint} answered with something that is not JSON; is this "
                                        "an MLflow tracking server (and the URL its root)?") from None

    def _http_error(self, exc: urllib.error.HTTPError, endpoint: str) -> InputError:
        try:
            detail = json.loads(exc.read() or b"{}")
        except (ValueError, OSError):
            detail = {}
        msg = detail.get("message") if isinstance(detail, dict) else None
        if exc.code in (401, 403):
            return InputError(self.base, f"the tracking server refused access (HTTP {exc.code}); set "
                                         "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                                         "MLFLOW_TRACKING_TOKEN")
        if msg:
            return InputError(self.base, f"{endpoint}: {msg} (HTTP {exc.code})")
        return InputError(self.base, f"{endpoint} failed with HTTP {exc.code} {exc.reason}; is this an "
                                     "MLflow tracking server (and the URL its root)?")

    # -- entities ---------------------------------------------------------------------------
    def experiment_by_name(self, name: str) -> dict:
        try:
            return self.call("experiments/get-by-name", query={"experiment_name": name})["experiment"]
        except InputError as exc:
            if getattr(exc, "http_status", None) == 404:
                raise InputError(self.base, f"no experiment named {name!r}; experiments here: "
                                            f"{self.experiment_names()}") from None
            raise

    def experiment_names(self) -> str:
        out = self.call("experiments/search", body={"max_results": 100, "view_type": "ACTIVE_ONLY"})
        names = [e.get("name", "") for e in out.get("experiments", [])]
        return ", ".join(repr(n) for n in names) or "none"

    def experiment_by_id(self, experiment_id: str) -> dict:
        return self.call("experiments/get", query={"experiment_id": experiment_id})["experiment"]

    def search_runs(self, experiment: dict) -> list[tuple[MlflowRun, dict]]:
        """Every active run of an experiment, oldest first, with its raw data (params, latest metrics)."""
        runs, token = [], None
        while True:
            body = {"experiment_ids": [experiment["experiment_id"]], "max_results": _RUNS_PAGE,
                    "run_view_type": "ACTIVE_ONLY", "order_by": ["attributes.start_time ASC"]}
            if token:
                body["page_token"] = token
            out = self.call("runs/search", body=body)
            runs += [(_run(r, experiment.get("name", "")), r.get("data", {})) for r in out.get("runs", [])]
            token = out.get("next_page_token")
            if not token:
                return runs

    def get_run(self, run_id: str) -> tuple[MlflowRun, dict]:
        """The run and its raw `data` (params, latest metrics)."""
        raw = self.call("runs/get", query={"run_id": run_id})["run"]
        exp_id = raw.get("info", {}).get("experiment_id", "")
        return _run(raw, self.experiment_by_id(exp_id).get("name", "")), raw.get("data", {})

    def metric_history(self, run_id: str, key: str) -> dict[str, np.ndarray]:
        vals, ts, steps = [], [], []
        token = None
        while True:
            q = {"run_id": run_id, "metric_key": key, "max_results": _PAGE}
            if token:
                q["page_token"] = token
            out = self.call("metrics/get-history", query=q)
            pts = out.get("metrics", [])
            # protobuf JSON writes NaN and infinities as the strings "NaN", "Infinity"; float() reads both
            vals += [float(m.get("value", "NaN")) for m in pts]
            ts += [int(m.get("timestamp", 0)) for m in pts]
            steps += [int(m.get("step", 0)) for m in pts]
            token = out.get("next_page_token")
            if not token or not pts:
                break
        return {"value": np.array(vals, dtype=np.float64), "timestamp": np.array(ts, dtype=np.int64),
                "step": np.array(steps, dtype=np.int64)}

    def read_metrics(self, run_id: str, data: dict, since: dict | None = None) -> tuple[dict[str, Series], list[str], dict]:
        """Like mlflow_sqlite.read_metrics. `data` is the run's data from runs/search or runs/get:
        its latest value per key says which histories changed since the cursor."""
        series: dict[str, Series] = {}
        notes: list[str] = []
        cursor = dict(since or {})
        latest = {m["key"]: int(m.get("timestamp", 0)) for m in data.get("metrics", []) if "key" in m}
        for key in sorted(latest):
            last = cursor.get(key)
            if last is not None and latest[key] < last[0]:
                continue  # nothing newer than what was read (the common case while following)
            h = self.metric_history(run_id, key)
            keep = unseen(h["timestamp"], h["step"], h["value"], last)
            if keep.size == 0:
                continue
            s, note = metric_series(key, h["value"][keep], h["timestamp"][keep], h["step"][keep])
            cursor[key] = advance_cursor(h["timestamp"][keep], last)
            series[key] = s
            if note:
                notes.append(note)
        return series, notes, cursor


def _run(raw: dict, experiment_name: str) -> MlflowRun:
    info = raw.get("info", {})
    data = raw.get("data", {})
    tags = {t["key"]: t.get("value", "") for t in data.get("tags", []) if "key" in t}
    return MlflowRun(
        run_id=info.get("run_id") or info.get("run_uuid", ""),
        name=info.get("run_name") or tags.get("mlflow.runName", ""),
        experiment_id=str(info.get("experiment_id", "")), experiment=experiment_name,
        status=str(info.get("status", "")),
        start_time=_int(info.get("start_time")), end_time=_int(info.get("end_time")),
        lifecycle_stage=info.get("lifecycle_stage", "active"), tags=tags,
        artifact_uri=info.get("artifact_uri", ""))


def params_of(data: dict) -> dict[str, str]:
    return {p["key"]: p.get("value", "") for p in data.get("params", []) if "key" in p}


def _int(v) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _auth_header() -> str | None:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return f"Bearer {token}"
    user, pw = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and pw:
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
    return None


def _reason(reason) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    return str(reason)
