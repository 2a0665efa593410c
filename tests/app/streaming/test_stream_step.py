"""The step length chosen per session (``session.start``'s ``step_ms``) and ``input.progress``, against a real
server with the ``websockets`` client: the step is honoured (one model step, one output per ``step_ms`` of
audio), refused outside the server's limits with the protocol's error, and the results stay exact: the denoised
audio and the final transcript equal the upload endpoints' for the same audio, whatever the step."""

from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest
from service_testkit import SPEECH_SAMPLE, signal, start_server, stop_server, wav_bytes
from websockets.sync.client import connect

from app.audio.decode import decode
from app.settings import Settings
from app.streaming.live import CATCH_UP_STEPS

RATE = 16000


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    """Today's defaults: an 80 ms step, sessions may ask for 20 to 1000 ms."""
    running = start_server(tiny_models, tmp_path_factory.mktemp("step") / "server.log", ready_timeout=120)
    yield running.base
    stop_server(running)


def url(base: str, task: str) -> str:
    return base.replace("http", "ws", 1) + f"/v1/stream/{task}"


def session(base: str, task: str, frames: list[np.ndarray], **options) -> tuple[dict, list, list[dict]]:
    """One whole session: start (float32 at 16 kHz unless ``sample_rate``), frames, end; returns session.started,
    the binary frames (as float32 arrays) and the other messages, everything until the close (which must be 1000)."""
    binary, messages = [], []
    with connect(url(base, task), max_size=None) as ws:
        ws.send(json.dumps({"type": "session.start", "sample_rate": RATE, "encoding": "pcm_f32le", **options}))
        started = json.loads(ws.recv())
        assert started["type"] == "session.started", started
        for frame in frames:
            ws.send(np.asarray(frame, "<f4").tobytes())
        ws.send(json.dumps({"type": "session.end"}))
        for message in ws:
            if isinstance(message, bytes):
                binary.append(np.frombuffer(message, "<f4"))
            else:
                messages.append(json.loads(message))
        assert ws.close_code == 1000, messages[-3:]
    return started, binary, messages


def progress(messages: list[dict]) -> list[int]:
    return [m["samples"] for m in messages if m["type"] == "input.progress"]


