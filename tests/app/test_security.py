"""Security properties, each tested: API keys on every route (found by walking ``app.routes``, so a new route
is covered without editing this file), the configurable exemption of health and metrics, CORS closed by
default, model names looked up in the registry only (never a path from a client), checkpoints never
unpickled, no key in any log line, dependencies pinned.
"""

from __future__ import annotations

import json
import pickle
import re
import tomllib
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import torch
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from service_testkit import settings_for, signal, start_server, stop_server, wait_ready, wav_bytes
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

import model_zoo
import model_zoo.checkpoint
from app.main import create_app
from app.http.redaction import redact

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-7f3a9c0d5e"
OPS_PATHS = {"/health", "/health/live", "/health/ready", "/metrics"}
DOC_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# The JavaScript and CSS of the docs pages (the files of fastapi-offline): public, like the pages.
DOC_MOUNTS = {"/docs/assets"}
# The demo page: static HTML that asks its user for a key and sends it with every call it makes.
PUBLIC_PAGES = {"/"}
CLIP = wav_bytes(signal(0.3), 16000)


def concrete(path: str) -> str:
    """A route template with its parameters filled in (``/v1/models/{model_id}`` -> ``/v1/models/asr``)."""
    return re.sub(r"\{[^}]+\}", "asr", path)


def served_routes(app) -> list:
    """Every route the app serves, with routers added by ``include_router`` flattened (FastAPI keeps those as
    included-router entries in ``app.routes``)."""
    routes = []
    for item in app.routes:
        contexts = getattr(item, "effective_route_contexts", None)
        routes += [c.original_route for c in contexts()] if contexts is not None else [item]
    return routes


def http_calls(app) -> list[tuple[str, str]]:
    """Every (method, path) the application serves through its API routes, bar the public pages."""
    return sorted((method, concrete(route.path)) for route in served_routes(app) if isinstance(route, APIRoute)
                  and route.path not in PUBLIC_PAGES for method in route.methods)


def call(client: TestClient, method: str, path: str, headers: dict | None = None) -> httpx.Response:
    if method == "POST":
        return client.post(path, files={"file": ("a.wav", CLIP)}, headers=headers or {})
    return client.request(method, path, headers=headers or {})


def assert_unauthorized(response: httpx.Response, what: str) -> None:
    assert response.status_code == 401, (what, response.status_code, response.text[:200])
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers.get("www-authenticate") == "Bearer"


@pytest.fixture(scope="module")
def keyed_app(tiny_models):
    """Keys set, health and metrics open (the default). Never started: the key check comes before the pool."""
    return create_app(settings_for(tiny_models, worker_mode="thread", api_keys=f"{KEY}, other-key"))


def test_every_api_route_wants_the_key_and_only_ops_routes_are_exempt(keyed_app):
    client = TestClient(keyed_app)
    calls = http_calls(keyed_app)
    assert len(calls) >= 10
    for method, path in calls:
        anonymous = call(client, method, path)
        if path in OPS_PATHS:
            assert anonymous.status_code != 401, (method, path)
            continue
        assert_unauthorized(anonymous, f"{method} {path} without a key")
        assert_unauthorized(call(client, method, path, {"X-API-Key": KEY + "x"}), f"{method} {path} wrong key")
        assert_unauthorized(call(client, method, path, {"Authorization": "Basic " + KEY}), f"{method} {path} basic")
        accepted = call(client, method, path, {"Authorization": f"Bearer {KEY}"})
        assert accepted.status_code != 401, (method, path, accepted.text[:200])


def test_ops_routes_want_the_key_too_when_configured(tiny_models):
    app = create_app(settings_for(tiny_models, worker_mode="thread", api_keys=KEY, ops_require_key=True))
    client = TestClient(app)
    for method, path in http_calls(app):
        assert_unauthorized(call(client, method, path), f"{method} {path}")
        assert call(client, method, path, {"X-API-Key": KEY}).status_code != 401, (method, path)


def test_every_other_route_is_documentation_or_a_keyed_websocket(keyed_app):
    """A route that is not an API route has to be looked at here: documentation is public, sockets need keys."""
    others = [r for r in served_routes(keyed_app) if not isinstance(r, APIRoute)]
    pages = [r for r in served_routes(keyed_app) if isinstance(r, APIRoute) and r.path in PUBLIC_PAGES]
    assert all(r.response_class.media_type == "text/html" for r in pages), pages
    docs = {r.path for r in others if isinstance(r, Route)}
    assert docs <= DOC_PATHS, docs - DOC_PATHS
    mounts = {r.path for r in others if isinstance(r, Mount)}
    assert mounts <= DOC_MOUNTS, mounts - DOC_MOUNTS
    sockets = [r for r in others if isinstance(r, (WebSocketRoute, APIWebSocketRoute))]
    assert len(docs) + len(mounts) + len(sockets) == len(others), others
    client = TestClient(keyed_app)
    for route in sockets:
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect(concrete(route.path)) as ws:
                ws.send_json({"type": "session.start", "model": "asr"})
                # A refused socket is closed; one that reports an error first must close right after it.
                while True:
                    message = ws.receive_json()
                    assert message.get("type") == "error", message


