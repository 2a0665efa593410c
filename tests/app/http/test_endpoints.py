"""Every endpoint through the ASGI app, with worker processes, in every response format and audio format."""

from __future__ import annotations

import re

import numpy as np
import pytest
from service_testkit import FORMATS, SPEECH_SAMPLE, encoded, record_model_calls, signal, upload, wav_bytes

from app.audio.decode import decode
from model_zoo.pipelines.denoise import for_recognizer



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


def test_transcribe_options_beam_search_and_denoise_first(client, monkeypatch):
    """Each option reaches the models (the denoiser runs first, the recognizer gets the decoding asked for) and
    changes the transcript, so ignoring either cannot pass."""
    data = SPEECH_SAMPLE.read_bytes()
    calls = record_model_calls(client, monkeypatch)
    texts = {}
    for beam_search in (True, False):
        for denoise in (True, False):
            calls.clear()
            r = client.post("/transcribe", files=upload(data),
                            data={"beam_search": str(beam_search).lower(), "denoise": str(denoise).lower()})
            assert r.status_code == 200, r.text
            assert calls == [("denoise", {})] * denoise + [("asr", {"beam_search": beam_search})]
            texts[beam_search, denoise] = r.json()["text"]
    assert texts[True, False] != texts[False, False]
    assert texts[False, True] != texts[False, False]  # greedy text follows every change of the audio


def test_denoising_first_hands_the_recognizer_the_denoisers_mix_at_the_models_rate(client, monkeypatch):
    """An 8 kHz upload is resampled once to the models' 16 kHz; the recognizer gets exactly the denoiser's output
    mixed with that input by the pipeline's rule (not resampled back to 8 kHz and up again)."""
    pool, rows = client.app.state.pool, {}
    forward = pool.forward

    async def kept_forward(model, batch, options, deadline):
        out = await forward(model, batch, options, deadline)
        rows[model] = (np.array(batch), out)
        return out

    monkeypatch.setattr(pool, "forward", kept_forward)
    r = client.post("/transcribe", files=upload(wav_bytes(signal(0.8, 8000), 8000)), data={"denoise": "true"})
    assert r.status_code == 200, r.text
    noisy, clean = rows["denoise"]
    assert noisy.shape == (1, 12800)  # 0.8 s at 16 kHz
    assert np.array_equal(rows["asr"][0], for_recognizer(noisy[0], np.asarray(clean))[None])
    assert not np.array_equal(rows["asr"][0], np.asarray(clean))


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
    # A word the keyword model does not know is searched for by the recognizer (tests/app/http/test_open_keywords.py).
    other = client.post("/keywords", files=upload(wav_bytes(signal(1.0), 16000)), data={"keywords[]": ["banana"]})
    assert other.status_code == 200 and other.json()["recognizer"] == "asr"
    bad = client.post("/keywords", files=upload(wav_bytes(signal(1.0), 16000)), data={"keywords[]": ["banana4"]})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "keywords[]"
    assert client.post("/v1/audio/keywords", files=upload(wav_bytes(signal(0.5), 16000))).status_code == 200


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_openai_response_formats(client, fmt):
    """On speech (a non-empty transcript), so an empty subtitle file or an empty word list cannot pass."""
    data = {"model": "whisper-1", "response_format": fmt, "timestamp_granularities[]": ["word", "segment"],
            "language": "en", "prompt": "ignored", "temperature": "0.2"}
    speech = upload(SPEECH_SAMPLE.read_bytes())
    text = client.post("/v1/audio/transcriptions", files=speech, data={"model": "whisper-1"}).json()["text"]
    assert text.strip()
    r = client.post("/v1/audio/transcriptions", files=speech, data=data)
    assert r.status_code == 200, r.text
    clock = r"\d\d:\d\d:\d\d[,.]\d{3}"
    if fmt == "json":
        assert r.json() == {"text": text}
    elif fmt == "text":
        assert r.headers["content-type"].startswith("text/plain") and r.text == text + "\n"
    elif fmt in ("srt", "vtt"):
        body = r.text
        if fmt == "vtt":
            assert r.headers["content-type"].startswith("text/vtt") and body.startswith("WEBVTT\n\n")
            body = body.removeprefix("WEBVTT\n\n")
        cues = body.strip("\n").split("\n\n")
        number = r"\d+\n" if fmt == "srt" else ""
        assert all(re.fullmatch(f"{number}{clock} --> {clock}\n.+", cue) for cue in cues), body
        separator = "," if fmt == "srt" else "."
        assert all(separator in cue.split(" --> ")[0] for cue in cues)
        assert " ".join(cue.rsplit("\n", 1)[1] for cue in cues) == text
    else:
        body = r.json()
        assert body["task"] == "transcribe" and body["language"] == "english"
        assert body["duration"] == pytest.approx(3.93, abs=0.01) and body["text"] == text
        assert body["segments"] and body["words"]
        assert " ".join(s["text"] for s in body["segments"]) == text
        assert " ".join(w["word"] for w in body["words"]) == text


def test_metrics_expose_the_service(client):
    client.post("/transcribe", files=upload(wav_bytes(signal(0.5), 16000)))
    text = client.get("/metrics").text
    for name in ("centaurus_requests_total", "centaurus_errors_total", "centaurus_request_seconds_bucket",
                 "centaurus_audio_seconds_total", "centaurus_real_time_factor_bucket", "centaurus_queue_depth",
                 "centaurus_batch_size_bucket", "centaurus_active_streams", "centaurus_workers"):
        assert name in text, name
    assert 'endpoint="/transcribe"' in text
