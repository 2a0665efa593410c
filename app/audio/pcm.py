"""The one PCM codec: little-endian sample bytes <-> float32 in [-1, 1].

Raw uploads (``encoding=pcm_*``), raw responses (``response_format=pcm``), the binary frames of the streaming
websockets and the stream client all convert here, so a sample means the same thing on every path: integers
are scaled by ``2**(bits-1)`` on the way in and 16-bit output is ``round(clip(x) * 32767)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["PCM_ENCODINGS", "PcmEncoding", "sample_bytes", "pcm_to_float", "float_to_pcm", "PcmCodec"]

PcmEncoding = Literal["pcm_s16le", "pcm_s32le", "pcm_f32le"]

PCM_ENCODINGS: dict[str, tuple[str, float]] = {
    # encoding -> (little-endian numpy dtype, scale to [-1, 1])
    "pcm_s16le": ("<i2", 2.0**15),
    "pcm_s32le": ("<i4", 2.0**31),
    "pcm_f32le": ("<f4", 1.0),
}


def sample_bytes(encoding: str) -> int:
    """Bytes per sample of one channel."""
    return np.dtype(PCM_ENCODINGS[encoding][0]).itemsize


def pcm_to_float(data: bytes, encoding: str) -> np.ndarray:
    """Whole samples ``(N,)`` float32 (channels still interleaved); ``len(data)`` must be a multiple of the width."""
    dtype, scale = PCM_ENCODINGS[encoding]
    samples = np.frombuffer(data, dtype).astype(np.float32)
    # Dividing by a power of two is exact, so every path gives bit-identical floats.
    return samples / np.float32(scale) if scale != 1.0 else samples


def float_to_pcm(samples: np.ndarray, encoding: str) -> bytes:
    """float32 ``(N,)`` -> bytes: ``pcm_s16le`` clipped and rounded, ``pcm_f32le`` as is."""
    if encoding == "pcm_s16le":
        return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    if encoding == "pcm_f32le":
        return np.asarray(samples, "<f4").tobytes()
    raise ValueError(f"cannot encode {encoding}")


class PcmCodec:
    """A stream's codec: frames of any size in (a sample split across two frames is reassembled), float32 out;
    and float32 back to the stream's encoding."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.width = sample_bytes(encoding)
        self._partial = b""

    def decode(self, data: bytes) -> np.ndarray:
        data = self._partial + data
        whole = len(data) - len(data) % self.width
        self._partial = data[whole:]
        return pcm_to_float(data[:whole], self.encoding)

    def encode(self, samples: np.ndarray) -> bytes:
        return float_to_pcm(samples, self.encoding)
