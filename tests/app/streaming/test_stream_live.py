"""Streaming against a real server (``centaurus-speech serve`` under uvicorn on loopback): the ``websockets``
client and the ``centaurus-speech stream`` command. The demo page's live session (Chromium's fake microphone)
is in ``tests/app/http/test_demo_page.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal as signal_module
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from service_testkit import signal, start_server, stop_server, wav_bytes
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

KEY = "live-key"


def cli() -> list[str]:
    path = Path(sys.executable).with_name("centaurus-speech")
    return [str(path)] if path.exists() else [sys.executable, "-m", "app.cli"]


@pytest.fixture(scope="module")
def live_server(tiny_models, tmp_path_factory):
    server = start_server(tiny_models, tmp_path_factory.mktemp("live") / "server.log", ready_timeout=120,
                          api_keys=KEY, stream_max_sessions="4", stream_ping_interval_seconds="0.3",
                          stream_ping_timeout_seconds="20")
    yield server.base
    stop_server(server)


def ws_url(base: str, task: str, key: str | None = KEY) -> str:
    return base.replace("http", "ws", 1) + f"/v1/stream/{task}" + (f"?api_key={key}" if key else "")


def test_a_session_over_loopback_in_16_bit_at_48_khz(live_server):
    clip = signal(1.0, 48000)[0]
    pcm = (clip * 32767).astype("<i2").tobytes()
    with connect(ws_url(live_server, "denoise")) as ws:
        ws.send(json.dumps({"type": "session.start", "sample_rate": 48000, "encoding": "pcm_s16le"}))
        assert json.loads(ws.recv())["type"] == "session.started"
        for start in range(0, len(pcm), 1922):  # odd sizes: samples split across frames
            ws.send(pcm[start:start + 1922])
        time.sleep(1.0)  # a quiet but healthy client: answers the server's pings (every 0.3 s) and stays
        ws.send(json.dumps({"type": "session.end"}))
        received, messages = b"", []
        for message in ws:
            if isinstance(message, bytes):
                received += message
            else:
                messages.append(json.loads(message))
        assert ws.close_code == 1000
    assert len(received) == len(pcm) and messages[-1]["type"] == "session.ended"
    assert messages[-1]["audio_seconds"] == pytest.approx(1.0)


def test_a_bad_key_closes_with_1008_and_a_full_server_refuses_the_handshake(live_server):
    with connect(ws_url(live_server, "transcribe", key="wrong")) as ws:
        assert json.loads(ws.recv())["code"] == "invalid_api_key"
        with pytest.raises(ConnectionClosed):
            ws.recv()
        assert ws.close_code == 1008
    with contextlib.ExitStack() as streams:
        for _ in range(4):  # the limit
            streams.enter_context(connect(ws_url(live_server, "keywords")))
        with pytest.raises(InvalidStatus) as refused:
            with connect(ws_url(live_server, "keywords")):
                pass
        assert refused.value.response.status_code == 503


def test_the_stream_command_prints_results_and_writes_the_denoised_wav(live_server, tmp_path):
    source = tmp_path / "speech.wav"
    source.write_bytes(wav_bytes(signal(1.5, 16000), 16000))
    base = [*cli(), "stream", str(source), "--url", live_server, "--api-key", KEY, "--speed", "0"]
    transcribe = subprocess.run([*base, "--task", "transcribe", "--partials"], capture_output=True, text=True, timeout=120)
    assert transcribe.returncode == 0, transcribe.stderr
    assert "[0.00-1.50]" in transcribe.stdout and "real-time factor" in transcribe.stderr
    out = tmp_path / "clean.wav"
    denoise = subprocess.run([*base, "--task", "denoise", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert denoise.returncode == 0, denoise.stderr
    from app.audio.decode import decode

    clean = decode(out.read_bytes())
    assert clean.sample_rate == 16000 and clean.samples.shape[-1] == 24000
    wrong_key = subprocess.run([*cli(), "stream", str(source), "--url", live_server, "--api-key", "nope", "--speed", "0"],
                               capture_output=True, text=True, timeout=120)
    assert wrong_key.returncode == 1 and "invalid_api_key" in wrong_key.stderr


def test_the_server_answers_pings_while_a_flush_waits_for_the_model(live_server):
    """A handler waiting for a flush to drain still reads the socket: uvicorn answers no ping while its app is not
    receiving, and a client's keepalive would give up (a 30-minute soak saw it under load)."""
    clip = signal(0.5)[0].astype("<f4").tobytes()
    pids = [worker["pid"] for worker in httpx.get(f"{live_server}/health/ready").json()["workers"]]
    with connect(ws_url(live_server, "keywords")) as ws:
        ws.send(json.dumps({"type": "session.start", "encoding": "pcm_f32le"}))
        assert json.loads(ws.recv())["type"] == "session.started"
        for pid in pids:  # the model stops answering: the flush cannot drain
            os.kill(pid, signal_module.SIGSTOP)
        try:
            ws.send(clip)
            ws.send(json.dumps({"type": "input.flush"}))
            ws.send(clip)  # uvicorn hands this to the app and stops reading until the app takes it
            assert ws.ping().wait(5), "no pong while the flush waited for the model"
        finally:
            for pid in pids:
                os.kill(pid, signal_module.SIGCONT)
        ws.send(json.dumps({"type": "session.end"}))
        messages = [json.loads(m) for m in ws if isinstance(m, str)]
        assert ws.close_code == 1000 and messages[-1]["type"] == "session.ended"


def test_a_stream_whose_worker_dies_gets_worker_lost_and_1013(live_server):
    """It costs the server a worker restart: the test waits for the replacement, so the tests after it (in any
    order) find the server ready."""
    clip = signal(0.5)[0].astype("<f4").tobytes()
    try:
        lose_a_worker_mid_stream(live_server, clip)
    finally:
        end = time.monotonic() + 60
        while httpx.get(f"{live_server}/health/ready").status_code != 200:
            assert time.monotonic() < end, "the killed worker was never replaced"
            time.sleep(0.1)


def lose_a_worker_mid_stream(live_server: str, clip: bytes) -> None:
    with connect(ws_url(live_server, "transcribe")) as ws:
        ws.send(json.dumps({"type": "session.start", "encoding": "pcm_f32le"}))
        assert json.loads(ws.recv())["type"] == "session.started"
        workers = httpx.get(f"{live_server}/health/ready").json()["workers"]
        os.kill(workers[0]["pid"], signal_module.SIGKILL)
        messages = []
        with pytest.raises(ConnectionClosed):
            while True:  # keep streaming until the server gives up on the stream
                ws.send(clip)
                try:
                    messages.append(ws.recv(timeout=0.2))
                except TimeoutError:
                    pass
        with contextlib.suppress(ConnectionClosed):
            while True:  # what arrived before the close
                messages.append(ws.recv(timeout=1))
        errors = [json.loads(m)["code"] for m in messages if isinstance(m, str) and json.loads(m)["type"] == "error"]
        assert errors == ["worker_lost"] and ws.close_code == 1013
