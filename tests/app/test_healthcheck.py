"""``python -m app.healthcheck`` (the container health check) against a stand-in server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from app import healthcheck
from app.settings import Settings


class _Ready(http.server.BaseHTTPRequestHandler):
    status = 200
    seen_keys: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        _Ready.seen_keys.append(self.headers.get("X-API-Key"))
        self.send_response(_Ready.status if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_ready_is_healthy_loading_is_not(server_port, monkeypatch):
    monkeypatch.setenv("CENTAURUS_PORT", str(server_port))
    _Ready.status = 200
    assert healthcheck.main() == 0
    _Ready.status = 503
    assert healthcheck.main() == 1


def test_no_server_is_unhealthy(server_port, monkeypatch):
    monkeypatch.setenv("CENTAURUS_PORT", "1")
    assert healthcheck.main(timeout_seconds=1) == 1


def test_key_is_sent_only_when_health_needs_one():
    assert healthcheck.ready_request(Settings(api_keys="a,b")).get_header("X-api-key") is None
    request = healthcheck.ready_request(Settings(api_keys="a,b", ops_require_key=True, port=9000))
    assert request.get_header("X-api-key") == "a" and request.full_url == "http://127.0.0.1:9000/health/ready"
