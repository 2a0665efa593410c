"""The streaming websocket protocol through the ASGI app: every message type and every error path."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_testkit import settings_for, signal, wait_ready
from starlette.testclient import WebSocketDenialResponse
from stream_testkit import receive_until_close, start_message, stream_clip

from app.main import create_app

KEY = "?api_key=stream-key"


@pytest.fixture(scope="module")
def streams(tiny_models):
    """An app with a key and at most two streams; worker threads (starts fast, same code path)."""
    app = create_app(settings_for(tiny_models, worker_mode="thread", api_keys=["stream-key"], stream_max_sessions=2))
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def with_settings(client: TestClient, **changes):
    """Temporarily different stream limits on the running app."""
    original = client.app.state.settings

    class Restore:
        def __enter__(self):
            client.app.state.settings = original.model_copy(update=changes)

        def __exit__(self, *exc):
            client.app.state.settings = original

    return Restore()


def wait_until(predicate, timeout: float = 10.0, message=lambda: "condition never held") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, message()
        time.sleep(0.02)


def test_denoise_stream_sends_audio_of_the_input_length_then_session_ended(streams):
    clip = signal(0.7, 16000)[0]
    result = stream_clip(streams, "denoise", [clip[:5000], clip[5000:]], KEY, sample_rate=16000)
    started, ended = result.messages[0], result.of("session.ended")[0]
    assert started["task"] == "denoise" and started["model"] == "denoise" and started["sample_rate"] == 16000
    assert started["input_sample_rate"] == 16000 and started["algorithmic_latency_samples"] >= 0
    assert len(result.audio) == len(clip) and np.isfinite(result.audio).all()
    assert ended["audio_seconds"] == pytest.approx(0.7) and ended["rtf"] >= 0 and ended["processing_seconds"] > 0
    assert result.messages[-1]["type"] == "session.ended" and result.close_code == 1000


def test_transcribe_stream_partials_finals_per_flush_and_session_update(streams):
    clip = signal(1.5, 16000)[0]
    with streams.websocket_connect(f"/v1/stream/transcribe{KEY}") as ws:
        ws.send_text(start_message(sample_rate=16000, interim_results=True))
        assert ws.receive_json()["type"] == "session.started"
        for start in range(0, 12000, 1000):
            ws.send_bytes(clip[start:start + 1000].astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "input.flush"}))
        before = []
        while not before or before[-1]["type"] != "transcript.final":
            before.append(ws.receive_json())
        ws.send_text(json.dumps({"type": "session.update", "interim_results": False, "word_timestamps": False}))
        ws.send_bytes(clip[12000:].astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "session.end"}))
        after = receive_until_close(ws)
    partials, first = [m for m in before if m["type"] == "transcript.partial"], before[-1]
    assert partials and all(p["segment"] == 0 and p["end"] >= p["start"] for p in partials)
    assert first["segment"] == 0 and first["start"] == 0 and first["end"] == pytest.approx(0.75, abs=0.1)
    assert isinstance(first["words"], list) and all(w["end"] >= w["start"] >= 0 for w in first["words"])
    assert [m["type"] for m in after.messages] == ["transcript.final", "session.ended"]  # partials muted
    second = after.messages[0]
    assert second["segment"] == 1 and second["start"] == first["end"] and "words" not in second
    assert second["end"] == pytest.approx(1.5, abs=0.01) and after.close_code == 1000


def test_keywords_stream_detects_and_update_changes_the_watched_keywords(streams):
    clip = signal(2.0, 16000)[0]
    labels = [l for l in streams.get("/v1/models/kws", headers={"X-API-Key": "stream-key"}).json()["labels"]
              if not l.startswith("_")]
    # Threshold 0: every window whose best class is a keyword is a hit, so a random model detects something.
    result = stream_clip(streams, "keywords", [clip], KEY, sample_rate=16000, threshold=0.0, hop=0.5)
    detections = result.of("keyword.detected")
    assert detections and all(d["keyword"] in labels and 0 <= d["start"] < d["end"] <= 2.0 for d in detections)
    with streams.websocket_connect(f"/v1/stream/keywords{KEY}") as ws:
        ws.send_text(start_message(sample_rate=16000, threshold=0.0))
        ws.receive_json()
        ws.send_text(json.dumps({"type": "session.update", "keywords": ["no-such-word"]}))
        assert ws.receive_json()["code"] == "invalid_parameter"
        watched = next(l for l in labels if l not in {d["keyword"] for d in detections})
        ws.send_text(json.dumps({"type": "session.update", "keywords": [watched], "threshold": 0.99}))
        ws.send_bytes(clip.astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "input.flush"}))
        ws.send_text(json.dumps({"type": "session.end"}))
        rest = receive_until_close(ws)
    assert rest.of("keyword.detected") == [] and rest.close_code == 1000


def test_protocol_mistakes_answer_an_error_and_keep_the_connection(streams):
    with streams.websocket_connect(f"/v1/stream/transcribe{KEY}") as ws:
        ws.send_bytes(b"\x00\x00" * 100)
        assert ws.receive_json() == {"type": "error", "code": "session_not_started",
                                     "message": "send session.start before audio"}
        ws.send_text("{not json")
        assert ws.receive_json()["code"] == "malformed_json"
        ws.send_text(json.dumps({"type": "session.bogus"}))
        assert ws.receive_json()["code"] == "unknown_message_type"
        ws.send_text(json.dumps({"no": "type"}))
        assert ws.receive_json()["code"] == "unknown_message_type"
        ws.send_text(json.dumps({"type": "input.flush"}))
        assert ws.receive_json()["code"] == "session_not_started"
        ws.send_text(start_message(sample_rate=12345))
        assert ws.receive_json()["code"] == "invalid_message"
        ws.send_text(start_message(model="no-such-model"))
        assert ws.receive_json()["code"] == "model_not_found"
        ws.send_text(start_message(model="denoise"))
        assert ws.receive_json()["code"] == "wrong_model_task"
        ws.send_text(start_message(sample_rate=48000, encoding="pcm_s16le"))
        started = ws.receive_json()
        assert started["type"] == "session.started" and started["input_sample_rate"] == 48000
        ws.send_text(start_message())
        assert ws.receive_json()["code"] == "session_already_started"
        ws.send_text(json.dumps({"type": "session.update", "threshold": 2}))
        assert ws.receive_json()["code"] == "invalid_message"
        ws.send_bytes(b"\x01")  # half a sample: kept until the next frame completes it
        ws.send_bytes(b"\x00" * 9599)
        ws.send_text(json.dumps({"type": "session.end"}))
        result = receive_until_close(ws)
    assert result.of("session.ended")[0]["audio_seconds"] == pytest.approx(0.1)
    with streams.websocket_connect(f"/v1/stream/keywords{KEY}") as ws:
        ws.send_text(start_message(keywords=["no-such-word"]))
        assert ws.receive_json()["code"] == "invalid_parameter"
        ws.send_text(start_message())
        assert ws.receive_json()["type"] == "session.started"
        ws.send_bytes(np.array([np.nan] * 10, "<f4").tobytes())
        assert ws.receive_json()["code"] == "invalid_audio"


@pytest.mark.parametrize("how", [{"query": ""}, {"query": "?api_key=wrong"}, {"headers": {"X-API-Key": "wrong"}}])
def test_a_missing_or_wrong_key_is_an_error_then_close_1008(streams, how):
    with streams.websocket_connect(f"/v1/stream/denoise{how.get('query', '')}", headers=how.get("headers", {})) as ws:
        assert ws.receive_json()["code"] == "invalid_api_key"
        assert receive_until_close(ws).close_code == 1008


def test_keys_in_headers_work_too(streams):
    for headers in ({"Authorization": "Bearer stream-key"}, {"X-API-Key": "stream-key"}):
        with streams.websocket_connect("/v1/stream/denoise", headers=headers) as ws:
            ws.send_text(start_message())
            assert ws.receive_json()["type"] == "session.started"


def test_over_max_sessions_the_handshake_is_refused_with_503(streams):
    with streams.websocket_connect(f"/v1/stream/denoise{KEY}") as a, \
            streams.websocket_connect(f"/v1/stream/denoise{KEY}") as b:
        with pytest.raises(WebSocketDenialResponse) as refused:
            with streams.websocket_connect(f"/v1/stream/denoise{KEY}"):
                pass
        assert refused.value.status_code == 503 and refused.value.headers["retry-after"] == "1"
        assert refused.value.json()["error"]["code"] == "overloaded"
        for ws in (a, b):  # the two admitted streams are unaffected
            ws.send_text(start_message())
            assert ws.receive_json()["type"] == "session.started"


def test_a_client_faster_than_the_buffer_bound_gets_buffer_overflow_and_1013(streams):
    with with_settings(streams, stream_max_buffer_seconds=0.5):
        with streams.websocket_connect(f"/v1/stream/denoise{KEY}") as ws:
            ws.send_text(start_message(sample_rate=16000))
            ws.receive_json()
            ws.send_bytes(np.zeros(16000 * 3, "<f4").tobytes())  # 3 s at once, bound 0.5 s
            result = receive_until_close(ws)
    assert result.of("error")[0]["code"] == "buffer_overflow" and result.close_code == 1013


def test_an_idle_stream_is_closed_with_an_error(streams):
    with with_settings(streams, stream_idle_timeout_seconds=0.3):
        with streams.websocket_connect(f"/v1/stream/transcribe{KEY}") as ws:
            ws.send_text(start_message())
            ws.receive_json()
            result = receive_until_close(ws)  # sends nothing
    assert result.of("error")[0]["code"] == "idle_timeout" and result.close_code == 1008


def test_a_session_longer_than_the_limit_is_closed(streams):
    with with_settings(streams, stream_max_session_seconds=0.5):
        with streams.websocket_connect(f"/v1/stream/denoise{KEY}") as ws:
            ws.send_text(start_message())
            ws.receive_json()
            for _ in range(20):  # a healthy client that keeps sending for about a second: not idle, but too long
                ws.send_bytes(np.zeros(160, "<f4").tobytes())
                time.sleep(0.05)
            result = receive_until_close(ws)
    assert result.of("error")[-1]["code"] == "session_too_long" and result.close_code == 1008


def test_a_client_that_disconnects_frees_its_state_at_once(streams):
    pool, registry = streams.app.state.pool, streams.app.state.streams
    assert pool.active_sessions() == 0
    with streams.websocket_connect(f"/v1/stream/transcribe{KEY}") as ws:
        ws.send_text(start_message())
        ws.receive_json()
        ws.send_bytes(signal(0.5)[0].astype("<f4").tobytes())
        assert pool.active_sessions() == 1 and len(registry) == 1
    # Leaving the block closes the socket without session.end.
    wait_until(lambda: pool.active_sessions() == 0 and len(registry) == 0)
    worker = pool.handles[0].worker  # a thread worker: its sessions live in this process
    wait_until(lambda: not worker.sessions, message=lambda: repr(worker.sessions)[:300])  # gone from the worker too


def test_streams_of_a_model_are_stepped_together_in_one_batch(streams):
    pool = streams.app.state.pool
    batches: list[tuple[str, str, int]] = []
    recorded, pool.on_batch = pool.on_batch, lambda model, op, rows: batches.append((model, op, rows))
    # 2.4 s: about 30 steps each, so the two backlogs overlap even when a loaded machine serves one socket late.
    clip = signal(2.4)[0].astype("<f4").tobytes()
    try:
        with streams.websocket_connect(f"/v1/stream/denoise{KEY}") as a, \
                streams.websocket_connect(f"/v1/stream/denoise{KEY}") as b:
            for ws in (a, b):
                ws.send_text(start_message(sample_rate=16000))
                ws.receive_json()
            for ws in (a, b):  # both have a backlog of equal steps queued at once
                ws.send_bytes(clip)
            for ws in (a, b):
                ws.send_text(json.dumps({"type": "session.end"}))
            results = [receive_until_close(ws) for ws in (a, b)]
    finally:
        pool.on_batch = recorded
    assert all(len(r.audio) == len(clip) // 4 for r in results)
    steps = [rows for model, op, rows in batches if model == "denoise" and op == "step"]
    assert max(steps) == 2, steps  # the two streams shared calls


@pytest.mark.parametrize("path", ["denoise", "transcribe", "keywords"])
def test_empty_and_tiny_streams_end_cleanly(streams, path):
    for frames, rate in (([], 16000), ([np.zeros(1, np.float32)], 44100), ([np.zeros(3, np.float32)], 16000)):
        result = stream_clip(streams, path, frames, KEY, sample_rate=rate)
        assert result.close_code == 1000 and result.messages[-1]["type"] == "session.ended"
        assert len(result.audio) == (sum(len(f) for f in frames) if path == "denoise" else 0)
        assert len(result.of("transcript.final")) == (path == "transcribe")
