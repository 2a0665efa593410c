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

:func:`basis_convolution` convolves a signal with such a kernel without evaluating the kernel at all: it runs
the recurrence ``h[t] = lambda h[t-1] + x[t]``, ``y = Re sum W h`` in chunks (a Toeplitz product inside each
chunk, the complex state carried between chunks), and its backward uses the same closed forms, summed against
the chunk states. It replaces the basis + FFT convolution when a kernel has few terms (see ``planner.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["weighted_basis", "complex_powers", "basis_convolution", "scan_block"]


def _full_precision(*tensors: Tensor) -> tuple[Tensor, ...]:
    """float32 in place of half precision (float64 stays). The basis and the scan run outside autocast, in
    at least float32, like the FFT (fftconv.py): slowly decaying kernels and a state carried over thousands
    of steps lose their tails in bfloat16."""
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return tuple(t.to(dtype) for t in tensors)


def complex_powers(decay: Tensor, freq: Tensor, exponents: Tensor) -> Tensor:
    """``lambda^m`` for ``lambda = exp(decay + i freq)``: ``(...)`` and ``(M,)`` -> complex ``(..., M)``."""
    m = exponents.to(decay.dtype)
    exact = torch.remainder(freq.detach().to(torch.float64)[..., None] * exponents.to(torch.float64), 2 * math.pi)
    phase = exact.to(decay.dtype)
    if torch.is_grad_enabled() and freq.requires_grad:
        # The value is the phase reduced in float64; the gradient is that of freq * m.
        raw = freq[..., None] * m
        phase = phase + (raw - raw.detach())
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


def _blocked_sums(values: Tensor, decay: Tensor, freq: Tensor, outer: Tensor, block: int, n_blocks: int):
    """``sum_t v[r, t] lambda[r, s]^t`` and ``sum_t v[r, t] t lambda[r, s]^t`` for real ``v (R, L)``: complex
    ``(R, S)`` each. With ``t = qT + p``: ``sum_q lambda^(qT) (V_q + qT V_q)`` etc., where ``V_q`` and ``V'_q``
    (the sums over p of ``v lambda^p`` and ``v p lambda^p``) come from one real matmul of the blocks of v with
    ``[Re, Im] x [lambda^p, p lambda^p]``."""
    rows, length = values.shape
    states = decay.shape[-1]
    padded = torch.nn.functional.pad(values, (0, n_blocks * block - length)).view(rows, n_blocks, block)
    p = torch.arange(block, device=values.device)
    inner = complex_powers(decay, freq, p)  # (R, S, T)
    table = torch.cat([inner, p * inner], 1)  # (R, 2S, T)
    sums = torch.bmm(padded, torch.cat([table.real, table.imag], 1).transpose(1, 2))  # (R, Q, 4S)
    sums = torch.complex(sums[..., : 2 * states], sums[..., 2 * states:])  # (R, Q, 2S)
    plain, weighted = sums[..., :states], sums[..., states:]
    q_t = (torch.arange(n_blocks, device=values.device) * block).to(values.dtype)[None, :, None]
    outer = outer.transpose(1, 2)  # (R, Q, S): lambda^(qT)
    return (plain * outer).sum(1), ((q_t * plain + weighted) * outer).sum(1)


class _WeightedBasis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, decay: Tensor, freq: Tensor, length: int, padded: int) -> Tensor:
        outer, inner, block, n_blocks = _power_tables(decay, freq, length)
        left = weight[:, None, :] * outer.transpose(1, 2)  # (R, Q, S) complex
        # Re(x y) = Re x Re y - Im x Im y, as one real matmul over 2S (pairs Re, Im as torch.view_as_real lays
        # them out, so no concatenation is needed).
        lhs = torch.view_as_real(left.conj().resolve_conj()).flatten(2)  # (R, Q, 2S): Re, -Im per state
        rhs = torch.view_as_real(inner.transpose(1, 2)).flatten(2).transpose(1, 2)  # (R, 2S, T): Re, Im
        rows = weight.shape[0]
        # Written straight into the zero-padded buffer the FFT wants (bmm takes the strided output in place).
        out = weight.new_empty(rows, max(padded, n_blocks * block))
        torch.bmm(lhs, rhs, out=out[:, : n_blocks * block].view(rows, n_blocks, block))
        out[:, length:] = 0
        ctx.save_for_backward(weight, decay, freq)
        ctx.length = length
        return out[:, :padded]

    @staticmethod
    def backward(ctx, grad: Tensor):
        # Runs outside autocast (backward may be called inside it), in the forward's precision.
        with torch.autocast(device_type=grad.device.type, enabled=False):
            grad = grad.to(ctx.saved_tensors[0].dtype)
            weight, decay, freq = ctx.saved_tensors
            length = ctx.length
            grad = grad[:, :length]  # the padding is constant
            block, n_blocks = _blocks(length)
            outer = complex_powers(decay, freq, torch.arange(n_blocks, device=grad.device) * block)
            s0, s1 = _blocked_sums(grad, decay, freq, outer, block, n_blocks)
            return s0.real, weight * s1.real, -weight * s1.imag, None, None


