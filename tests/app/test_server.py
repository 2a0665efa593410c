"""A real server: ``centaurus-speech serve`` under uvicorn on loopback, used by the official OpenAI client.

Also: a worker process killed with SIGKILL is replaced while the server keeps answering, and SIGTERM lets
an in-flight request finish before the server exits.
"""

from __future__ import annotations

import json
import os
import signal as signals
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from service_testkit import signal, wav_bytes



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    port = free_port()
    env = {**os.environ, "CENTAURUS_MODELS": json.dumps(tiny_models), "CENTAURUS_PORT": str(port),
           "CENTAURUS_HOST": "127.0.0.1", "CENTAURUS_API_KEYS": "test-key", "CENTAURUS_TORCH_THREADS": "1",
           "CENTAURUS_LOG_LEVEL": "warning", "CENTAURUS_WORKERS_PER_DEVICE": "1", "CENTAURUS_MAX_BATCH_WAIT_MS": "5"}
    log = tmp_path_factory.mktemp("server") / "server.log"
    cli = Path(sys.executable).with_name("centaurus-speech")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "app.cli"]
    with open(log, "wb") as out:
        process = subprocess.Popen([*command, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 90
    while True:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < end, "server never became ready:\n" + log.read_text()
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    yield base, process
    if process.poll() is None:
        process.terminate()
        process.wait(30)


def test_the_openai_client_works_unchanged(server):
    openai = pytest.importorskip("openai")  # a test dependency; the other server tests run without it
    base, _ = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="test-key")
    audio = ("clip.wav", wav_bytes(signal(1.2), 16000), "audio/wav")
    result = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert isinstance(result.text, str)
    verbose = client.audio.transcriptions.create(model="asr", file=audio, response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"], language="en")
    assert verbose.duration == pytest.approx(1.2) and verbose.text == result.text
    assert verbose.words is not None and all(w.end >= w.start for w in verbose.words)
    text = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert isinstance(text, str) and text.strip() == result.text
    srt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    assert isinstance(srt, str)
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"asr", "kws", "denoise"}
    assert client.models.retrieve("asr").id == "asr"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base}/v1", api_key="wrong").models.list()
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="no-such-model", file=audio)


def test_a_killed_worker_is_replaced_and_service_continues(server):
    base, _ = server
    headers = {"X-API-Key": "test-key"}
    before = httpx.get(f"{base}/health/ready").json()["workers"]
    os.kill(before[0]["pid"], signals.SIGKILL)
    end = time.monotonic() + 60
    while True:
        r = httpx.get(f"{base}/health/ready")
        workers = r.json()["workers"]
        if r.status_code == 200 and workers and workers[0]["pid"] != before[0]["pid"]:
            break
        assert time.monotonic() < end, workers
        time.sleep(0.1)
    r = httpx.post(f"{base}/transcribe", headers=headers, files={"file": ("a.wav", wav_bytes(signal(0.5), 16000))})
    assert r.status_code == 200, r.text
    assert "centaurus_worker_restarts 1.0" in httpx.get(f"{base}/metrics").text


def test_sigterm_finishes_in_flight_requests_then_exits(server):
    base, process = server
    clip = wav_bytes(signal(60.0), 16000)  # many chunks, so the request is still running at SIGTERM
    result: dict = {}

    def send() -> None:
        result["r"] = httpx.post(f"{base}/denoise", headers={"X-API-Key": "test-key"}, files={"file": ("a.wav", clip)},
                                 timeout=60)
        result["done"] = time.monotonic()

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.2)
    terminated = time.monotonic()
    process.send_signal(signals.SIGTERM)
    sender.join(60)
    assert result["r"].status_code == 200 and len(result["r"].content) > len(clip) // 2
    assert result["done"] > terminated  # it really was in flight when the signal came
    # uvicorn exits through the signal it handled, after the graceful shutdown
    assert process.wait(30) in (0, -signals.SIGTERM)