def steps_of(length: int, step: int, catch_up: int) -> list[int]:
    """``input.progress`` of a session given ``length`` samples at once: whole steps, up to ``catch_up`` of them
    per model call, then the rest at the end."""
    done, calls = 0, []
    while length - done >= step:
        done += step * min((length - done) // step, catch_up)
        calls.append(done)
    return calls + ([length] if done < length else [])


def assert_audio_follows_calls(binary: list[np.ndarray], calls: list[int], step: int, length: int) -> None:
    """Each whole-step call's denoised audio is one binary message; the rest comes with the end."""
    whole = [int(d) for d in np.diff([0] + calls) if d % step == 0]
    assert [len(b) for b in binary[:len(whole)]] == whole
    assert sum(len(b) for b in binary) == length


# The clip arrives at once, so it is a backlog: stepped CATCH_UP_STEPS steps per call, by every task (a transcript
# stream's utterances still end where they would at real-time pace: test_stream_endpointing).
CATCH_UP = {"denoise": CATCH_UP_STEPS, "transcribe": CATCH_UP_STEPS, "keywords": CATCH_UP_STEPS}


@pytest.mark.parametrize("task", ["denoise", "transcribe", "keywords"])
def test_a_session_steps_by_the_step_it_asks_for(server, task):
    clip = signal(1.0, RATE)[0]
    started, binary, messages = session(server, task, [clip], step_ms=20, progress=True)
    step = started["step_samples"]
    assert started["step_ms"] == pytest.approx(1000 * step / RATE, abs=1e-3)
    assert 20 <= started["step_ms"] <= 32  # 20 ms rounded up to the model's frame (the tiny denoiser's: 16 ms)
    # Whole steps of step_ms of audio, then the rest at the end, each call followed by input.progress.
    calls = progress(messages)
    assert calls == steps_of(len(clip), step, CATCH_UP[task])
    if task == "denoise":  # the denoised audio of each call arrives as it is stepped
        assert_audio_follows_calls(binary, calls, step, len(clip))
    # Without step_ms: the server's default of 80 ms, so a few times fewer steps and messages.
    default_started, default_binary, default_messages = session(server, task, [clip], progress=True)
    default = default_started["step_samples"]
    assert default >= 1280 and default_started["step_ms"] >= 80
    assert progress(default_messages) == steps_of(len(clip), default, CATCH_UP[task])
    assert default >= 2 * step
    if task == "denoise":
        assert_audio_follows_calls(default_binary, progress(default_messages), default, len(clip))


def test_without_progress_no_input_progress_is_sent(server):
    _, _, messages = session(server, "transcribe", [signal(0.5, RATE)[0]], step_ms=20)
    assert not progress(messages) and messages[-1]["type"] == "session.ended"


def test_a_step_outside_the_servers_limits_gets_an_error_and_the_connection_stays(server):
    with connect(url(server, "denoise")) as ws:
        for bad in (19.9, 5, 1000.5, 60000):
            ws.send(json.dumps({"type": "session.start", "step_ms": bad}))
            error = json.loads(ws.recv())
            assert error["type"] == "error" and error["code"] == "invalid_parameter", error
            assert "step_ms must be between 20 and 1000" in error["message"]
        for bad in (0, -20, "fast"):
            ws.send(json.dumps({"type": "session.start", "step_ms": bad}))
            error = json.loads(ws.recv())
            assert error["type"] == "error" and error["code"] == "invalid_message", error
        ws.send(json.dumps({"type": "session.start", "step_ms": 1000}))  # the limits themselves are allowed
        started = json.loads(ws.recv())
        assert started["type"] == "session.started" and started["step_ms"] >= 1000


def test_the_server_refuses_a_default_step_outside_its_own_limits():
    with pytest.raises(pydantic.ValidationError, match="stream_min_step_ms"):
        Settings(stream_step_ms=10)
    with pytest.raises(pydantic.ValidationError, match="stream_max_step_ms"):
        Settings(stream_step_ms=500, stream_max_step_ms=400)
    assert Settings(stream_step_ms=10, stream_min_step_ms=10).stream_min_step_ms == 10


def frames_of(samples: np.ndarray, size: int) -> list[np.ndarray]:
    return [samples[i:i + size] for i in range(0, len(samples), size)]


@pytest.mark.parametrize("step_ms", [20, 1000])
def test_the_denoised_stream_equals_the_upload_whatever_the_step(server, step_ms):
    import httpx

    noisy = signal(1.3, RATE, seed=7)[0] + 0.05 * np.random.default_rng(7).standard_normal(int(1.3 * RATE))
    upload = wav_bytes(noisy[None], RATE)
    clip = decode(upload).samples.numpy()
    offline = httpx.post(f"{server}/denoise", files={"file": ("a.wav", upload)}, data={"response_format": "pcm"},
                         timeout=60)
    assert offline.status_code == 200, offline.text
    expected = np.frombuffer(offline.content, "<i2").astype(np.float32) / 32767.0
    _, binary, _ = session(server, "denoise", frames_of(clip, 320), step_ms=step_ms)
    streamed = np.clip(np.concatenate(binary), -1, 1)
    assert len(streamed) == len(clip) == len(expected)
    assert np.abs(streamed - expected).max() <= 1.0 / 32767  # the upload's answer is rounded to 16 bits
    assert np.abs(streamed - clip).max() > 1e-3  # the network's output, not an echo


@pytest.mark.parametrize("step_ms", [20, 1000])
def test_the_final_transcript_equals_the_upload_whatever_the_step(server, step_ms):
    import httpx

    speech = decode(SPEECH_SAMPLE.read_bytes()).samples.numpy()
    upload = wav_bytes((speech + 0.003 * np.random.default_rng(8).standard_normal(len(speech)))[None], RATE)
    clip = decode(upload).samples.numpy()
    offline = httpx.post(f"{server}/transcribe", files={"file": ("a.wav", upload)}, timeout=60).json()
    _, _, messages = session(server, "transcribe", frames_of(clip, 320), step_ms=step_ms, interim_results=True)
    finals = [m for m in messages if m["type"] == "transcript.final"]
    assert len(finals) == 1 and offline["text"] and finals[0]["text"] == offline["text"]
    assert [(w["word"], round(w["start"], 3), round(w["end"], 3)) for w in finals[0]["words"]] == \
        [(w["word"], round(w["start"], 3), round(w["end"], 3)) for w in offline["words"]]


def test_websocket_compression_is_refused_by_default(server):
    """The websockets client offers permessage-deflate; the server declines it (audio does not compress)."""
    with connect(url(server, "denoise")) as ws:
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
