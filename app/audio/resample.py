"""Offline resampling (torchaudio's windowed sinc) with kernel memory bounded whatever rate a client states.

:class:`app.streaming.resampler.StreamResampler` runs the same kernel incrementally for live streams.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torchaudio

from ..errors import BadRequest
from model_zoo.samples import fit_length

__all__ = ["resample", "resampling_rates"]

# torchaudio's sinc kernel has to/g rows of from/g + 2 width taps (g = gcd of the rates): 44100 -> 16000 Hz is
# 160 x 455, but a coprime rate such as 44101 Hz needs 16000 x 44135 floats (2.8 GB) and 383999 Hz 24 GB, which
# a client can ask for with one header. Past this many kernel cells the ratio is approximated instead.
_EXACT_RATIO_CELLS = 1_000_000
_APPROXIMATE_TERMS = 1000


def resampling_rates(from_rate: int, to_rate: int) -> tuple[int, int]:
    """The rates to give the sinc filter: the true ones when their reduced ratio is small (every common rate),
    else the nearest ratio with both terms at most 1000, a speed change below 0.1% that no one hears."""
    exact = Fraction(to_rate, from_rate)
    if exact.numerator * exact.denominator <= _EXACT_RATIO_CELLS:
        return from_rate, to_rate
    # Approximate the ratio below 1, so numerator and denominator are both bounded.
    near = (exact.limit_denominator(_APPROXIMATE_TERMS) if exact < 1
            else 1 / (1 / exact).limit_denominator(_APPROXIMATE_TERMS))
    return near.denominator, near.numerator


def resample(samples: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """``(..., L)`` at ``from_rate`` -> ``(..., round(L * to_rate / from_rate))`` at ``to_rate``.

    Raises 400 when a non-empty clip would become empty (one sample at 44.1 kHz is none at 16 kHz): the networks
    need at least one sample, and a zero-length input must never reach them.
    """
    if from_rate == to_rate:
        return samples
    if samples.shape[-1] and round(samples.shape[-1] * to_rate / from_rate) == 0:
        raise BadRequest(f"the audio is too short: {samples.shape[-1]} sample(s) at {from_rate} Hz is less than one "
                         f"sample at {to_rate} Hz", code="audio_too_short", param="file")
    out = torchaudio.functional.resample(samples, *resampling_rates(from_rate, to_rate))
    # resample's length is ceil(); keep durations exact to the sample so round trips preserve length.
    return fit_length(out, round(samples.shape[-1] * to_rate / from_rate))
