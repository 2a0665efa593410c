"""Settings from CENTAURUS_* variables, the console entry point, and CORS (closed unless configured)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_testkit import settings_for

from app.cli import main
from app.main import create_app
from app.settings import Settings


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CENTAURUS_MODELS", '{"asr": "/models/asr.json"}')
    monkeypatch.setenv("CENTAURUS_API_KEYS", "one, two")
    monkeypatch.setenv("CENTAURUS_CORS_ORIGINS", '["https://example.org"]')
    monkeypatch.setenv("CENTAURUS_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("CENTAURUS_WORKER_MODE", "thread")
    s = Settings()
    assert s.models == {"asr": "/models/asr.json"} and s.api_keys == ["one", "two"]
    assert s.cors_origins == ["https://example.org"] and s.max_batch_size == 16 and s.worker_mode == "thread"
    assert s.max_upload_bytes == 100_000_000 and s.host == "127.0.0.1"
    monkeypatch.setenv("CENTAURUS_WORKER_MODE", "fibers")
    with pytest.raises(ValueError):
        Settings()


def test_a_bad_model_path_fails_at_startup(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        create_app(Settings(models={"asr": str(tmp_path / "missing.json")}, worker_mode="thread"))


def test_serve_runs_uvicorn_on_uvloop(tiny_models, monkeypatch):
    """The event loop is chosen, not left to uvicorn's "auto" (which falls back to asyncio's quietly)."""
    import json

    import uvicorn
    import uvloop  # noqa: F401 - a dependency of serving: its absence fails here

    import model_zoo.runtime

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    monkeypatch.setattr(model_zoo.runtime, "keep_freed_memory", lambda: None)
    monkeypatch.setattr(model_zoo.runtime, "freeze_loaded_objects", lambda: 0)
    assert main(["serve", "--models", json.dumps(tiny_models), "--worker-mode", "thread"]) == 0
    assert len(calls) == 1 and calls[0]["loop"] == "uvloop"


def test_cli_help_lists_serve(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    assert "--workers-per-device" in capsys.readouterr().out


def test_cors_is_closed_by_default_and_open_to_listed_origins(tiny_models):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = TestClient(create_app(settings_for(tiny_models, worker_mode="thread")))
    assert "access-control-allow-origin" not in closed.options("/transcribe", headers=preflight).headers
    listed = TestClient(create_app(settings_for(tiny_models, worker_mode="thread", cors_origins="https://app.example")))
    r = listed.options("/transcribe", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