def weighted_basis(weight: Tensor, decay: Tensor, freq: Tensor, length: int, padded: int | None = None) -> Tensor:
    """``out[r, t] = sum_s weight[r, s] exp(t decay[r, s]) cos(t freq[r, s])``.

    Args:
        weight, decay, freq: ``(R, S)`` real tensors, broadcastable (``decay = Re(dt A)``, ``freq = Im(dt A)``).
        length: number of time steps L.
        padded: return ``(R, padded)`` with zeros after L (an FFT's input, without a padding copy).
    Returns:
        ``(R, L)`` or ``(R, padded)``.
    """
    weight, decay, freq = _full_precision(*torch.broadcast_tensors(weight, decay, freq))
    padded = length if padded is None else padded
    if padded < length:
        raise ValueError(f"padded={padded} is shorter than length={length}")
    with torch.autocast(device_type=weight.device.type, enabled=False):
        return _WeightedBasis.apply(weight.contiguous(), decay.contiguous(), freq.contiguous(), length, padded)


# ---- convolution with a weighted basis, by chunked scan ---------------------------------------------------------
def scan_block(states: int) -> int:
    """Chunk length T of :func:`basis_convolution` for ``states`` terms per kernel: per sample it costs
    ``2 T`` FLOPs inside the chunk and ``8 states`` for the state in and out, with one Python step per chunk."""
    return 32 if states < 8 else 64


def _interleave(z: Tensor) -> Tensor:
    """Complex ``(R, S, T)`` -> real ``(R, 2S, T)`` with rows ``Re z_0, Im z_0, Re z_1, ...``: the layout of
    ``torch.view_as_real``, so products with it land in buffers that are complex views."""
    return torch.view_as_real(z.transpose(1, 2)).flatten(2).transpose(1, 2)


def _scan_tables(weight: Tensor, decay: Tensor, freq: Tensor, block: int, reverse: bool) -> dict[str, Tensor]:
    """Per kernel row r (``(R, S)`` inputs), as real matrices for ``bmm``, p the offset in a chunk of T:

    - ``into (R, T, 2S)``: a chunk's samples -> its contribution to the carried state, ``lambda^(T-1-p)``
      (causal: the state at the chunk's end) or ``lambda^p`` (reverse: the state at its start);
    - ``toeplitz (R, T, T)``: the kernel's first T taps, ``[p', p] -> k[p - p']`` (reverse: ``k[p' - p]``);
    - ``out (R, 2S, T)``: the carried state -> outputs, ``Re(W lambda^(p+1) h)`` with h the state before the
      chunk (reverse: ``Re(W lambda^(T-p) h)``, h the state after it), rows ``Re, -Im`` per state;
    - ``step (R, S)``: ``lambda^T``, complex.
    """
    p = torch.arange(block, device=weight.device)
    into = complex_powers(decay, freq, p if reverse else block - 1 - p)  # (R, S, T)
    out = weight[..., None] * complex_powers(decay, freq, block - p if reverse else p + 1)
    taps = weighted_basis(weight, decay, freq, block)  # (R, T)
    lag = (p[:, None] - p[None, :]) if reverse else (p[None, :] - p[:, None])
    return {
        "into": _interleave(into).transpose(1, 2),
        "toeplitz": torch.where(lag >= 0, taps[:, lag.clamp(min=0)], taps.new_zeros(())),
        "out": _interleave(out.conj().resolve_conj()),
        "step": complex_powers(decay, freq, torch.tensor([block], device=weight.device))[..., 0],
    }


def _per_row(matrix: Tensor, prefix: int) -> Tensor:
    """``(R, m, n)`` -> ``(prefix * R, m, n)``, the same matrices for every prefix row (bmm wants one batch)."""
    return matrix.expand(prefix, *matrix.shape).reshape(-1, *matrix.shape[1:])


