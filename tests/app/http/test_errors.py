"""Every error path answers with the one JSON envelope and the right status (and Retry-After where due)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_testkit import settings_for, signal, wait_ready, wav_bytes

from app.main import create_app

CLIP = wav_bytes(signal(0.5), 16000)


def upload(data: bytes = CLIP, name: str = "clip.wav") -> dict:
    return {"file": (name, data, "application/octet-stream")}


def assert_envelope(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture(scope="module")
def strict(tiny_models):
    """Keys required everywhere, small upload and duration limits; threads are enough for these checks."""
    settings = settings_for(tiny_models, worker_mode="thread", api_keys="key-one, key-two", ops_require_key=True,
                            max_upload_mb=0.05, max_audio_seconds=2.0)
    with TestClient(create_app(settings)) as c:
        c.headers["X-API-Key"] = "key-one"
        wait_ready(c)
        del c.headers["X-API-Key"]
        yield c


def test_unknown_routes_and_methods(client):
    assert_envelope(client.get("/no/such/path"), 404, "not_found")
    assert_envelope(client.get("/transcribe"), 405, "method_not_allowed")


def test_validation_errors_use_the_envelope(client):
    error = assert_envelope(client.post("/v1/audio/transcriptions", files=upload(), data={"response_format": "xml"}),
                            422, "invalid_parameter")
    assert error["param"] == "response_format"
    assert_envelope(client.post("/transcribe", data={"beam_search": "true"}), 422, "invalid_parameter")
    assert_envelope(client.post("/keywords", files=upload(), data={"threshold": "2"}), 422, "invalid_parameter")
    streamed_srt = {"stream": "true", "response_format": "srt"}  # stream=true sends text events only
    assert_envelope(client.post("/v1/audio/transcriptions", files=upload(), data=streamed_srt), 422, "invalid_parameter")


def test_bad_audio(client):
    assert_envelope(client.post("/transcribe", files=upload(b"definitely not audio" * 40)), 415, "unsupported_audio")
    assert_envelope(client.post("/transcribe", files=upload(b"")), 400, "empty_audio")
    nan = np.array([0.1, np.nan, 0.2] * 100, "<f4").tobytes()
    assert_envelope(client.post("/denoise", files=upload(nan), data={"encoding": "pcm_f32le", "sample_rate": "16000"}),
                    400, "invalid_audio")


def test_models_that_are_not_served_or_of_another_task(client):
    assert_envelope(client.post("/transcribe", files=upload(), data={"model": "nope"}), 404, "model_not_found")
    assert_envelope(client.post("/transcribe", files=upload(), data={"model": "kws"}), 422, "wrong_model_task")
    assert_envelope(client.post("/denoise", files=upload(), data={"model": "asr"}), 422, "wrong_model_task")
    # OpenAI names are aliases of the default recognizer
    assert client.post("/v1/audio/transcriptions", files=upload(), data={"model": "whisper-1"}).status_code == 200


def test_api_keys(strict):
    assert_envelope(strict.post("/transcribe", files=upload()), 401, "invalid_api_key")
    assert_envelope(strict.post("/transcribe", files=upload(), headers={"Authorization": "Bearer wrong"}), 401)
    assert_envelope(strict.get("/v1/models", headers={"X-API-Key": "nope"}), 401)
    assert strict.post("/transcribe", files=upload(), headers={"Authorization": "Bearer key-two"}).status_code == 200
    assert strict.get("/v1/models", headers={"X-API-Key": "key-one"}).status_code == 200
    # ops_require_key: health and metrics want the key too
    assert_envelope(strict.get("/health/ready"), 401)
    assert_envelope(strict.get("/metrics"), 401)
    assert strict.get("/metrics", headers={"X-API-Key": "key-one"}).status_code == 200


def test_health_stays_open_by_default_when_keys_are_set(tiny_models):
    app = create_app(settings_for(tiny_models, worker_mode="thread", api_keys="secret"))
    with TestClient(app) as c:
        assert c.get("/health/live").status_code == 200
        assert c.get("/metrics").status_code == 200
        assert_envelope(c.get("/v1/models"), 401)


def test_upload_limit_from_content_length_and_from_counted_bytes(strict):
    big = wav_bytes(signal(3.0), 16000)  # 96 kB > 50 kB
    headers = {"X-API-Key": "key-one"}
    assert_envelope(strict.post("/transcribe", files=upload(big), headers=headers), 413, "payload_too_large")

    def chunked():  # no Content-Length: the middleware has to count
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    r = strict.post("/transcribe", content=chunked(),
                    headers={**headers, "Content-Type": "multipart/form-data; boundary=xyz"})
    assert_envelope(r, 413, "payload_too_large")


def test_audio_duration_limit(strict):
    long = (signal(2.5, 8000)[0] * 32767).astype("<i2").tobytes()  # 40 kB: under the upload limit
    r = strict.post("/transcribe", files=upload(long), data={"encoding": "pcm_s16le", "sample_rate": "8000"},
                    headers={"X-API-Key": "key-one"})
    assert_envelope(r, 413, "audio_too_long")


def test_not_ready_before_the_models_are_loaded(tiny_models):
    app = create_app(settings_for(tiny_models, worker_mode="thread"))
    c = TestClient(app)  # outside a with-block the lifespan never runs: the pool is never started
    r = c.get("/health/ready")
    assert r.status_code == 503 and r.json()["status"] == "loading" and r.headers["retry-after"]
    r = c.post("/transcribe", files=upload())
    assert_envelope(r, 503, "not_ready")
    assert r.headers["retry-after"] == "1"


def test_full_queue_answers_503_with_retry_after(tiny_models):
    # One waiting call fills the queue; the batch window holds it there for 1.5 s.
    settings = settings_for(tiny_models, worker_mode="thread", queue_limit=1, max_batch_wait_ms=1500,
                            retry_after_seconds=2)
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        first: dict = {}
        waiting = threading.Thread(target=lambda: first.setdefault("r", c.post("/transcribe", files=upload())))
        waiting.start()
        end = time.monotonic() + 5
        while c.app.state.pool.queue_depth() == 0:
            assert time.monotonic() < end
            time.sleep(0.01)
        r = c.post("/keywords", files=upload())
        assert_envelope(r, 503, "overloaded")
        assert r.headers["retry-after"] == "2"
        waiting.join()
        assert first["r"].status_code == 200
        assert 'centaurus_errors_total{endpoint="/keywords",status="503"} 1.0' in c.get("/metrics").text


def test_deadline_answers_504(tiny_models):
    settings = settings_for(tiny_models, worker_mode="thread", request_timeout_seconds=0.3, max_batch_wait_ms=3000)
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        started = time.monotonic()
        assert_envelope(c.post("/transcribe", files=upload()), 504, "deadline_exceeded")
        assert time.monotonic() - started < 2.5  # answered at the deadline, not after the batch window
