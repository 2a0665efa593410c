"""Causal convolution along time by FFT, shared by every SSM layer family.

The FFT always runs in float32 or float64, never in half precision, even under autocast: half-precision
FFTs of long kernels lose the slowly decaying tails that state-space kernels are made of.
"""

from __future__ import annotations

import torch

__all__ = ["fft_length", "rfft_time", "irfft_time", "causal_fft_conv"]


def fft_length(length: int) -> int:
    """Transform length for a linear (not circular) convolution of two length-``length`` signals.

    Rounded up to a product of small primes, which pocketfft and cuFFT handle fastest.
    """
    n = 2 * length
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _fft_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def rfft_time(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Real FFT of the last (time) axis, zero-padded to ``n_fft``: (..., L) -> (..., n_fft // 2 + 1)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.fft.rfft(x.to(_fft_dtype(x)), n=n_fft)


def irfft_time(x_hat: torch.Tensor, n_fft: int, length: int) -> torch.Tensor:
    """Inverse of :func:`rfft_time`, keeping the first ``length`` samples: (..., F) -> (..., length)."""
    with torch.autocast(device_type=x_hat.device.type, enabled=False):
        return torch.fft.irfft(x_hat, n=n_fft)[..., :length]


def causal_fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[..., t] = sum_{s <= t} k[..., s] u[..., t - s], for broadcastable u (..., L) and k (..., L)."""
    length = u.shape[-1]
    n_fft = fft_length(length)
    return irfft_time(rfft_time(u, n_fft) * rfft_time(k, n_fft), n_fft, length)
