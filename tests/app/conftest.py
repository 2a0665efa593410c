"""Fixtures for the service tests (helpers live in service_testkit)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_testkit import build_tiny_models, free_port, settings_for, start_server, stop_server, wait_ready

from app.main import create_app


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    return build_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def client(tiny_models):
    """The default configuration (worker processes), shared by the endpoint tests."""
    with TestClient(create_app(settings_for(tiny_models))) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="session")
def loopback_server(tiny_models, tmp_path_factory):
    """A real ``centaurus-speech serve`` on loopback, shared by the fuzz and fault tests (one start is the
    expensive part). Small limits, so oversized bodies and over-long audio are cheap to send; 1 s chunks, so
    a clip of a few seconds already runs through a resident session; a 3 s stream idle timeout, so a fuzzed
    stream that never starts a session is closed by the server in seconds, not the default 30. It serves Wyoming
    too, on ``loopback_server.wyoming_port``."""
    port = free_port()
    running = start_server(tiny_models, tmp_path_factory.mktemp("loopback") / "server.log", max_upload_mb="2",
                           max_audio_seconds="30", chunk_seconds="1", stream_idle_timeout_seconds="3",
                           wyoming_uri=f"tcp://127.0.0.1:{port}")
    running.wyoming_port = port
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def keyed_server(tiny_models, tmp_path_factory):
    """A real server that needs an API key (``keyed_server.headers["X-API-Key"]``), shared by the tests of the
    Python client, the client commands and the demo page."""
    running = start_server(tiny_models, tmp_path_factory.mktemp("keyed") / "server.log", ready_timeout=120,
                           api_keys="client-key", stream_ping_timeout_seconds="20")
    yield running
    stop_server(running)