def test_cors_is_closed_by_default_on_every_route(tiny_models):
    app = create_app(settings_for(tiny_models, worker_mode="thread"))
    client = TestClient(app)
    origin = {"Origin": "https://evil.example"}
    for method, path in http_calls(app):
        response = call(client, method, path, origin)
        assert not any(h.startswith("access-control-") for h in response.headers), (method, path)
        preflight = client.options(path, headers={**origin, "Access-Control-Request-Method": method})
        assert not any(h.startswith("access-control-") for h in preflight.headers), (method, path)


def test_model_names_are_looked_up_never_loaded_from_a_client_path(tiny_models, monkeypatch):
    """Only asr and kws are served; the denoiser's card exists on disk but no request can reach it."""
    served = {k: v for k, v in tiny_models.items() if k != "denoise"}
    with TestClient(create_app(settings_for(served, worker_mode="thread"))) as client:
        wait_ready(client, timeout=600)

        def refuse(*args, **kwargs):
            raise AssertionError(f"a checkpoint was opened after startup: {args}")

        for name in ("load", "read_card", "_resolve"):
            monkeypatch.setattr(model_zoo.checkpoint, name, refuse)
        monkeypatch.setattr(model_zoo, "load", refuse)
        denoise_card = tiny_models["denoise"]
        for model in (denoise_card, denoise_card[:-5], "denoise", "../denoise", "/etc/passwd", "file:///etc/passwd",
                      "asr/../denoise", "asr\x00"):
            for path in ("/denoise", "/transcribe", "/keywords"):
                r = client.post(path, files={"file": ("a.wav", CLIP)}, data={"model": model})
                assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", (path, model, r.text)
            assert client.get(f"/v1/models/{quote(model, safe='')}").status_code == 404
        assert client.post("/transcribe", files={"file": ("a.wav", CLIP)}, data={"model": "asr"}).status_code == 200


def test_checkpoints_load_without_pickle(tiny_models, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle was used to load a checkpoint")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    for source in tiny_models.values():
        model = model_zoo.load(source)
        assert sum(p.numel() for p in model.parameters()) > 0


class _Tripwire:
    """Unpickling this writes a file: proof that code ran."""

    path = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pickle ran"))


def test_a_pickled_checkpoint_is_refused_without_running_it(tiny_models, tmp_path):
    marker = tmp_path / "ran"
    _Tripwire.path = str(marker)
    card = Path(tiny_models["kws"])
    evil = tmp_path / "evil"
    evil.with_suffix(".json").write_text(card.read_text())
    evil.with_suffix(".safetensors").write_bytes(pickle.dumps({"weight": _Tripwire()}))
    with pytest.raises(model_zoo.checkpoint.CheckpointError):
        model_zoo.load(str(evil.with_suffix(".json")))
    assert not marker.exists()
    # The same bytes under torch's own name are not even looked at: only .safetensors weights exist.
    torch_style = tmp_path / "old"
    torch_style.with_suffix(".json").write_text(card.read_text())
    torch_style.with_suffix(".pt").write_bytes(pickle.dumps({"weight": _Tripwire()}))
    with pytest.raises((model_zoo.checkpoint.CheckpointError, FileNotFoundError, ValueError)):
        model_zoo.load(str(torch_style.with_suffix(".json")))
    assert not marker.exists()


def test_no_key_reaches_any_log(tiny_models, tmp_path):
    """A real server at debug level sees right and wrong keys, in headers and in a websocket's query string;
    its log never shows one."""
    wrong = "sk-wrong-1b2c3d4e5f"
    server = start_server(tiny_models, tmp_path / "server.log", api_keys=KEY, log_level="debug")
    try:
        for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"X-API-Key": wrong},
                        {"Authorization": f"Bearer {wrong}"}, {"Authorization": wrong}):
            httpx.post(f"{server.base}/transcribe", headers=headers, files={"file": ("a.wav", CLIP)}, timeout=60)
            httpx.post(f"{server.base}/transcribe", headers=headers, files={"file": ("a.wav", b"not audio")},
                       timeout=60)
            httpx.get(f"{server.base}/v1/models/nope", headers=headers, timeout=60)
        # Browsers put a websocket's key in the query string, which uvicorn logs with the path.
        for key in (KEY, wrong):
            try:
                with connect(f"{server.base.replace('http', 'ws', 1)}/v1/stream/denoise?api_key={key}",
                             open_timeout=60) as ws:
                    ws.send(json.dumps({"type": "session.start"}))
                    ws.recv(timeout=60)
            except Exception:  # noqa: BLE001 - refused or closed: only the log matters here
                pass
    finally:
        stop_server(server)
    log = server.log.read_text()
    assert "GET /v1/models/nope" in log and "WebSocket /v1/stream/denoise" in log  # the requests were logged
    assert KEY not in log and wrong not in log


def test_redaction_keeps_everything_but_the_key():
    line = '127.0.0.1:5 - "WebSocket /v1/stream/keywords?sample_rate=8000&api_key=sk-abc&keywords=yes" [accepted]'
    assert redact(line) == ('127.0.0.1:5 - "WebSocket /v1/stream/keywords?sample_rate=8000&api_key=[redacted]'
                            '&keywords=yes" [accepted]')
    assert redact("POST /keywords?keywords[]=yes HTTP/1.1") == "POST /keywords?keywords[]=yes HTTP/1.1"


def test_every_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    # An extra may include another extra of this project ("centaurus-speech[train]"): pinned where it is defined.
    requirements = [r for r in requirements if not re.fullmatch(rf"{project['name']}\[[a-z,]+\]", r.strip())]
    unpinned = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+\-]*", r.strip())]
    assert not unpinned, unpinned