def _chunks(x: Tensor, block: int) -> Tensor:
    """``(P, R, L)`` -> ``(P R, Q, T)``, zero-padded to ``Q T >= L`` (a view when no padding is needed)."""
    prefix, rows, length = x.shape
    pad = -length % block
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.contiguous().view(prefix * rows, -1, block)


def _chunk_major(pairs: Tensor, prefix: int) -> Tensor:
    """``(P R, Q, 2S)`` real with interleaved ``Re, Im`` -> complex ``(Q, P, R, S)``, contiguous."""
    rows_total, n_chunks, _ = pairs.shape
    z = torch.view_as_complex(pairs.view(rows_total, n_chunks, -1, 2))
    return z.transpose(0, 1).contiguous().view(n_chunks, prefix, rows_total // prefix, -1)


def _row_major(states: Tensor) -> Tensor:
    """Complex ``(Q, P, R, S)`` -> real ``(P R, Q, 2S)`` interleaved, a strided view (fine for ``bmm``)."""
    n_chunks = states.shape[0]
    return torch.view_as_real(states).view(n_chunks, -1, 2 * states.shape[-1]).transpose(0, 1)


def _carry(local: Tensor, step: Tensor, reverse: bool) -> Tensor:
    """State carried into each chunk, complex ``(Q, P, R, S)``: before chunk q (causal,
    ``c[q] = step c[q-1] + local[q-1]``) or after it (reverse, ``c[q] = step c[q+1] + local[q+1]``).

    A Python loop over Q ~ L / T chunks, each step on ``(P, R, S)`` contiguous elements: far cheaper here
    than a log-depth scan over the whole tensor."""
    n_chunks = local.shape[0]
    carried = torch.empty_like(local)
    first = n_chunks - 1 if reverse else 0
    carried[first] = 0
    for q in range(n_chunks - 2, -1, -1) if reverse else range(1, n_chunks):
        prev = q + 1 if reverse else q - 1
        torch.addcmul(local[prev], carried[prev], step, out=carried[q])
    return carried


def _scan_forward(x: Tensor, tables: dict[str, Tensor], block: int, reverse: bool) -> tuple[Tensor, Tensor]:
    """``y (P, R, L)`` and the carried state ``(Q, P, R, S)`` (before each chunk, or after it if ``reverse``)."""
    prefix, rows, length = x.shape
    chunks = _chunks(x, block)
    # 1. each chunk's own contribution to the carried state; 2. the carried state
    local = _chunk_major(torch.bmm(chunks, _per_row(tables["into"], prefix)), prefix)
    carried = _carry(local, tables["step"], reverse)
    # 3. outputs: the chunk through the Toeplitz taps, plus the carried state through the readout
    y = torch.bmm(chunks, _per_row(tables["toeplitz"], prefix))
    y.baddbmm_(_row_major(carried), _per_row(tables["out"], prefix))
    return y.view(prefix, rows, -1)[..., :length], carried


class _BasisConvolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, decay: Tensor, freq: Tensor, block: int) -> Tensor:
        y, carried = _scan_forward(x, _scan_tables(weight, decay, freq, block, reverse=False), block, False)
        ctx.save_for_backward(x, weight, decay, freq, carried)
        ctx.block = block
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        # Runs outside autocast (backward may be called inside it), in the forward's precision.
        with torch.autocast(device_type=grad.device.type, enabled=False):
            grad = grad.to(ctx.saved_tensors[0].dtype)
            x, weight, decay, freq, h_before = ctx.saved_tensors
            block = ctx.block
            prefix, rows, _ = x.shape
            states = weight.shape[-1]
            # grad_x[s] = sum_{t >= s} k[t - s] g[t]: the same convolution run backwards in time.
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = _scan_forward(grad, _scan_tables(weight, decay, freq, block, reverse=True), block, True)[0]
            if not any(ctx.needs_input_grad[1:4]):
                return grad_x, None, None, None, None
            # With h[t] = sum_{s <= t} lambda^(t-s) x[s] and m[t] = sum_{s <= t} (t-s) lambda^(t-s) x[s]
            # (per prefix row, kernel row and state), y = Re sum W h, so
            #   dW = Re S0, d decay = W Re S1, d freq = -W Im S1,   S0 = sum_t g h,  S1 = sum_t g m.
            # Split at chunks (t = qT + p; H[q], M[q] are h and m just before chunk q):
            #   h[t] = lambda^(p+1) H[q] + sum_{p' <= p} lambda^(p-p') x[q, p']
            #   m[t] = lambda^(p+1) ((p+1) H[q] + M[q]) + sum_{p' <= p} (p-p') lambda^(p-p') x[q, p']
            #   M[q+1] = lambda^T (M[q] + T H[q]) + sum_p (T-1-p) lambda^(T-1-p) x[q, p]
            # Every sum over rows and chunks is then a product with g:
            #   z[p', p] = sum x[q, p'] g[q, p],  zh[., p] = sum H[q] g[q, p],  zm[., p] = sum M[q] g[q, p],
            # and S0 = sum_d lambda^d c[d] + sum_p lambda^(p+1) zh[p],
            #     S1 = sum_d d lambda^d c[d] + sum_p lambda^(p+1) ((p+1) zh[p] + zm[p]),  c[d] = sum_p z[p - d, p].
            p = torch.arange(block, device=grad.device)
            step = complex_powers(decay, freq, torch.tensor([block], device=grad.device))[..., 0]
            chunks, g = _chunks(x, block), _chunks(grad, block)
            weights_in = (block - 1 - p) * complex_powers(decay, freq, block - 1 - p)
            local = _chunk_major(torch.bmm(chunks, _per_row(_interleave(weights_in).transpose(1, 2), prefix)), prefix)
            local.add_(h_before * (block * step))
            m_before = _carry(local, step, reverse=False)

            def summed(states_or_samples: Tensor) -> Tensor:  # (P R, Q, n) -> sum over rows and chunks with g
                return torch.bmm(states_or_samples.transpose(1, 2), g).view(prefix, rows, -1, block).sum(0)

            def as_complex(pairs: Tensor) -> Tensor:  # (R, 2S, T) interleaved -> complex (R, S, T)
                return torch.view_as_complex(pairs.unflatten(1, (states, 2)).transpose(2, 3).contiguous())

            z = summed(chunks)
            zh, zm = as_complex(summed(_row_major(h_before))), as_complex(summed(_row_major(m_before)))
            lag = (p[None, :] - p[:, None]).expand(rows, block, block)  # [p', p] -> p - p'
            inside = torch.where(lag >= 0, z, 0).reshape(rows, -1)
            corr = z.new_zeros(rows, block).scatter_add_(1, lag.clamp(min=0).reshape(rows, -1), inside)  # c[d]
            lam, lam_next = complex_powers(decay, freq, p), complex_powers(decay, freq, p + 1)  # (R, S, T)
            s0 = (lam * corr[:, None]).sum(-1) + (lam_next * zh).sum(-1)
            s1 = (lam * (corr * p)[:, None]).sum(-1) + (lam_next * ((p + 1) * zh + zm)).sum(-1)
            return grad_x, s0.real, weight * s1.real, -weight * s1.imag, None


