"""Every endpoint through the ASGI app, with worker processes, in every response format and audio format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from service_testkit import FORMATS, encoded, signal, wav_bytes

from app.audio import decode


def upload(data: bytes, name: str = "clip.wav") -> dict:
    return {"file": (name, data, "application/octet-stream")}


def test_health_and_docs(client):
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["workers"][0]["kind"] == "process"
    assert client.get("/health").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/transcribe", "/v1/audio/transcriptions", "/denoise", "/keywords", "/v1/models", "/metrics"} <= set(paths)


def test_models_list_has_openai_shape_and_task_details(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    models = {m["id"]: m for m in body["data"]}
    assert set(models) == {"asr", "kws", "denoise"}
    for m in models.values():
        assert m["object"] == "model" and m["owned_by"] and isinstance(m["created"], int)
        assert m["sample_rate"] == 16000 and m["streaming"] is True
        assert m["algorithmic_latency_ms"] == pytest.approx(1000 * m["algorithmic_latency_samples"] / 16000, abs=1e-3)
    assert models["asr"]["task"] == "asr" and len(models["kws"]["labels"]) == 37
    assert client.get("/v1/models/kws").json()["task"] == "kws"
    assert client.get("/v1/models/nope").json()["error"]["code"] == "model_not_found"
    # the names OpenAI clients send resolve on GET as they do on POST, under the id asked for
    alias = client.get("/v1/models/whisper-1").json()
    assert alias["id"] == "whisper-1" and alias["task"] == "asr" and alias["parameters"] == models["asr"]["parameters"]
    # an absurd id is not echoed back whole
    assert len(client.get("/v1/models/" + "x" * 5000).json()["error"]["message"]) < 200


def test_openai_language_must_be_english(client):
    data = wav_bytes(signal(0.5), 16000)
    for language in ("en", "EN"):
        r = client.post("/v1/audio/transcriptions", files=upload(data), data={"model": "whisper-1", "language": language})
        assert r.status_code == 200, r.text
    r = client.post("/v1/audio/transcriptions", files=upload(data), data={"model": "whisper-1", "language": "fr"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsupported_language"
    assert r.json()["error"]["param"] == "language" and "language=en" in r.json()["error"]["message"]


def test_transcribe_returns_text_and_timed_words(client):
    r = client.post("/transcribe", files=upload(wav_bytes(signal(0.8), 16000)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "asr" and body["duration"] == pytest.approx(0.8)
    assert body["text"] == " ".join(w["word"] for w in body["words"])
    for w in body["words"]:
        assert 0 <= w["start"] < w["end"] <= 0.8 + 0.04 and 0 <= w["confidence"] <= 1
    bare = client.post("/transcribe", files=upload(wav_bytes(signal(0.8), 16000)), data={"word_timestamps": "false"})
    assert "words" not in bare.json() and bare.json()["text"] == body["text"]


def test_transcribe_options_beam_search_and_denoise_first(client):
    data = wav_bytes(signal(0.8), 16000)
    for options in ({"beam_search": "true"}, {"denoise": "true"}, {"denoise": "true", "beam_search": "true"}):
        r = client.post("/transcribe", files=upload(data), data=options)
        assert r.status_code == 200, (options, r.text)
        assert isinstance(r.json()["text"], str)


SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "turn-on-the-lights.wav"


def test_beam_search_is_the_default_decoding_on_both_transcription_endpoints(client):
    """A sentence on which greedy decoding and beam search disagree, so ignoring the option cannot pass."""
    data = SAMPLE.read_bytes()

    def text(path: str, **options: str) -> str:
        r = client.post(path, files=upload(data), data=options)
        assert r.status_code == 200, r.text
        return r.json()["text"]

    beam, greedy = text("/transcribe", beam_search="true"), text("/transcribe", beam_search="false")
    assert beam != greedy
    assert text("/transcribe") == beam
    assert text("/v1/audio/transcriptions", model="whisper-1") == beam
    assert text("/v1/audio/transcriptions", model="whisper-1", beam_search="false") == greedy


def test_long_clip_runs_chunk_by_chunk_like_one_call(client):
    """chunk_seconds is 1 s here, so a 2.5 s clip runs through a resident session in three chunks."""
    data = wav_bytes(signal(2.5, seed=3), 16000)
    long = client.post("/transcribe", files=upload(data))
    assert long.status_code == 200 and long.json()["duration"] == pytest.approx(2.5)
    streamed = np.frombuffer(client.post("/denoise", files=upload(data), data={"response_format": "pcm"}).content, "<i2")
    assert len(streamed) == 40000
    head = wav_bytes(signal(2.5, seed=3)[:, :16000], 16000)
    alone = np.frombuffer(client.post("/denoise", files=upload(head), data={"response_format": "pcm"}).content, "<i2")
    # Causal network, exact streaming: the first second of the chunked result equals one call on that second.
    assert np.abs(streamed[:16000].astype(int) - alone.astype(int)).max() <= 1


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_audio_format_is_accepted(client, fmt):
    rate = 48000 if fmt in ("opus", "webm") else 44100
    r = client.post("/transcribe", files=upload(encoded(fmt, 0.6, rate, 2), f"clip.{fmt}"))
    assert r.status_code == 200, r.text
    assert r.json()["duration"] == pytest.approx(0.6, abs=0.05)


def test_raw_pcm_upload(client):
    pcm = (signal(0.5, 8000)[0] * 32767).astype("<i2").tobytes()
    r = client.post("/transcribe", files=upload(pcm, "clip.pcm"),
                    data={"encoding": "pcm_s16le", "sample_rate": "8000", "channels": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["duration"] == pytest.approx(0.5)
    by_query = client.post("/transcribe?encoding=pcm_s16le&sample_rate=8000", files=upload(pcm, "clip.pcm"))
    assert by_query.status_code == 200 and by_query.json()["text"] == r.json()["text"]
    bad_query = client.post("/transcribe?encoding=pcm_s16le", files=upload(pcm))
    assert bad_query.status_code == 422 and "sample_rate" in bad_query.json()["error"]["message"]
    missing_rate = client.post("/transcribe", files=upload(pcm), data={"encoding": "pcm_s16le"})
    assert missing_rate.status_code == 422 and "sample_rate" in missing_rate.json()["error"]["message"]


@pytest.mark.parametrize("fmt,media", [("wav", "audio/wav"), ("flac", "audio/flac"), ("pcm", "audio/pcm")])
def test_denoise_keeps_duration_and_rate(client, fmt, media):
    source = encoded("ogg", 0.7, 22050, 2)
    original = decode(source)
    r = client.post("/denoise", files=upload(source, "noisy.ogg"), data={"response_format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media and r.headers["x-sample-rate"] == "22050"
    if fmt == "pcm":
        assert r.headers["x-encoding"] == "pcm_s16le"
        assert len(r.content) // 2 == original.samples.shape[0]
    else:
        out = decode(r.content)
        assert out.sample_rate == 22050 and out.samples.shape == original.samples.shape
    assert client.post("/v1/audio/denoise", files=upload(source)).status_code == 200


def test_keywords_on_one_second_ranks_every_class(client):
    r = client.post("/keywords", files=upload(wav_bytes(signal(1.0), 16000)), data={"threshold": "0"})
    assert r.status_code == 200, r.text
    body = r.json()
    scores = body["scores"]
    assert len(scores) == 37 and [s["score"] for s in scores] == sorted((s["score"] for s in scores), reverse=True)
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-3)
    # threshold 0: the best keyword of the only window is a detection spanning the clip
    for d in body["detections"]:
        assert d["keyword"] in {s["label"] for s in scores} and not d["keyword"].startswith("_")
        assert 0 <= d["start"] < d["end"] <= 1.0


def test_keywords_slide_over_long_clips(client):
    r = client.post("/keywords", files=upload(wav_bytes(signal(3.2), 16000)),
                    data={"threshold": "0", "hop": "0.5", "keywords[]": ["yes", "no"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "scores" not in body and body["duration"] == pytest.approx(3.2)
    for d in body["detections"]:
        assert d["keyword"] in {"yes", "no"} and 0 <= d["start"] < d["end"] <= 3.2 + 1e-6
    # merged runs never overlap
    spans = sorted((d["start"], d["end"]) for d in body["detections"])
    assert all(a[1] <= b[0] + 1.0 for a, b in zip(spans, spans[1:]))
    bad = client.post("/keywords", files=upload(wav_bytes(signal(1.0), 16000)), data={"keywords[]": ["banana"]})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "keywords[]"
    assert client.post("/v1/audio/keywords", files=upload(wav_bytes(signal(0.5), 16000))).status_code == 200


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_openai_response_formats(client, fmt):
    data = {"model": "whisper-1", "response_format": fmt, "timestamp_granularities[]": ["word", "segment"],
            "language": "en", "prompt": "ignored", "temperature": "0.2"}
    r = client.post("/v1/audio/transcriptions", files=upload(wav_bytes(signal(1.5), 16000)), data=data)
    assert r.status_code == 200, r.text
    if fmt == "json":
        assert set(r.json()) == {"text"}
    elif fmt == "text":
        assert r.headers["content-type"].startswith("text/plain")
    elif fmt == "srt":
        assert r.text == "" or "-->" in r.text and "," in r.text.split("-->")[0]
    elif fmt == "vtt":
        assert r.text.startswith("WEBVTT")
    else:
        body = r.json()
        assert body["task"] == "transcribe" and body["language"] == "english"
        assert body["duration"] == pytest.approx(1.5)
        assert isinstance(body["segments"], list) and isinstance(body["words"], list)
        assert " ".join(s["text"] for s in body["segments"]) == body["text"]


def test_metrics_expose_the_service(client):
    client.post("/transcribe", files=upload(wav_bytes(signal(0.5), 16000)))
    text = client.get("/metrics").text
    for name in ("centaurus_requests_total", "centaurus_errors_total", "centaurus_request_seconds_bucket",
                 "centaurus_audio_seconds_total", "centaurus_real_time_factor_bucket", "centaurus_queue_depth",
                 "centaurus_batch_size_bucket", "centaurus_active_streams", "centaurus_workers"):
        assert name in text, name
    assert 'endpoint="/transcribe"' in text
