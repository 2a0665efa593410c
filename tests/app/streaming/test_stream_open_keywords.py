"""The keyword stream with keywords of the caller's choosing: words the classifier does not know are searched for in
the served recognizer's output on a second resident session (``app/streaming/open_keywords.py``), and arrive as
the same ``keyword.detected`` messages, equal to ``POST /keywords``' open-vocabulary detections for the same audio.

The plumbing, the exactness for random framings and steps, and the validation run on the tiny models through the
ASGI app; what is heard is checked with the shipped recognizer on the spoken sample, over a real server with the
``websockets`` client (as a live client would: the word arrives while the audio is still open).
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_testkit import (SPEECH_SAMPLE, settings_for, signal, start_server, stop_server, upload, wait_ready,
                             wav_bytes)
from stream_testkit import random_frames, receive_until_close, start_message, stream_clip
from websockets.sync.client import connect

from app.audio.decode import decode
from app.main import create_app
from model_zoo.pipelines.open_keywords import LOOKAHEAD_SECONDS, MAX_KEYWORD_CHARS, MAX_KEYWORDS



def greedy_words(client, data: bytes) -> list[dict]:
    r = client.post("/transcribe", files=upload(data), data={"beam_search": "false"})
    assert r.status_code == 200, r.text
    return r.json()["words"]


def key(detections: list[dict]) -> list[tuple]:
    return sorted((d["keyword"], d["start"], d["end"]) for d in detections)


def scores(detections: list[dict]) -> list[float]:
    return [d["score"] for d in sorted(detections, key=lambda d: (d["keyword"], d["start"], d["end"]))]


# ---- the tiny models: exactness, updates, refusals ----------------------------------------------------------------
@pytest.mark.parametrize("step_ms", [None, 20, 1000])
@pytest.mark.parametrize("rate,seed", [(16000, 1), (22050, 2)])
def test_streamed_open_keywords_equal_post_keywords_for_any_framing_and_step(client, rate, seed, step_ms):
    """The tiny recognizer's own word (threshold 0, so it is found however the tiny model spells), and a word of
    the classifier, in one stream: everything equals POST /keywords with the same keywords, threshold and hop."""
    data = wav_bytes(signal(3.2, rate, seed=seed), rate)
    clip = decode(data).samples.numpy()
    word = max((w["word"] for w in greedy_words(client, data) if len(w["word"]) <= MAX_KEYWORD_CHARS), key=len)
    keywords = [f"{word} #0", "yes"]
    offline = client.post("/keywords", files=upload(data),
                          data={"keywords": keywords, "threshold": "0.0", "hop": "0.25"}).json()
    assert offline["recognizer"] == "asr" and any(d["keyword"] == word for d in offline["detections"]), offline
    frames = random_frames(clip, np.random.default_rng(seed), largest=rate // 4)
    result = stream_clip(client, "keywords", frames, sample_rate=rate, keywords=keywords, threshold=0.0, hop=0.25,
                         **({} if step_ms is None else {"step_ms": step_ms}))
    streamed = result.of("keyword.detected")
    assert key(streamed) == key(offline["detections"])
    assert scores(streamed) == pytest.approx(scores(offline["detections"]), abs=2e-4)
    assert result.close_code == 1000


def test_session_update_starts_a_new_search_on_the_audio_that_follows(client):
    """Start with the classifier's word only; then update to a word of the recognizer's: its search starts on the
    next audio, on the stream's clock, exactly as POST /keywords of that audio alone (moved by its start). An
    update back to the classifier's word ends the search, with what it had heard."""
    data = wav_bytes(signal(2.0, seed=3), 16000)
    clip = decode(data).samples.numpy()
    word = max((w["word"] for w in greedy_words(client, data) if len(w["word"]) <= MAX_KEYWORD_CHARS), key=len)
    alone = client.post("/keywords", files=upload(data), data={"keywords": f"{word} #0"}).json()["detections"]
    assert alone
    with client.websocket_connect("/v1/stream/keywords") as ws:
        ws.send_text(start_message(sample_rate=16000, keywords=["yes"], threshold=1.0))
        assert ws.receive_json()["type"] == "session.started"
        ws.send_bytes(clip.astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "session.update", "keywords": [f"{word} #0"]}))
        ws.send_bytes(clip.astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "session.update", "keywords": ["yes"]}))
        ws.send_bytes(clip.astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "session.end"}))
        result = receive_until_close(ws)
    streamed = result.of("keyword.detected")
    assert [(d["keyword"], d["start"], d["end"]) for d in streamed] == \
        [(d["keyword"], pytest.approx(d["start"] + 2.0, abs=1e-3), pytest.approx(d["end"] + 2.0, abs=1e-3))
         for d in alone]
    assert [d["score"] for d in streamed] == pytest.approx([d["score"] for d in alone], abs=2e-4)
    assert result.of("error") == [] and result.close_code == 1000


