"""The streaming resampler: any framing gives exactly the offline resampling of the whole clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.audio.resample import resample
from app.streaming.resampler import StreamResampler


def streamed(resampler: StreamResampler, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    parts, start = [], 0
    while start < len(clip):
        size = int(rng.integers(1, 2500))
        parts.append(resampler.push(clip[start:start + size]))
        start += size
    parts.append(resampler.flush())
    return np.concatenate(parts)


@pytest.mark.parametrize("from_rate,to_rate", [(48000, 16000), (16000, 48000), (44100, 16000), (16000, 44100),
                                               (8000, 16000), (22050, 16000), (16000, 16000)])
@pytest.mark.parametrize("length", [2, 7, 441, 20011])
def test_any_framing_equals_offline_resampling(from_rate, to_rate, length):
    rng = np.random.default_rng(length + from_rate)
    clip = rng.standard_normal(length).astype(np.float32)
    offline = resample(torch.from_numpy(clip), from_rate, to_rate).numpy()
    out = streamed(StreamResampler(from_rate, to_rate), clip, rng)
    assert out.shape == offline.shape
    if out.size:
        assert np.abs(out - offline).max() < 1e-5


def test_output_is_emitted_before_the_end_and_never_after_flush():
    resampler = StreamResampler(48000, 16000)
    early = resampler.push(np.ones(4800, np.float32))
    assert 0 < len(early) <= 1600 and resampler.lookahead > 0
    resampler.flush()
    assert resampler.flush().size == 0
    with pytest.raises(RuntimeError):
        resampler.push(np.ones(10, np.float32))
