"""The Centaurus modes as tensor networks, and how one pairwise step of a planned contraction runs.

Each mode of :class:`model_zoo.ssm.centaurus.SSMLayer` is a network over the input ``u``, its real weights and
the SSM basis ``K`` (:func:`mode_spec`; the table is in :mod:`model_zoo.ssm.centaurus`). The planner
(:mod:`model_zoo.ssm.planner`) chooses the order of pairwise steps; here is how each kind of step is carried
out: a product in the time domain (:func:`time_product`), the convolution by chunked scan of a basis kept
lazy (:class:`LazyBasis`, :func:`scan_product`), and the index order of every step's result
(:func:`result_indices`). Steps by FFT are :func:`model_zoo.ssm.fftconv.fft_contract`.

Index letters: b batch, i input channel, j output channel, g group, k state block, n state, t time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .basis import basis_convolution, weighted_basis
from .planner import TIME, TensorNetwork

__all__ = ["ModeSpec", "mode_spec", "result_indices", "time_product", "aligned_bias", "LazyBasis", "materialised",
           "scan_product"]


@dataclass(frozen=True)
class ModeSpec:
    """One mode: its network, the indices of its state and of dt, and which weights stand on either side of
    the state (the block step of :mod:`model_zoo.ssm.block_step` and the general step apply them apart)."""

    network: TensorNetwork
    state: str  # indices of the complex state (also the basis indices without t)
    dt_shape: str  # indices dt varies over; the rest broadcast
    drive: tuple[str, ...]  # weights applied to the input before it enters the state
    readout: tuple[str, ...]  # weights applied to the state to give the output


def mode_spec(mode: str) -> ModeSpec:
    """The network of ``mode`` (one of :data:`model_zoo.ssm.centaurus.MODES`): names, indices, output."""
    net = {
        "dws": (("u", "E", "K", "C"), ("bit", "in", "int", "ji"), "bjt"),
        "s5": (("u", "B", "K", "C"), ("bit", "ni", "nt", "jn"), "bjt"),
        "neck": (("u", "B", "E", "K", "C"), ("bit", "ki", "kn", "knt", "jk"), "bjt"),
        "full": (("u", "E", "K"), ("bgit", "gjin", "gjint"), "bgjt"),
        "group": (("u", "E", "K"), ("bgit", "gjin", "gjint"), "bgjt"),
    }[mode]
    names, indices, output = net
    network = TensorNetwork(names, indices, output)
    state = indices[names.index("K")].replace(TIME, "")
    drive = {"dws": (), "s5": ("B",), "neck": ("B",), "full": (), "group": ()}[mode]
    readout = {"dws": ("E", "C"), "s5": ("C",), "neck": ("E", "C"), "full": ("E",), "group": ("E",)}[mode]
    dt_shape = {"dws": "i", "s5": "n", "neck": "k", "full": "gj", "group": "gj"}[mode]
    return ModeSpec(network, state, dt_shape, drive, readout)


def result_indices(operand_indices: str, kept: str, output: str) -> str:
    """Index order of a step's result: the network output's order first (so the last step needs no permute and
    weight x signal steps are plain matmuls), then the others as they appear, time last."""
    chosen = [c for c in dict.fromkeys(operand_indices) if c in kept and c != TIME]
    chosen.sort(key=lambda c: output.index(c) if c in output else len(output))  # stable: ties keep appearance
    return "".join(chosen) + (TIME if TIME in operand_indices else "")


def time_product(a_idx: str, b_idx: str, out: str, a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """A time-domain step. The common one, weight ``(free..., summed...)`` times signal
    ``(prefix..., summed..., t)`` into ``(prefix..., free..., t)``, runs as one matmul broadcast over the
    prefix, reading and writing the signal in its layout (``torch.einsum`` permutes it to ``(summed, prefix t)``
    and the result back); anything else goes to ``torch.einsum``.

    ``bias`` (the layer's output bias, one value per output channel, in the order of ``out`` without batch and
    time) is added to the result. Where the signal has fewer rows than the result (``summed`` < ``free``, as in
    the last step of neck: 4 state blocks into 64 channels), it rides in the matmul as one more summed row, a
    row of ones, instead: appending that row copies the small signal, while adding afterwards reads and writes
    the large result once more (neck's forward: 2.5 of 17 ms at the bench shapes, one thread)."""
    if TIME in b_idx and TIME not in a_idx:
        a_idx, b_idx, a, b = b_idx, a_idx, b, a
    sizes = dict(zip(a_idx, a.shape)) | dict(zip(b_idx, b.shape))
    if TIME in a_idx and TIME not in b_idx:
        summed = "".join(c for c in a_idx if c in b_idx and c not in out)
        free = "".join(c for c in b_idx if c not in summed)
        prefix = a_idx[: len(a_idx) - len(summed) - 1]
        if summed and a_idx == prefix + summed + TIME and out == prefix + free + TIME and not set(prefix) & set(b_idx):
            count = lambda s: math.prod(sizes[c] for c in s)  # noqa: E731
            weight = b.permute([b_idx.index(c) for c in free + summed]).reshape(count(free), count(summed))
            signal = a.reshape(count(prefix), count(summed), a.shape[-1])
            if bias is not None and count(summed) < count(free):
                weight = torch.cat([weight, bias.reshape(-1, 1).to(weight.dtype)], dim=1)
                signal = torch.cat([signal, signal.new_ones(signal.shape[0], 1, signal.shape[-1])], dim=1)
                bias = None
            # bmm with the weight expanded (stride 0) over the prefix: under autograd, torch.matmul folds this
            # into one (prefix t, summed) x (summed, free) product with transposing copies, 2-3x slower.
            weight = weight.expand(signal.shape[0], *weight.shape)
            result = torch.bmm(weight, signal).view(*(sizes[c] for c in out))
            return result if bias is None else result + aligned_bias(bias, out, sizes)
    result = torch.einsum(f"{a_idx},{b_idx}->{out}", a, b)
    return result if bias is None else result + aligned_bias(bias, out, sizes)


def aligned_bias(bias: Tensor, out: str, sizes: dict[str, int]) -> Tensor:
    """The bias ``(C_out,)`` viewed against a result with indices ``out``: its channel indices (all but batch
    and time) keep their sizes, the others are 1."""
    return bias.reshape([1 if c in ("b", TIME) else sizes[c] for c in out])


@dataclass
class LazyBasis:
    """A weighted basis not yet evaluated: ``kernel[r, t] = sum_s weight[r, s] exp(t decay) cos(t freq)``, rows
    ``r`` flattened from ``shape``. A scan step uses it as it is; any other step materialises it."""

    weight: Tensor  # (R, S)
    decay: Tensor  # (R, S)
    freq: Tensor  # (R, S)
    shape: tuple[int, ...]  # the kernel's index sizes without t, prod = R
    length: int

    def materialise(self, padded: int | None = None) -> Tensor:
        """``(*shape, L)``, or ``(*shape, padded)`` with zeros after L."""
        kernel = weighted_basis(self.weight, self.decay, self.freq, self.length, padded)
        return kernel.reshape(*self.shape, kernel.shape[-1])


def materialised(value: Tensor | LazyBasis) -> Tensor:
    return value.materialise() if isinstance(value, LazyBasis) else value


def scan_product(x_idx: str, k_idx: str, out: str, x: Tensor, kernel: LazyBasis) -> Tensor:
    """The convolution step by chunked scan: every index of the kernel is one of the input's, which the
    kernel is broadcast over. The input is arranged ``(other indices, kernel indices, t)`` for
    :func:`basis_convolution`, then the result put in ``out`` order."""
    order = "".join(c for c in x_idx if c not in k_idx) + k_idx
    sizes = dict(zip(x_idx, x.shape))
    rows = math.prod(kernel.shape)
    arranged = x.permute([x_idx.index(c) for c in order]).reshape(-1, rows, kernel.length)
    y = basis_convolution(arranged, kernel.weight, kernel.decay, kernel.freq)
    y = y.reshape(*(sizes[c] for c in order))
    return y.permute([order.index(c) for c in out])
