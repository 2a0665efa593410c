"""Pay for FFmpeg's first call at startup: loading its libraries takes seconds, which no request should wait."""

from __future__ import annotations

import torch

from .decode import decode
from .encode import encode
from .resample import resample

__all__ = ["warm_up"]


def warm_up() -> None:
    """Decode, resample and encode a short clip once."""
    clip = torch.zeros(1600)
    audio = decode(encode(clip, 16000, "wav"))
    encode(resample(audio.samples, 16000, 8000), 8000, "flac")
