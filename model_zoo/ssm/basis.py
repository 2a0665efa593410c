"""The SSM basis, weighted and summed over states without ever storing it.

Centaurus's basis is ``K[s, t] = Re(lambda_s^t)`` with ``lambda_s = exp(dt A_s)``. Layers need
``out[r, t] = sum_s W[r, s] Re(lambda[r, s]^t)``. Writing ``t = q T + p`` (block q, offset p < T) splits the
power: ``lambda^t = lambda^(qT) lambda^p``, so

    out[r, qT + p] = Re( sum_s (W lambda^(qT))[r, q, s] (lambda^p)[r, s, p] )

is one batched matrix product per row r, over ``L / T`` blocks and ``T`` offsets, with ``T ~ sqrt(L)``
transcendental evaluations per row instead of ``L`` (on this CPU, evaluating exp and cos for every element
was 30x slower than the matmul). Nothing of size ``(R, S, L)`` is stored, not even for the backward pass,
which uses the closed forms (``g`` the incoming gradient, ``dt A = a + i w``):

    d/dW = Re sum_t g_t lambda^t,   d/da = W Re sum_t g_t t lambda^t,   d/dw = -W Im sum_t g_t t lambda^t

Phases ``m w`` are reduced modulo 2 pi in float64 before the cosine, so float32 kernels stay accurate at
large ``t``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["weighted_basis", "complex_powers"]


def complex_powers(decay: Tensor, freq: Tensor, exponents: Tensor) -> Tensor:
    """``lambda^m`` for ``lambda = exp(decay + i freq)``: ``(...)`` and ``(M,)`` -> complex ``(..., M)``."""
    m = exponents.to(decay.dtype)
    exact = torch.remainder(freq.detach().to(torch.float64)[..., None] * exponents.to(torch.float64), 2 * math.pi)
    raw = freq[..., None] * m
    # The value is the phase reduced in float64; the gradient is that of freq * m.
    phase = exact.to(decay.dtype) + (raw - raw.detach())
    return torch.polar(torch.exp(decay[..., None] * m), phase)


def _blocks(length: int) -> tuple[int, int]:
    """Offsets per block T and number of blocks Q with Q T >= length."""
    block = max(1, math.isqrt(length))
    return block, -(-length // block)


def _power_tables(decay: Tensor, freq: Tensor, length: int) -> tuple[Tensor, Tensor, int, int]:
    """``outer[r, s, q] = lambda^(qT)`` and ``inner[r, s, p] = lambda^p``."""
    block, n_blocks = _blocks(length)
    device = decay.device
    outer = complex_powers(decay, freq, torch.arange(n_blocks, device=device) * block)
    inner = complex_powers(decay, freq, torch.arange(block, device=device))
    return outer, inner, block, n_blocks


def _blocked_sum(values: Tensor, outer: Tensor, inner: Tensor, block: int, n_blocks: int) -> Tensor:
    """``sum_t values[r, t] lambda[r, s]^t`` for real ``values (R, L)``: complex ``(R, S)``."""
    rows, length = values.shape
    padded = torch.nn.functional.pad(values, (0, n_blocks * block - length)).view(rows, n_blocks, block)
    per_block = torch.bmm(padded.to(inner.dtype), inner.transpose(1, 2))  # (R, Q, S)
    return (per_block * outer.transpose(1, 2)).sum(1)


class _WeightedBasis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, decay: Tensor, freq: Tensor, length: int) -> Tensor:
        outer, inner, block, n_blocks = _power_tables(decay, freq, length)
        left = weight[:, None, :] * outer.transpose(1, 2)  # (R, Q, S) complex
        # Re(x y) = Re x Re y - Im x Im y, as one real matmul over 2S.
        lhs = torch.cat([left.real, -left.imag], dim=2)
        rhs = torch.cat([inner.real, inner.imag], dim=1)
        out = torch.bmm(lhs, rhs).reshape(weight.shape[0], -1)[:, :length]
        ctx.save_for_backward(weight, decay, freq)
        ctx.length = length
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, decay, freq = ctx.saved_tensors
        length = ctx.length
        outer, inner, block, n_blocks = _power_tables(decay, freq, length)
        t = torch.arange(length, dtype=grad.dtype, device=grad.device)
        s0 = _blocked_sum(grad, outer, inner, block, n_blocks)
        s1 = _blocked_sum(grad * t, outer, inner, block, n_blocks)
        return s0.real, weight * s1.real, -weight * s1.imag, None


def weighted_basis(weight: Tensor, decay: Tensor, freq: Tensor, length: int) -> Tensor:
    """``out[r, t] = sum_s weight[r, s] exp(t decay[r, s]) cos(t freq[r, s])``.

    Args:
        weight, decay, freq: ``(R, S)`` real tensors, broadcastable (``decay = Re(dt A)``, ``freq = Im(dt A)``).
        length: number of time steps L.
    Returns:
        ``(R, L)``.
    """
    weight, decay, freq = torch.broadcast_tensors(weight, decay, freq)
    return _WeightedBasis.apply(weight.contiguous(), decay.contiguous(), freq.contiguous(), length)