@pytest.mark.parametrize("keywords, words", [
    (["r2d2"], "cannot spell: '2'"),
    (["yes", ""], "empty keyword"),
    (["x" * (MAX_KEYWORD_CHARS + 1)], f"longer than {MAX_KEYWORD_CHARS}"),
    ([f"word{i}" for i in range(MAX_KEYWORDS + 1)], "cannot spell"),  # digits: refused before the count
    ([f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(MAX_KEYWORDS + 1)], f"at most {MAX_KEYWORDS}"),
    (["banana #1.5"], "between 0 and 1"),
    (["banana #0.4, banana #0.5"], "twice with different settings"),
    (["yes #0.4"], "its own words use threshold"),
])
def test_keywords_are_refused_as_post_keywords_refuses_them(client, keywords, words):
    """The same rule and messages as POST /keywords (app.keywords): at session.start the session does not start,
    at session.update it goes on unchanged; the connection stays open either way."""
    with client.websocket_connect("/v1/stream/keywords") as ws:
        ws.send_text(start_message(keywords=keywords))
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == "invalid_parameter" and words in error["message"], error
        ws.send_text(start_message(keywords=["yes", "banana #0.2 :0.1"]))
        assert ws.receive_json()["type"] == "session.started"
        ws.send_text(json.dumps({"type": "session.update", "keywords": keywords}))
        error = ws.receive_json()
        assert error["code"] == "invalid_parameter" and words in error["message"], error
        ws.send_bytes(signal(0.5)[0].astype("<f4").tobytes())
        ws.send_text(json.dumps({"type": "session.end"}))
        assert receive_until_close(ws).close_code == 1000


@pytest.fixture(scope="module")
def classifier_only(tiny_models):
    with TestClient(create_app(settings_for({"kws": tiny_models["kws"]}, worker_mode="thread"))) as c:
        wait_ready(c)
        yield c


def test_without_a_recognizer_other_words_are_unknown_keywords(classifier_only):
    with classifier_only.websocket_connect("/v1/stream/keywords") as ws:
        ws.send_text(start_message(keywords=["yes", "banana"]))
        error = ws.receive_json()
        assert error["code"] == "invalid_parameter" and "unknown keywords ['banana']" in error["message"], error
        ws.send_text(start_message(keywords=["yes", "no"]))
        assert ws.receive_json()["type"] == "session.started"


# ---- the shipped recognizer over a real server: the word it hears, live -------------------------------------------
@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    server = start_server({"asr": "asr", "kws": "kws"}, tmp_path_factory.mktemp("open-stream") / "server.log")
    yield server.base
    stop_server(server)


def test_a_word_the_recognizer_hears_is_detected_live_as_post_keywords_finds_it(shipped):
    """The word of at least 4 letters the shipped recognizer is surest of in the sample (greedy decoding; whatever
    the checkpoint, a word it heard), streamed as 16-bit PCM in 100 ms frames: its detection arrives while the
    stream is still open (LOOKAHEAD_SECONDS after the word), where the recognizer heard it, and equals
    POST /keywords' detection for the same audio; words not said are not found."""
    speech = decode(SPEECH_SAMPLE.read_bytes()).samples.numpy()
    audio = np.concatenate([speech, np.zeros(16000, np.float32)])  # a second of silence after the sentence
    data = wav_bytes(audio[None], 16000)
    words = httpx.post(f"{shipped}/transcribe", files=upload(data), data={"beam_search": "false"}, timeout=120).json()
    heard = max((w for w in words["words"] if len(w["word"]) >= 4), key=lambda w: w["confidence"])
    keywords = [heard["word"], "zebra", "hey computer"]
    offline = httpx.post(f"{shipped}/keywords", files=upload(data), data={"keywords": keywords}, timeout=120).json()
    assert [d["keyword"] for d in offline["detections"]] == [heard["word"]], (heard, offline)

    pcm = (np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes()
    messages, sent = [], 0
    with connect(shipped.replace("http", "ws", 1) + "/v1/stream/keywords") as ws:
        ws.send(json.dumps({"type": "session.start", "sample_rate": 16000, "encoding": "pcm_s16le",
                            "keywords": keywords}))
        assert json.loads(ws.recv())["type"] == "session.started"
        while sent < len(pcm) and not any(m["type"] == "keyword.detected" for m in messages):
            ws.send(pcm[sent:sent + 3200])
            sent += 3200
            try:
                while True:
                    messages.append(json.loads(ws.recv(timeout=0.05)))
            except TimeoutError:
                pass
        ws.send(pcm[sent:])
        ws.send(json.dumps({"type": "session.end"}))
        messages += [json.loads(m) for m in ws]
        assert ws.close_code == 1000
    detected = [m for m in messages if m["type"] == "keyword.detected"]
    assert key(detected) == key(offline["detections"])
    assert scores(detected) == pytest.approx(scores(offline["detections"]), abs=2e-4)
    hit = detected[0]
    assert hit["start"] < heard["end"] and heard["start"] < hit["end"]  # where the recognizer heard it
    # Live: it came before the audio ran out, about the look-ahead after the word's end.
    assert sent < len(pcm) and sent / 2 / 16000 <= hit["end"] + LOOKAHEAD_SECONDS + 0.5, (sent, hit)
