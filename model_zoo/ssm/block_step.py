"""The block step: a short chunk of a Centaurus layer at inference, as one product with a cached matrix.

dws, s5 and neck are block-diagonal between the drive and the readout: P blocks (dws: the input channels;
s5: the J N states, one each; neck: the J blocks), each with Q complex states fed by one real signal
``v[p, t]`` (dws: the input; s5, neck: B x) and read out as one real signal ``z[p, t] = Re sum_q E h``
(s5: E = 1), then mixed to the outputs by C. Over a chunk of T samples each block is a linear map of real
numbers: its state before (2Q: Re, Im) and its input (T) give its outputs z (T, the state's response plus the
kernel's first T taps as a Toeplitz matrix) and, with ``lambda^T h``, the state after. That is two batched
matrix products over P with matrices cached per chunk length, instead of a planned contraction, FFTs and
einsums. One sample (T = 1) is elementwise complex maths instead (:func:`sample_step`).

:meth:`model_zoo.ssm.centaurus.SSMLayer.step` decides when this applies and caches the operators
(:mod:`model_zoo.ssm.cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .basis import complex_powers

if TYPE_CHECKING:
    from .centaurus import SSMLayer

__all__ = ["BLOCK_MODES", "BLOCK_STEP_ELEMENTS", "BlockOperators", "block_operators", "block_step", "sample_step"]

BLOCK_MODES = ("dws", "s5", "neck")  # the modes that are block-diagonal between drive and readout
BLOCK_STEP_ELEMENTS = 1 << 21  # largest cached block matrices per chunk length (8 MB in float32)


@dataclass(frozen=True, slots=True)
class BlockOperators:
    """What :func:`block_step` needs for chunks of one length, in the compute ``dtype``.

    ``matrix (P, 2Q + T, T + 2Q)`` maps ``[h, v]`` to ``[z, h']`` for each of the P state blocks: h the state
    before the chunk (Re, Im interleaved), v the chunk's drive, z the pre-readout output and h' the state after.
    For T = 1, instead of the matrix: ``decay`` (lambda, complex, ``(P, Q)``), ``feed`` (dt) and ``readin`` (E),
    for :func:`sample_step`; these two are ``(P, 2Q)`` in the state's layout, on the real parts, with zeros on the
    imaginary ones, so that they apply to the whole state at once: elementwise maths on every other element of a
    tensor took twice as long as on all of it.
    """

    dtype: torch.dtype
    drive: Tensor | None  # (P, C_in), None for dws (the input channels are the blocks)
    readout: Tensor  # (C_out, P)
    bias: Tensor | None  # (C_out, 1)
    state_shape: tuple[int, ...]  # the complex state's shape without batch (SSMLayer.init_state)
    rows: tuple[int, int]  # (P, 2Q)
    in_channels: int
    out_channels: int
    matrix: Tensor | None = None  # T > 1
    decay: Tensor | None = None  # T = 1
    feed: Tensor | None = None
    readin: Tensor | None = None


def _complex_as(value: Tensor, dtype: torch.dtype) -> Tensor:
    """A complex tensor in the complex type whose parts are ``dtype`` (float32 -> complex64)."""
    return torch.view_as_complex(torch.view_as_real(value).to(dtype).contiguous())


@torch.no_grad()
def block_operators(layer: SSMLayer, length: int, dtype: torch.dtype, device: torch.device) -> BlockOperators | None:
    """The operators of ``layer`` (a dws, s5 or neck mode) for chunks of ``length``, built in float64 from its
    parameters; None when the matrix would exceed ``layer.BLOCK_STEP_ELEMENTS`` (:data:`BLOCK_STEP_ELEMENTS`)."""
    blocks, states = (layer.sizes["n"], 1) if layer.mode == "s5" else layer._shape(layer.spec.state)
    if length > 1 and blocks * (length + 2 * states) ** 2 > layer.BLOCK_STEP_ELEMENTS:
        return None
    decay, freq, dt = (t.to(torch.float64).reshape(blocks, states) for t in layer.discretised())
    w = layer.weights
    e = w["E"].to(torch.float64) if "E" in w else torch.ones_like(dt)
    powers = complex_powers(decay, freq, torch.arange(length + 1, device=device))  # (P, Q, T + 1)
    common = dict(
        dtype=dtype,
        drive=w["B"].to(dtype).reshape(blocks, layer.in_channels) if "B" in w else None,
        readout=w["C"].to(dtype).reshape(layer.out_channels, blocks).contiguous(),
        bias=None if layer.bias is None else layer.bias.to(dtype)[:, None].contiguous(),
        state_shape=layer._shape(layer.spec.state),
        rows=(blocks, 2 * states),
        in_channels=layer.in_channels,
        out_channels=layer.out_channels,
    )
    if length == 1:
        # One sample: the matrix would be 94% rotation blocks; elementwise complex maths is half the time.
        def on_real_parts(value: Tensor) -> Tensor:  # (P, Q) -> (P, 2Q): Re, Im interleaved, Im = 0
            return torch.stack([value, torch.zeros_like(value)], -1).reshape(blocks, 2 * states).to(dtype)

        return BlockOperators(**common, decay=_complex_as(powers[..., 1], dtype), feed=on_real_parts(dt),
                              readin=on_real_parts(e))
    matrix = torch.zeros(blocks, 2 * states + length, length + 2 * states, dtype=torch.float64, device=device)
    # h -> z[t]: Re(E lambda^(t+1) h) = E (Re lambda^(t+1) Re h - Im lambda^(t+1) Im h)
    state_z = torch.stack([powers.real, -powers.imag], 2)[..., 1:] * e[..., None, None]  # (P, Q, 2, T)
    matrix[:, : 2 * states, :length] = state_z.reshape(blocks, 2 * states, length)
    # h -> h': lambda^T h, a 2x2 rotation and decay of each (Re, Im) pair
    lam = powers[..., length]  # (P, Q)
    rotation = torch.stack([torch.stack([lam.real, lam.imag], -1), torch.stack([-lam.imag, lam.real], -1)], -2)
    pairs = matrix[:, : 2 * states, length:].view(blocks, states, 2, states, 2)
    pairs.diagonal(dim1=1, dim2=3).copy_(rotation.permute(0, 2, 3, 1))
    # v[s] -> z[t], s <= t: the kernel's taps k[t - s] = sum_q E dt Re lambda^(t - s)
    taps = (e * dt)[..., None].mul(powers.real[..., :length]).sum(1)  # (P, T)
    lag = torch.arange(length, device=device)
    lag = lag[None, :] - lag[:, None]  # [s, t] -> t - s
    matrix[:, 2 * states :, :length] = torch.where(lag >= 0, taps[:, lag.clamp(min=0)], 0.0)
    # v[s] -> h': dt lambda^(T-1-s), interleaved Re, Im
    feed = dt[..., None] * powers[..., :length].flip(-1)  # (P, Q, T)
    matrix[:, 2 * states :, length:] = torch.view_as_real(feed.permute(0, 2, 1)).reshape(blocks, length, -1)
    return BlockOperators(**common, matrix=matrix.to(dtype))


def block_step(x: Tensor, state: Tensor, op: BlockOperators) -> tuple[Tensor, Tensor]:
    """One chunk x ``(B, C_in, T)`` by the block matrix: ``[h, v] @ matrix``, one ``bmm`` in the layout
    ``(P, B, ...)`` (blocks first, a view for B = 1), whose last 2Q columns are the new state, returned as a
    view in the ``(B, *state, 2)`` shape of ``SSMLayer.init_state``. -> y ``(B, C_out, T)``, new state."""
    batch, _, length = x.shape
    blocks, width = op.rows
    u = x if x.dtype == op.dtype else x.to(op.dtype)
    if length == 1:
        y, new_state = sample_step(u, state, op)
        return (y if y.dtype == x.dtype else y.to(x.dtype)), new_state
    if op.drive is None:  # dws: the input channels are the blocks
        v = u.transpose(0, 1)  # (P, B, T)
    else:
        flat = u[0] if batch == 1 else u.transpose(0, 1).reshape(op.in_channels, batch * length)
        v = torch.mm(op.drive, flat).view(blocks, batch, length)
    h = state.view(batch, blocks, width).transpose(0, 1)  # (P, B, 2Q)
    out = torch.bmm(torch.cat([h, v], 2), op.matrix)  # (P, B, T + 2Q)
    z = out[:, 0, :length] if batch == 1 else out[..., :length].reshape(blocks, batch * length)
    y = torch.mm(op.readout, z) if op.bias is None else torch.addmm(op.bias, op.readout, z)
    y = y.unsqueeze(0) if batch == 1 else y.view(op.out_channels, batch, length).transpose(0, 1)
    new_state = out[..., length:].transpose(0, 1).view(batch, *op.state_shape, 2)
    return (y if y.dtype == x.dtype else y.to(x.dtype)), new_state


def sample_step(u: Tensor, state: Tensor, op: BlockOperators) -> tuple[Tensor, Tensor]:
    """:func:`block_step` for one sample ``(B, C_in, 1)`` in the compute dtype: ``h' = lambda h + dt v``
    elementwise on the complex view of the state ``(B, P, Q)``; the block outputs are then
    ``z = Re sum_q E h'`` (the state's response plus the kernel's first tap, ``sum_q E dt``, in one)."""
    batch = u.shape[0]
    blocks, width = op.rows
    v = u[..., 0] if op.drive is None else torch.mm(u[..., 0], op.drive.T)  # (B, P)
    # A state left by a longer chunk is a strided view of that step's product: make it whole once.
    h = torch.view_as_complex(state.reshape(batch, blocks, width // 2, 2).contiguous())
    new_state = torch.view_as_real(h * op.decay).view(batch, blocks, width)  # Re, Im interleaved
    new_state.addcmul_(op.feed, v[..., None])  # + dt v on the real parts
    z = torch.linalg.vecdot(new_state, op.readin)  # (B, P): E on the real parts
    y = torch.mm(op.readout, z.T) if op.bias is None else torch.addmm(op.bias, op.readout, z.T)
    y = y.T.unsqueeze(-1)  # (B, C_out, 1)
    return y, new_state.view(batch, *op.state_shape, 2)
