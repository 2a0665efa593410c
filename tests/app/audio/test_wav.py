"""Plain PCM WAV read without FFmpeg gives exactly what FFmpeg gives; everything else is left to FFmpeg."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from app.audio.decode import decode
from app.audio.wav import split_pcm_wav

from service_testkit import signal, wav_bytes


def riff(fmt_tag: int, channels: int, rate: int, bits: int, samples: bytes, extra_chunks: bytes = b"",
         data_size: int | None = None) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    size = len(samples) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks + b"data" + struct.pack("<I", size)
    body += samples + b"\0" * (len(samples) & 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def decoded_both_ways(data: bytes) -> tuple[torch.Tensor, torch.Tensor, int]:
    split = split_pcm_wav(data)
    assert split is not None
    raw, samples = split
    ours, ffmpeg = decode(samples, raw=raw), decode(data)
    assert ours.sample_rate == ffmpeg.sample_rate and ours.channels == ffmpeg.channels
    return ours.samples, ffmpeg.samples, ours.sample_rate


@pytest.mark.parametrize("channels", [1, 2])
def test_16_bit_matches_ffmpeg_exactly(channels):
    ours, ffmpeg, rate = decoded_both_ways(wav_bytes(signal(0.3, 22050, channels), 22050))
    assert rate == 22050 and torch.equal(ours, ffmpeg)


def test_float_and_32_bit_and_extra_chunks_match_ffmpeg():
    wave = signal(0.2, 16000, 2).T.copy()  # interleaved frames
    list_chunk = b"LIST" + struct.pack("<I", 5) + b"INFOx\0"  # odd size: padded to an even length
    floats = riff(3, 2, 16000, 32, wave.astype("<f4").tobytes(), extra_chunks=list_chunk)
    ours, ffmpeg, _ = decoded_both_ways(floats)
    assert torch.equal(ours, ffmpeg)
    ints = riff(1, 2, 16000, 32, (wave * 2**31 * 0.9).astype("<i4").tobytes())
    ours, ffmpeg, _ = decoded_both_ways(ints)
    assert torch.allclose(ours, ffmpeg, atol=1e-7)


def test_what_is_not_plain_pcm_is_left_to_ffmpeg():
    pcm8 = riff(1, 1, 16000, 8, bytes(range(256)))
    pcm24 = riff(1, 1, 16000, 24, b"\0" * 300)
    extensible = riff(0xFFFE, 1, 16000, 16, b"\0" * 200)
    streaming = riff(1, 1, 16000, 16, b"\0" * 200, data_size=0xFFFFFFFF)
    partial_frame = riff(1, 2, 16000, 16, b"\0" * 202)
    for data in (pcm8, pcm24, extensible, streaming, partial_frame, b"RIFF", b"not audio at all", b""):
        assert split_pcm_wav(data) is None
    # FFmpeg still reads them
    assert decode(pcm8).samples.shape[-1] == 256 and decode(streaming).samples.shape[-1] == 100


def test_an_endpoint_answers_the_same_for_a_wav_either_way(client):
    source = signal(1.0, 16000, 1)
    with_header = client.post("/keywords", files={"file": ("a.wav", wav_bytes(source, 16000), "audio/wav")})
    headerless = (np.clip(source.T, -1, 1) * 32767).astype("<i2").tobytes()
    raw = client.post("/keywords", files={"file": ("a.pcm", headerless, "application/octet-stream")},
                      data={"encoding": "pcm_s16le", "sample_rate": "16000"})
    assert with_header.status_code == raw.status_code == 200
    assert with_header.json() == raw.json()
