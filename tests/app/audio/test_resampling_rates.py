"""Resampling from any rate a client can state costs bounded memory and keeps pitch and duration."""

from __future__ import annotations

import math

import pytest
import torch

from app.audio.resample import resample, resampling_rates
from app.errors import BadRequest


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 11025, 8000, 32000, 96000, 16000])
def test_common_rates_resample_exactly(rate):
    assert resampling_rates(rate, 16000) == (rate, 16000)


@pytest.mark.parametrize("from_rate,to_rate", [(44101, 16000), (16000, 44101), (383999, 16000), (16000, 383999),
                                               (99991, 16000), (1000, 383999)])
def test_coprime_rates_get_a_small_kernel_and_keep_the_pitch(from_rate, to_rate):
    # torchaudio's kernel for the exact ratio of these would take 2.8 to 24 GB: one request could exhaust memory.
    source, target = resampling_rates(from_rate, to_rate)
    g = math.gcd(source, target)
    assert (source // g) <= 1000 and (target // g) <= 1000
    assert abs(target / source - to_rate / from_rate) <= 1e-3 * to_rate / from_rate
    tone = 300.0  # Hz, below both Nyquist limits
    seconds = 0.5
    t = torch.arange(int(seconds * from_rate)) / from_rate
    out = resample(torch.sin(2 * math.pi * tone * t), from_rate, to_rate)
    assert out.shape[-1] == round(t.shape[-1] * to_rate / from_rate)
    spectrum = torch.fft.rfft(out * torch.hann_window(out.shape[-1]))
    peak_hz = int(spectrum.abs().argmax()) * to_rate / out.shape[-1]
    assert abs(peak_hz - tone) <= 2.5  # one FFT bin at 0.5 s


@pytest.mark.parametrize("samples,rate", [(1, 44100), (1, 48000), (2, 96000), (1, 384000)])
def test_a_clip_shorter_than_one_sample_at_the_model_rate_is_refused(samples, rate):
    # Resampled, it would be empty, and a zero-length input must never reach a network.
    with pytest.raises(BadRequest, match="too short"):
        resample(torch.ones(samples), rate, 16000)
    assert resample(torch.ones(samples), rate, rate).shape == (samples,)
    assert resample(torch.ones(3), 44100, 16000).shape == (1,)
