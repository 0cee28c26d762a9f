"""A tracking server that cannot be reached, refuses, times out or is not MLflow at all: one line
naming the URL and what to check, exit 2. Needs no mlflow: these are the servers people mistype."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from traindoctor.cli import main


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


def test_refused(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert main(["diagnose", f"http://127.0.0.1:{port}", "--experiment", "x"]) == 2
    err = _one_line(capsys)
    assert f"http://127.0.0.1:{port}" in err and "connection refused" in err and "mlflow server" in err


def test_times_out(capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "0.3")
    with socket.socket() as s:  # accepts connections (the kernel's backlog) and never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        assert main(["diagnose", url, "--experiment", "x"]) == 2
    err = _one_line(capsys)
    assert url in err and "did not answer within 0.3 s" in err and "MLFLOW_HTTP_REQUEST_TIMEOUT" in err


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 404

    def do_GET(self):  # noqa: N802 (http.server's spelling)
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>not here</html>")

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def web_server():
    def start(status):
        handler = type("H", (_Handler,), {"status": status})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    servers = []
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_not_an_mlflow_server(web_server, capsys):
    url = web_server(404)
    assert main(["diagnose", url, "--experiment", "x"]) == 2
    err = _one_line(capsys)
    assert url in err and "HTTP 404" in err and "MLflow tracking server" in err


def test_refuses_access(web_server, capsys):
    url = web_server(403)
    assert main(["diagnose", url, "--experiment", "x"]) == 2
    err = _one_line(capsys)
    assert url in err and "refused access (HTTP 403)" in err and "MLFLOW_TRACKING_USERNAME" in err


def test_server_without_experiment_and_no_path(capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["diagnose"]) == 2
    assert "MLFLOW_TRACKING_URI" in _one_line(capsys)
