"""Streams equal the offline endpoints of the same model, for random framings and resampled rates.

Denoise: the concatenated binary frames equal ``POST /denoise`` sample for sample (both aligned to the input:
the stream's output just arrives ``algorithmic_latency`` later), within the 16-bit rounding of the offline
response. Transcribe: the final transcript (no flush) equals ``POST /transcribe``, words and times included.
Keywords: the detections equal ``POST /keywords`` with the same threshold and hop. All three whatever the step a
session asks for (``step_ms``: the server's default, the smallest and the largest it allows by default).
"""

from __future__ import annotations

import numpy as np
import pytest
import torchaudio
from service_testkit import SPEECH_SAMPLE, signal, wav_bytes
from stream_testkit import random_frames, stream_clip

from app.audio.decode import decode


def speech_at(rate: int, seed: int) -> tuple[bytes, np.ndarray]:
    """The sample sentence at ``rate`` with a little noise, as a 16-bit WAV upload and the samples the server
    decodes from it: speech, so that the default decoding (beam search with a lexicon) has words to find."""
    speech = decode(SPEECH_SAMPLE.read_bytes()).samples
    speech = torchaudio.functional.resample(speech, 16000, rate).numpy()
    noisy = speech + 0.003 * np.random.default_rng(seed).standard_normal(len(speech))
    upload = wav_bytes(noisy[None], rate)
    return upload, decode(upload).samples.numpy()


def clip_at(seconds: float, rate: int, seed: int) -> tuple[bytes, np.ndarray]:
    """A noisy clip as a 16-bit WAV upload, and exactly the samples the server decodes from it (to stream)."""
    noisy = signal(seconds, rate, seed=seed)[0] + 0.05 * np.random.default_rng(seed).standard_normal(int(seconds * rate))
    upload = wav_bytes(noisy[None], rate)
    return upload, decode(upload).samples.numpy()


STEPS = [None, 20, 1000]  # ms; None: the server's default


def step_option(step_ms: float | None) -> dict:
    return {} if step_ms is None else {"step_ms": step_ms}


def check_step(result, step_ms: float | None) -> None:
    """The session stepped by what it asked for (rounded up to the model's frame, at most 30 ms more)."""
    wanted = 80 if step_ms is None else step_ms
    assert wanted <= result.messages[0]["step_ms"] <= wanted + 30


@pytest.mark.parametrize("step_ms", STEPS)
@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("seed", [1, 2])
def test_denoised_stream_equals_offline_denoise(client, rate, seed, step_ms):
    upload, clip = clip_at(1.7, rate, seed)
    offline = client.post("/denoise", files={"file": ("a.wav", upload)},
                          data={"response_format": "pcm"})
    assert offline.status_code == 200, offline.text
    expected = np.frombuffer(offline.content, "<i2").astype(np.float32) / 32767.0
    frames = random_frames(clip, np.random.default_rng(seed), largest=rate // 5)
    result = stream_clip(client, "denoise", frames, sample_rate=rate, **step_option(step_ms))
    check_step(result, step_ms)
    assert len(result.audio) == len(clip) == len(expected)
    streamed = np.clip(result.audio, -1, 1)
    assert np.abs(streamed - expected).max() <= 1.0 / 32767  # the offline response is rounded to 16 bits
    assert np.abs(streamed - clip).max() > 1e-3  # and it really is the network's output, not an echo


@pytest.mark.parametrize("step_ms", STEPS)
@pytest.mark.parametrize("rate,seed", [(16000, 3), (44100, 4)])
def test_streamed_transcript_equals_offline_transcribe(client, rate, seed, step_ms):
    upload, clip = speech_at(rate, seed)
    offline = client.post("/transcribe", files={"file": ("a.wav", upload)}).json()
    frames = random_frames(clip, np.random.default_rng(seed), largest=rate // 8)
    result = stream_clip(client, "transcribe", frames, sample_rate=rate, interim_results=True, **step_option(step_ms))
    check_step(result, step_ms)
    finals = result.of("transcript.final")
    assert len(finals) == 1 and finals[0]["text"] == offline["text"] and offline["text"]
    assert [w["word"] for w in finals[0]["words"]] == [w["word"] for w in offline["words"]]
    for streamed, expected in zip(finals[0]["words"], offline["words"]):
        assert streamed["start"] == pytest.approx(expected["start"], abs=1e-3)
        assert streamed["end"] == pytest.approx(expected["end"], abs=1e-3)
    partials = result.of("transcript.partial")
    assert partials and all(p["segment"] == 0 and p["start"] == 0 for p in partials)


@pytest.mark.parametrize("step_ms", STEPS)
@pytest.mark.parametrize("rate,seconds,seed", [(16000, 2.6, 5), (22050, 0.6, 6)])
def test_streamed_keywords_equal_offline_keywords(client, rate, seconds, seed, step_ms):
    upload, clip = clip_at(seconds, rate, seed)
    offline = client.post("/keywords", files={"file": ("a.wav", upload)},
                          data={"threshold": "0.0", "hop": "0.25"}).json()
    frames = random_frames(clip, np.random.default_rng(seed), largest=rate // 4)
    result = stream_clip(client, "keywords", frames, sample_rate=rate, threshold=0.0, hop=0.25,
                         **step_option(step_ms))
    check_step(result, step_ms)
    streamed = result.of("keyword.detected")
    assert offline["detections"], "threshold 0 should detect something even with a random model"
    assert [(d["keyword"], d["start"], d["end"]) for d in streamed] == \
        [(d["keyword"], d["start"], d["end"]) for d in offline["detections"]]
    assert [d["score"] for d in streamed] == pytest.approx([d["score"] for d in offline["detections"]], abs=2e-4)
