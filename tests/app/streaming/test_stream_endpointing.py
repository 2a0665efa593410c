"""Finals at pauses in ``/v1/stream/transcribe``: the endpoint rules cut the stream into utterances, and each
utterance's final equals ``POST /transcribe`` of exactly that utterance's audio (a fresh recognizer per utterance).

The tiny random recognizer hears no pauses, so rule 3 (the maximum length) makes the cuts where exactness is
checked; the pause itself is checked with the shipped recognizer, which hears it in its blank posteriors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_testkit import SPEECH_SAMPLE, settings_for, wait_ready
from stream_testkit import StreamResult, random_frames, receive_until_close, start_message, stream_clip

from app.audio.decode import decode
from app.main import create_app
from app.streaming.live import CATCH_UP_STEPS

RATE = 16000
NEVER = 3600.0  # a rule length that does not fire in these clips


def speech() -> np.ndarray:
    return decode(SPEECH_SAMPLE.read_bytes()).samples.numpy().astype(np.float32)


def offline(client: TestClient, samples: np.ndarray) -> dict:
    """``POST /transcribe`` of exactly these samples (raw float32, as the stream got them)."""
    response = client.post("/transcribe", files={"file": ("a.pcm", np.asarray(samples, "<f4").tobytes())},
                           data={"encoding": "pcm_f32le", "sample_rate": str(RATE)})
    assert response.status_code == 200, response.text
    return response.json()


def assert_final_is_offline_of_its_audio(client: TestClient, final: dict, clip: np.ndarray) -> None:
    first, last = int(round(final["start"] * RATE)), int(round(final["end"] * RATE))
    expected = offline(client, clip[first:last])
    assert final["text"] == expected["text"]
    assert [w["word"] for w in final["words"]] == [w["word"] for w in expected["words"]]
    for streamed, alone in zip(final["words"], expected["words"]):  # the stream's clock: the segment's start later
        assert streamed["start"] == pytest.approx(alone["start"] + final["start"], abs=2e-3)
        assert streamed["end"] == pytest.approx(alone["end"] + final["start"], abs=2e-3)


@pytest.mark.parametrize("seed", [7, 8])
def test_each_final_equals_transcribe_of_its_own_audio(client, seed):
    rng = np.random.default_rng(seed)
    clip = np.concatenate([speech(), speech()[: RATE]])
    clip = (clip + 0.003 * rng.standard_normal(len(clip))).astype(np.float32)
    result = stream_clip(client, "transcribe", random_frames(clip, rng, largest=RATE // 8), sample_rate=RATE,
                         endpoint_max_utterance=1.1, endpoint_silence_after_speech=NEVER,
                         endpoint_silence_without_speech=NEVER)
    finals = result.of("transcript.final")
    assert len(finals) >= 3, finals  # rule 3 cut the 4.9 s every ~1.1 s (finals with text, and the end's)
    assert [f["segment"] for f in finals] == list(range(len(finals)))
    for before, after in zip(finals, finals[1:]):
        assert after["start"] >= before["end"]  # a silent utterance (no text, no partial) sends no final
    for final in finals:
        assert 1.0 <= final["end"] - final["start"] <= 1.2 or final is finals[-1]
        assert_final_is_offline_of_its_audio(client, final, clip)
    partials = result.of("transcript.partial")
    assert {p["segment"] for p in partials} <= {f["segment"] for f in finals}


def paced(client: TestClient, clip: np.ndarray, **options) -> StreamResult:
    """``clip`` sent one step at a time, each step's ``input.progress`` awaited before the next: one step per
    model call, as a stream that keeps up with real time is stepped."""
    with client.websocket_connect("/v1/stream/transcribe") as ws:
        ws.send_text(start_message(**options, progress=True))
        result = StreamResult(np.zeros(0, np.float32), [ws.receive_json()])
        step = result.messages[0]["step_samples"]
        for at in range(0, len(clip) - step + 1, step):
            ws.send_bytes(np.asarray(clip[at:at + step], "<f4").tobytes())
            while (message := ws.receive_json())["type"] != "input.progress":
                result.messages.append(message)
        ws.send_bytes(np.asarray(clip[at + step:], "<f4").tobytes())
        ws.send_text(json.dumps({"type": "session.end"}))
        rest = receive_until_close(ws)
    result.messages += [m for m in rest.messages if m["type"] != "input.progress"]
    return result


def test_a_stream_that_fell_behind_ends_its_utterances_where_a_paced_one_does(client):
    """A backlog is stepped up to CATCH_UP_STEPS steps per call. An utterance that ends inside such a call ends
    after its own step all the same (the later steps' audio goes to the next utterance's session), so the finals
    equal those of the same audio stepped one step per call, and each one ``POST /transcribe`` of its audio."""
    rng = np.random.default_rng(9)
    clip = np.concatenate([speech(), speech()[: RATE]])
    clip = (clip + 0.003 * rng.standard_normal(len(clip))).astype(np.float32)
    options = dict(sample_rate=RATE, endpoint_max_utterance=1.1, endpoint_silence_after_speech=NEVER,
                   endpoint_silence_without_speech=NEVER)
    behind = stream_clip(client, "transcribe", [clip], progress=True, **options)
    step = behind.of("session.started")[0]["step_samples"]
    calls = np.diff([0] + [m["samples"] for m in behind.of("input.progress")])
    assert (calls == CATCH_UP_STEPS * step).sum() >= 3  # it did fall behind: whole calls of several steps
    finals = behind.of("transcript.final")
    assert len(finals) >= 3
    assert finals == paced(client, clip, **options).of("transcript.final")
    for final in finals:
        assert_final_is_offline_of_its_audio(client, final, clip)


@pytest.fixture(scope="module")
def thread_app(tiny_models):
    with TestClient(create_app(settings_for(tiny_models, worker_mode="thread"))) as client:
        wait_ready(client)
        yield client


def test_endpoint_options_are_validated_and_session_update_changes_them(thread_app):
    clip = speech()
    with thread_app.websocket_connect("/v1/stream/transcribe") as ws:
        for bad in ({"endpoint_max_utterance": 0}, {"endpoint_silence_after_speech": -1},
                    {"endpoint_silence_without_speech": 1e9}, {"endpointing": "sometimes"}):
            ws.send_text(start_message(sample_rate=RATE, **bad))
            error = ws.receive_json()
            assert error["type"] == "error" and error["code"] == "invalid_message", error
        ws.send_text(start_message(sample_rate=RATE, endpointing=False, endpoint_max_utterance=0.5))
        assert ws.receive_json()["type"] == "session.started"
        ws.send_bytes(clip[: 2 * RATE].astype("<f4").tobytes())  # endpointing off: no cut in these 2 s
        ws.send_text(json.dumps({"type": "session.update", "endpoint_max_utterance": -2}))
        assert ws.receive_json()["code"] == "invalid_message"
        ws.send_text(json.dumps({"type": "input.flush"}))  # waits for the 2 s: the final of one segment
        messages = []
        while not messages or messages[-1]["type"] != "transcript.final":
            messages.append(ws.receive_json())
        ws.send_text(json.dumps({"type": "session.update", "endpointing": True, "interim_results": False}))
        ws.send_bytes(clip[2 * RATE:].astype("<f4").tobytes())  # 1.9 s: cut every 0.5 s from now on
        ws.send_text(json.dumps({"type": "session.end"}))
        rest = receive_until_close(ws)
    finals = [m for m in messages if m["type"] == "transcript.final"]
    assert len(finals) == 1 and finals[0]["end"] == pytest.approx(2.0, abs=0.05)
    later = rest.of("transcript.final")
    assert len(later) >= 3 and later[-1]["end"] == pytest.approx(len(clip) / RATE, abs=0.01)
    assert all(f["end"] - f["start"] <= 0.6 for f in later)
    assert rest.of("session.ended") and rest.close_code == 1000


@pytest.fixture(scope="module")
def shipped_app():
    """The shipped recognizer (it hears pauses), in worker threads."""
    with TestClient(create_app(settings_for({"asr": "asr"}, worker_mode="thread"))) as client:
        wait_ready(client, timeout=300)
        yield client


def test_a_pause_between_two_sentences_ends_the_first_with_a_final(shipped_app):
    rng = np.random.default_rng(0)
    sentence = speech()
    pause = 0.001 * rng.standard_normal(int(1.5 * RATE)).astype(np.float32)
    clip = np.concatenate([sentence, pause, sentence])
    frames = [clip[i:i + 1600] for i in range(0, len(clip), 1600)]  # 100 ms frames, as a microphone sends
    result = stream_clip(shipped_app, "transcribe", frames, sample_rate=RATE, interim_results=False)
    finals = result.of("transcript.final")
    assert len(finals) == 2, finals
    pause_starts, pause_ends = len(sentence) / RATE, (len(sentence) + len(pause)) / RATE
    assert pause_starts < finals[0]["end"] < pause_ends + 0.25  # the sample's own 0.25 s of silence follows
    assert finals[0]["text"] and finals[1]["text"]
    for final in finals:
        assert_final_is_offline_of_its_audio(shipped_app, final, clip)
    # With endpointing off, the same stream has one final, at the end.
    whole = stream_clip(shipped_app, "transcribe", frames, sample_rate=RATE, endpointing=False)
    assert len(whole.of("transcript.final")) == 1
