"""Decoding every container ffmpeg makes, raw PCM, validation errors, resampling and encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.audio.decode import RawFormat, decode
from app.audio.encode import encode
from app.audio.resample import resample
from app.errors import AudioDecodeError, BadRequest, PayloadTooLarge

from service_testkit import FORMATS, encoded, signal, wav_bytes


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_container_decodes_to_mono_with_its_duration(fmt):
    rate = 48000 if fmt in ("opus", "webm") else 44100  # opus only runs at 48 kHz
    audio = decode(encoded(fmt, seconds=0.5, rate=rate, channels=2))
    assert audio.channels == 2 and audio.samples.ndim == 1
    assert audio.sample_rate == rate
    # Lossy codecs add priming samples (AAC: one 1024-sample frame); the duration stays close.
    assert abs(audio.duration - 0.5) < 0.05
    assert 0.05 < float(audio.samples.abs().max()) <= 1.0


def test_lossless_decode_matches_the_source_samples():
    source = signal(0.25, 16000, 1)
    audio = decode(wav_bytes(source, 16000))
    assert torch.allclose(audio.samples, torch.from_numpy(source[0]), atol=1e-4)


def test_downmix_averages_the_channels():
    stereo = np.stack([np.full(800, 0.5), np.full(800, -0.1)]).astype(np.float32)
    audio = decode(wav_bytes(stereo, 8000))
    assert torch.allclose(audio.samples, torch.full((800,), 0.2), atol=1e-3)


@pytest.mark.parametrize("encoding,dtype,scale", [("pcm_s16le", "<i2", 32767), ("pcm_s32le", "<i4", 2**31 - 1),
                                                  ("pcm_f32le", "<f4", 1.0)])
def test_raw_pcm_with_the_stated_format(encoding, dtype, scale):
    source = signal(0.1, 22050, 2)
    data = (source.T * scale).astype(dtype).tobytes()
    audio = decode(data, raw=RawFormat(encoding, 22050, 2))
    assert audio.sample_rate == 22050 and audio.channels == 2 and audio.samples.shape == (2205,)
    assert torch.allclose(audio.samples, torch.from_numpy(source.mean(0)), atol=1e-4)


def test_invalid_audio_is_refused():
    with pytest.raises(BadRequest, match="empty"):
        decode(b"")
    with pytest.raises(AudioDecodeError):
        decode(b"this is not audio at all" * 50)
    with pytest.raises(BadRequest, match="whole number"):
        decode(b"\x00\x01\x02", raw=RawFormat("pcm_s16le", 16000, 1))
    with pytest.raises(BadRequest, match="NaN"):
        decode(np.array([0.0, np.nan, 0.1], "<f4").tobytes(), raw=RawFormat("pcm_f32le", 16000, 1))
    with pytest.raises(BadRequest, match="NaN or infinite"):
        decode(np.array([0.0, np.inf], "<f4").tobytes(), raw=RawFormat("pcm_f32le", 16000, 1))
    header_only = wav_bytes(np.zeros((1, 0), np.float32), 16000)
    with pytest.raises((BadRequest, AudioDecodeError)):
        decode(header_only)
    with pytest.raises(PayloadTooLarge, match="limit is 0.1 s"):
        decode(wav_bytes(signal(0.5), 16000), max_seconds=0.1)


def test_resample_keeps_exact_durations():
    x = torch.randn(44100)
    y = resample(x, 44100, 16000)
    assert y.shape == (16000,)
    assert resample(y, 16000, 44100).shape == (44100,)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_encode_round_trip(fmt):
    x = torch.from_numpy(signal(0.3, 24000)[0])
    audio = decode(encode(x, 24000, fmt))
    assert audio.sample_rate == 24000 and audio.samples.shape == x.shape
    assert torch.allclose(audio.samples, x, atol=2e-4)


def test_encode_raw_pcm():
    x = torch.tensor([0.0, 0.5, -1.0, 2.0])
    assert np.frombuffer(encode(x, 16000, "pcm"), "<i2").tolist() == [0, 16384, -32767, 32767]
