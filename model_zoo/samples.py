"""The one rule for "exactly this many samples": crop the end, or pad it with zeros.

Resampling rounds lengths (torchaudio returns ``ceil``), and a round trip through a model's rate can end a
sample short or long; every path that promises a length (offline resampling, ``/denoise``, the denoising
stream's last frame, the streaming resampler's flush) applies this rule, so they agree sample for sample; the
datasets that cut clips to a fixed length (``training.datasets.speech_commands``) use it too. It lives in
``model_zoo`` because both the service and training need it and training may not import the service.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["fit_length"]

Samples = TypeVar("Samples", np.ndarray, torch.Tensor)


def fit_length(samples: Samples, length: int) -> Samples:
    """``(..., L)`` -> ``(..., length)``: the first ``length`` samples, zero-padded at the end if ``L`` is short."""
    length = max(0, length)
    missing = length - samples.shape[-1]
    if missing <= 0:
        return samples[..., :length]
    if isinstance(samples, torch.Tensor):
        return F.pad(samples, (0, missing))
    return np.pad(samples, [(0, 0)] * (samples.ndim - 1) + [(0, missing)])
