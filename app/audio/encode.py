"""Audio responses: WAV or FLAC (16-bit, through FFmpeg) or raw 16-bit PCM (through :mod:`.pcm`)."""

from __future__ import annotations

import torch

from ..errors import BadRequest, echo
from .pcm import float_to_pcm

__all__ = ["encode", "OUTPUT_FORMATS"]

OUTPUT_FORMATS = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}


def encode(samples: torch.Tensor, sample_rate: int, fmt: str) -> bytes:
    """Mono ``(L,)`` float -> WAV (16-bit PCM), FLAC (16-bit) or raw little-endian 16-bit PCM bytes."""
    clipped = samples.detach().float().clamp(-1.0, 1.0)
    if fmt == "pcm":
        return float_to_pcm(clipped.numpy(), "pcm_s16le")
    if fmt not in ("wav", "flac"):
        raise BadRequest(f"unknown audio format {echo(fmt)}", code="invalid_parameter", param="response_format")
    from torchcodec.encoders import AudioEncoder

    return bytes(AudioEncoder(clipped[None], sample_rate=sample_rate).to_tensor(fmt).numpy())
