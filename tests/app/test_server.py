"""A real server: ``centaurus-speech serve`` under uvicorn on loopback, used by the official OpenAI client.

Also: a worker process killed with SIGKILL is replaced while the server keeps answering, and SIGTERM lets
an in-flight request finish before the server exits. Each test holds in any order: the SIGTERM test stops a
server of its own, and the restart count is compared with its value before the kill.
"""

from __future__ import annotations

import os
import signal as signals
import threading
import time

import httpx
import pytest
from service_testkit import SPEECH_SAMPLE, ServerProcess, signal, start_server, stop_server, wav_bytes

KEY = "test-key"


def keyed_server(tiny_models, directory) -> ServerProcess:
    return start_server(tiny_models, directory / "server.log", ready_timeout=90, api_keys=KEY)


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    running = keyed_server(tiny_models, tmp_path_factory.mktemp("server"))
    yield running
    stop_server(running)


def test_the_openai_client_works_unchanged(server):
    openai = pytest.importorskip("openai")  # a test dependency; the other server tests run without it
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key=KEY)
    audio = ("clip.wav", SPEECH_SAMPLE.read_bytes(), "audio/wav")  # speech: the transcript is not empty
    result = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert isinstance(result.text, str) and result.text.strip()
    verbose = client.audio.transcriptions.create(model="asr", file=audio, response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"], language="en")
    assert verbose.duration == pytest.approx(3.93, abs=0.01) and verbose.text == result.text
    assert verbose.words and all(w.end >= w.start for w in verbose.words)
    text = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert isinstance(text, str) and text.strip() == result.text
    srt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    assert srt.startswith("1\n00:00:") and " --> " in srt and result.text.split()[0] in srt
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"asr", "kws", "denoise"}
    assert client.models.retrieve("asr").id == "asr"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.base}/v1", api_key="wrong").models.list()
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="no-such-model", file=audio)


def test_a_killed_worker_is_replaced_and_service_continues(server):
    restarts = server.metric("centaurus_worker_restarts")
    before = httpx.get(f"{server.base}/health/ready").json()["workers"]
    os.kill(before[0]["pid"], signals.SIGKILL)
    end = time.monotonic() + 60
    while True:
        r = httpx.get(f"{server.base}/health/ready")
        workers = r.json()["workers"]
        if r.status_code == 200 and workers and workers[0]["pid"] != before[0]["pid"]:
            break
        assert time.monotonic() < end, workers
        time.sleep(0.1)
    r = httpx.post(f"{server.base}/transcribe", headers=server.headers,
                   files={"file": ("a.wav", wav_bytes(signal(0.5), 16000))})
    assert r.status_code == 200, r.text
    assert server.metric("centaurus_worker_restarts") == restarts + 1


def test_sigterm_finishes_in_flight_requests_then_exits(tiny_models, tmp_path):
    own = keyed_server(tiny_models, tmp_path)
    try:
        clip = wav_bytes(signal(60.0), 16000)  # many chunks, so the request is still running at SIGTERM
        result: dict = {}

        def send() -> None:
            result["r"] = httpx.post(f"{own.base}/denoise", headers=own.headers, files={"file": ("a.wav", clip)},
                                     timeout=60)
            result["done"] = time.monotonic()

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.2)
        terminated = time.monotonic()
        own.process.send_signal(signals.SIGTERM)
        sender.join(60)
        assert result["r"].status_code == 200 and len(result["r"].content) > len(clip) // 2
        assert result["done"] > terminated  # it really was in flight when the signal came
        # uvicorn exits through the signal it handled, after the graceful shutdown
        assert own.process.wait(30) in (0, -signals.SIGTERM)
    finally:
        stop_server(own)