def basis_convolution(x: Tensor, weight: Tensor, decay: Tensor, freq: Tensor) -> Tensor:
    """Causal convolution with a weighted basis, ``y[p, r, t] = sum_{s <= t} k[r, t - s] x[p, r, s]`` where
    ``k[r, t] = sum_j weight[r, j] exp(t decay[r, j]) cos(t freq[r, j])``, without the kernel or an FFT.

    It runs the state-space recurrence ``h[t] = lambda h[t-1] + x[t]`` (``y = Re sum W h``) in chunks of T
    samples: inside a chunk, a (T, T) Toeplitz product with the first T taps; across chunks, the complex state
    ``(P, R, S)``, carried by a short loop. All the work is in ``bmm`` (FLOPs ~ ``P R L (2 T + 8 S)``), which on
    a CPU runs several times faster per FLOP than an FFT; for few states per kernel (s5, dws, neck) it beats
    the FFT convolution. Backward uses closed forms (see ``_BasisConvolution.backward``), never the kernel.

    Args:
        x: ``(P, R, L)`` real.
        weight, decay, freq: ``(R, S)`` real, broadcastable (``decay = Re(dt A)``, ``freq = Im(dt A)``).
    Returns:
        ``(P, R, L)``, a strided view of a padded buffer.
    """
    x, weight, decay, freq = _full_precision(x, *torch.broadcast_tensors(weight, decay, freq))
    block = scan_block(weight.shape[-1])
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _BasisConvolution.apply(x, weight.contiguous(), decay.contiguous(), freq.contiguous(), block)
