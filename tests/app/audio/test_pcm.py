"""The one PCM codec: every path (raw uploads, raw responses, websocket frames) reads and writes samples alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.audio.decode import RawFormat, decode
from app.audio.encode import encode
from app.audio.pcm import PcmCodec, float_to_pcm, pcm_to_float


@pytest.mark.parametrize("encoding,dtype,scale", [("pcm_s16le", "<i2", 2.0**15), ("pcm_s32le", "<i4", 2.0**31),
                                                  ("pcm_f32le", "<f4", 1.0)])
def test_integers_are_scaled_by_a_power_of_two_and_floats_pass_through(encoding, dtype, scale):
    values = np.array([0, 1, -1, 1000, -32768, 32767], dtype)
    assert np.array_equal(pcm_to_float(values.tobytes(), encoding), values.astype(np.float32) / np.float32(scale))


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
def test_a_stream_split_anywhere_decodes_like_the_whole(encoding):
    samples = np.random.default_rng(0).uniform(-1, 1, 500).astype(np.float32)
    data = float_to_pcm(samples, encoding)
    codec = PcmCodec(encoding)
    cuts = [0, 1, 3, 4, 7, 600, 601, len(data)]  # odd cuts split samples across frames
    pieces = [codec.decode(data[a:b]) for a, b in zip(cuts, cuts[1:])]
    assert np.array_equal(np.concatenate(pieces), pcm_to_float(data, encoding))


def test_stream_frames_and_raw_uploads_decode_alike():
    data = (np.random.default_rng(1).uniform(-1, 1, 800) * 32767).astype("<i2").tobytes()
    upload = decode(data, raw=RawFormat("pcm_s16le", 16000))
    assert torch.equal(upload.samples, torch.from_numpy(PcmCodec("pcm_s16le").decode(data)))


def test_16_bit_output_is_clipped_and_rounded_and_a_raw_response_is_the_same_bytes():
    samples = np.array([0.0, 1.5, -1.5, 0.5, -0.25, 1e-5], np.float32)
    assert np.array_equal(np.frombuffer(float_to_pcm(samples, "pcm_s16le"), "<i2"),
                          [0, 32767, -32767, 16384, -8192, 0])
    assert encode(torch.from_numpy(samples), 16000, "pcm") == PcmCodec("pcm_s16le").encode(samples)
    assert float_to_pcm(samples, "pcm_f32le") == samples.astype("<f4").tobytes()
