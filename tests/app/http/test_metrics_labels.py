"""``/metrics`` labels every request by its route's template: each route its own label (FastAPI's routes, the plain
Starlette ones such as ``/openapi.json``, the docs pages and their mounted assets), unknown paths one ``unmatched``."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from service_testkit import settings_for
from starlette.routing import Mount, WebSocketRoute

from app.main import create_app


@pytest.fixture(scope="module")
def app_client(tiny_models):
    # The pool is not started (no lifespan): labels need no models, and 503s are labelled like any answer.
    return TestClient(create_app(settings_for(tiny_models, worker_mode="thread")))


def labels(client, method: str | None = None) -> set[str]:
    text = client.get("/metrics").text
    found = re.findall(r'^centaurus_requests_total\{endpoint="([^"]*)",method="([^"]*)"', text, re.M)
    return {endpoint for endpoint, m in found if method is None or m == method}


def unmatched_requests(client) -> float:
    """How many requests ``/metrics`` has counted under ``unmatched`` so far (the client is shared by the module)."""
    text = client.get("/metrics").text
    return sum(float(n) for n in re.findall(r'^centaurus_requests_total\{endpoint="unmatched",[^}]*\} (\S+)', text, re.M))


def test_every_http_route_has_its_own_label(app_client):
    expected, unmatched_before = set(), unmatched_requests(app_client)
    for context in iter_route_contexts(app_client.app.routes):  # included routers' routes too, prefixed
        route = context.route
        if isinstance(route, (WebSocketRoute, APIWebSocketRoute)):
            continue  # websockets are counted by centaurus_active_streams, not as requests
        if isinstance(route, Mount):
            template, url = context.path_format, context.path_format.replace("{path}", "swagger-ui.css")
            method = "GET"
        else:
            template, url = context.path, re.sub(r"\{[^}]+\}", "x", context.path)
            method = "GET" if "GET" in route.methods else sorted(route.methods)[0]
        app_client.request(method, url)
        expected.add(template)
        assert template in labels(app_client, method), (method, url, labels(app_client))
    assert {"/openapi.json", "/docs", "/redoc", "/docs/assets/{path}", "/transcribe", "/v1/models/{model_id}"} <= expected
    assert unmatched_requests(app_client) == unmatched_before  # no route's request fell through


def test_wrong_methods_and_missing_assets_keep_their_route_label(app_client):
    assert app_client.get("/transcribe").status_code == 405
    assert app_client.get("/docs/assets/no-such-file.js").status_code == 404
    text = app_client.get("/metrics").text
    assert 'centaurus_errors_total{endpoint="/transcribe",status="405"}' in text
    assert 'centaurus_errors_total{endpoint="/docs/assets/{path}",status="404"}' in text


def test_unknown_paths_share_one_label(app_client):
    before = labels(app_client) | {"/metrics"}  # reading /metrics is counted after it answers
    for i in range(20):
        assert app_client.get(f"/no/such/path/{i}").status_code == 404
        app_client.post(f"/v1/audio/{i}")
    assert app_client.get("/v1/stream/transcribe").status_code == 404  # a websocket route, asked over plain HTTP
    assert labels(app_client) - before <= {"unmatched"} and "unmatched" in labels(app_client)
