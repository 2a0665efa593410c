"""Causal convolution along time by FFT, shared by every SSM layer family.

The FFT always runs in float32 or float64, never in half precision, even under autocast: half-precision
FFTs of long kernels lose the slowly decaying tails that state-space kernels are made of.

:func:`fft_contract` is the convolution step of a Centaurus tensor network: a causal convolution along time
fused with an einsum over the other axes,

    y[o..., t] = sum over the indices of x and k not in o of  sum_{s <= t} x[a..., s] k[b..., t - s],

computed as ``irfft(einsum(rfft(x), rfft(k)))[..., :L]``. Two things make it fast on a CPU:

- the product over frequencies. When it contracts an index (full and group modes sum over input channels),
  it is a batch of small matrix products, one per frequency. ``torch.einsum`` on spectra laid out
  ``(..., F)`` runs that batch with frequency as the *innermost* stride, which falls back to a copy per
  frequency (24 s for the 64 -> 64 full layer at L = 16000). Here the spectra are transposed once to
  frequency-major ``(F, ...)`` (one 2-D transpose, cheap) and the product is one ``bmm`` batched over F.
  Without a contracted index the product is a broadcast multiply and stays ``(..., F)``.
- a custom autograd function. The default autograd graph keeps both complex spectra (each twice the size of
  its real input) plus padded copies. Backward only needs the spectra, through the correlation identities
  (``^`` the real FFT at length ``n >= 2L - 1``, ``*`` complex conjugate)

      grad_x = irfft(einsum(g^, k^*))[:L],      grad_k = irfft(einsum(g^, x^*))[:L],

  so the function keeps each spectrum when it fits a memory budget and otherwise keeps the real input and
  recomputes its FFT in backward.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["fft_length", "rfft_time", "irfft_time", "causal_fft_conv", "fft_contract", "spectral_einsum"]


def fft_length(length: int) -> int:
    """Transform length for a linear (not circular) convolution of two length-``length`` signals.

    Rounded up to a product of small primes, which pocketfft and cuFFT handle fastest.
    """
    if length < 1:  # 0 has every prime as a factor: the search below would never end
        raise ValueError(f"fft_length needs a positive length, got {length}")
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


# ---- products of spectra ------------------------------------------------------------------------------------
def _parse(equation: str) -> tuple[str, str, str]:
    inputs, out = equation.split("->")
    a, b = inputs.split(",")
    return a, b, out


def _is_matmul(a: str, b: str, out: str) -> bool:
    """True when the product has a contracted index and free indices on both sides (a real matrix product)."""
    contracted = (set(a) & set(b)) - set(out)
    return bool(contracted) and bool(set(a) - set(b)) and bool(set(b) - set(a))


def _frequency_major(spectrum: Tensor) -> Tensor:
    """``(..., F)`` -> ``(F, ...)``, one contiguous 2-D transpose."""
    rows = spectrum.shape[:-1]
    return spectrum.reshape(-1, spectrum.shape[-1]).t().contiguous().view(spectrum.shape[-1], *rows)


def _frequency_last(spectrum: Tensor) -> Tensor:
    """``(F, ...)`` -> ``(..., F)``, contiguous (what the inverse FFT wants)."""
    rows = spectrum.shape[1:]
    return spectrum.reshape(spectrum.shape[0], -1).t().contiguous().view(*rows, spectrum.shape[0])


def _matrices(x: Tensor, idx: str, batch: str, rows: str, cols: str) -> Tensor:
    """Frequency-major ``x`` (indices ``idx`` after F) as ``(F * |batch|, |rows|, |cols|)`` (a view if it can be)."""
    size = dict(zip(idx, x.shape[1:]))
    perm = [0] + [1 + idx.index(c) for c in batch + rows + cols]
    count = lambda s: math.prod(size[c] for c in s)  # noqa: E731
    return x.permute(perm).reshape(-1, count(rows), count(cols))


def _frequency_major_matmul(equation: str, a: Tensor, b: Tensor) -> Tensor:
    """einsum of frequency-major spectra ``(F, ...)`` as one ``bmm`` batched over frequency (and shared indices)."""
    ia, ib, io = _parse(equation)
    batch = "".join(c for c in io if c in ia and c in ib)
    left = "".join(c for c in io if c in ia and c not in ib)
    right = "".join(c for c in io if c in ib and c not in ia)
    contracted = "".join(c for c in ia if c in ib and c not in io)
    size = {**dict(zip(ia, a.shape[1:])), **dict(zip(ib, b.shape[1:]))}
    prod = torch.bmm(_matrices(a, ia, batch, left, contracted), _matrices(b, ib, batch, contracted, right))
    prod = prod.view(a.shape[0], *(size[c] for c in batch + left + right))
    produced = batch + left + right
    return prod.permute([0] + [1 + produced.index(c) for c in io])


def _broadcast_product(equation: str, a: Tensor, b: Tensor, frequency_major: bool) -> Tensor:
    """einsum without a matrix product: broadcast multiply in the output's index order, then sum over what is
    contracted. The frequency axis stays where it is (first or last)."""
    ia, ib, io = _parse(equation)
    order = io + "".join(c for c in dict.fromkeys(ia + ib) if c not in io)
    lead = 1 if frequency_major else 0

    def aligned(x: Tensor, idx: str) -> Tensor:
        perm = [lead + idx.index(c) for c in order if c in idx]
        perm = [0, *perm] if frequency_major else [*perm, x.dim() - 1]
        shape = [x.shape[lead + idx.index(c)] if c in idx else 1 for c in order]
        shape = [x.shape[0], *shape] if frequency_major else [*shape, x.shape[-1]]
        return x.permute(perm).reshape(shape)

    prod = aligned(a, ia) * aligned(b, ib)
    if len(order) > len(io):
        prod = prod.sum(list(range(lead + len(io), lead + len(order))))
    return prod


def spectral_einsum(equation: str, a: Tensor, b: Tensor, frequency_major: bool = False) -> Tensor:
    """``einsum(equation)`` over complex spectra whose frequency axis is implicit in ``equation``.

    The frequency axis is the last one (``(..., F)``) or, with ``frequency_major``, the first (``(F, ...)``);
    the result has the same layout. Matrix products need frequency-major operands (see the module docstring).
    """
    ia, ib, io = _parse(equation)
    if _is_matmul(ia, ib, io):
        if not frequency_major:
            a, b = _frequency_major(a), _frequency_major(b)
            return _frequency_last(_frequency_major_matmul(equation, a, b))
        return _frequency_major_matmul(equation, a, b)
    return _broadcast_product(equation, a, b, frequency_major)


# ---- the convolution step with its own backward ---------------------------------------------------------------
class _FFTContract(torch.autograd.Function):
    """See :func:`fft_contract`. Saves the spectra when they fit ``spectra_budget`` (real elements), else the
    real inputs, whose FFTs backward then recomputes."""

    @staticmethod
    def forward(ctx, x: Tensor, k: Tensor, equation: str, n_fft: int, spectra_budget: int | None) -> Tensor:
        ia, ib, io = _parse(equation)
        length = x.shape[-1]
        matmul = _is_matmul(ia, ib, io)
        x_hat, k_hat = rfft_time(x, n_fft), rfft_time(k, n_fft)
        if matmul:
            x_hat, k_hat = _frequency_major(x_hat), _frequency_major(k_hat)
        y_hat = spectral_einsum(equation, x_hat, k_hat, frequency_major=matmul)
        if matmul:
            y_hat = _frequency_last(y_hat)
        y = irfft_time(y_hat, n_fft, length)
        keep = spectra_budget is None or 2 * (x_hat.numel() + k_hat.numel()) <= spectra_budget
        ctx.save_for_backward(*((x_hat, k_hat) if keep else (x, k)))
        ctx.setup = (equation, n_fft, length, k.shape[-1], matmul, keep, x.dtype, k.dtype)
        return y.to(torch.promote_types(x.dtype, k.dtype))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        # Runs outside autocast (backward may be called inside it), in the forward's precision.
        with torch.autocast(device_type=grad.device.type, enabled=False):
            grad = grad.to(_fft_dtype(grad))
            equation, n_fft, length, k_length, matmul, keep, x_dtype, k_dtype = ctx.setup
            ia, ib, io = _parse(equation)
            x_hat, k_hat = ctx.saved_tensors
            if not keep:
                x_hat, k_hat = rfft_time(x_hat, n_fft), rfft_time(k_hat, n_fft)
                if matmul:
                    x_hat, k_hat = _frequency_major(x_hat), _frequency_major(k_hat)
            g_hat = rfft_time(grad, n_fft)
            if matmul:
                g_hat = _frequency_major(g_hat)

            def back(eq: str, other: Tensor, dtype: torch.dtype, out_length: int = length) -> Tensor:
                # einsum(g, conj(other)) = conj(einsum(conj(g), other)): conjugate whichever side is smaller
                # (a matmul with a conjugated operand copies it first; the full layer's kernel spectrum is 0.5 GB).
                if matmul and other.numel() > g_hat.numel():
                    spec = spectral_einsum(eq, g_hat.conj(), other, frequency_major=True).conj()
                else:
                    spec = spectral_einsum(eq, g_hat, other.conj(), frequency_major=matmul)
                return irfft_time(_frequency_last(spec) if matmul else spec, n_fft, out_length).to(dtype)

            grad_x = back(f"{io},{ib}->{ia}", k_hat, x_dtype) if ctx.needs_input_grad[0] else None
            grad_k = back(f"{io},{ia}->{ib}", x_hat, k_dtype, k_length) if ctx.needs_input_grad[1] else None
            return grad_x, grad_k, None, None, None


def fft_contract(equation: str, x: Tensor, k: Tensor, spectra_budget: int | None = None) -> Tensor:
    """Causal convolution along the last axis fused with an einsum over the others (module docstring).

    Args:
        equation: einsum over the non-time axes, e.g. ``"bgi,gji->bgj"`` for ``x (b, g, i, L)``,
            ``k (g, j, i, L)`` and a result ``(b, g, j, L)``. Every index of an operand must be in the other
            operand or in the result.
        x, k: real, length L on the last axis; ``k`` may also come zero-padded to ``fft_length(L)`` (its
            gradient then has that length too).
        spectra_budget: keep the complex spectra for backward when they have at most this many real elements;
            otherwise keep ``x`` and ``k`` and recompute their FFTs. ``None``: always keep them.
    Returns:
        ``(o..., L)``, possibly a strided view (rows of the padded inverse transform).
    """
    ia, ib, io = _parse(equation)
    for own, other in ((ia, ib), (ib, ia)):
        if set(own) - set(other) - set(io):
            raise ValueError(f"{equation}: an index of one operand is in neither the other nor the result")
    if k.shape[-1] not in (x.shape[-1], fft_length(x.shape[-1])):
        raise ValueError(f"k has length {k.shape[-1]}: expected {x.shape[-1]} (or padded, {fft_length(x.shape[-1])})")
    return _FFTContract.apply(x, k, equation, fft_length(x.shape[-1]), spectra_budget)
