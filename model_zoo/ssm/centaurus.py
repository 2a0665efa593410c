"""The Centaurus SSM layer: a state-space layer that connects channels like a convolution does.

Each mode is one tensor network over the input ``u``, real weights and the SSM basis
``K[state, t] = dt Re(lambda^t)``, ``lambda = exp(dt A)`` (Pei, "Let SSMs be ConvNets", ICLR 2025):

====== ===================== ============================================ =====================
mode   like                  network                                      states carried
====== ===================== ============================================ =====================
dws    depthwise + 1x1 conv  u[b,i,t] E[i,n] K[i,n,t] C[j,i]              (B, C_in, N)
s5     pointwise bottleneck  u[b,i,t] B[n,i] K[n,t] C[j,n]  (n = J N)     (B, J N)
neck   bottleneck            u[b,i,t] B[k,i] E[k,n] K[k,n,t] C[j,k]       (B, J, N)
full   full conv             u[b,i,t] E[j,i,n] K[j,i,n,t]                 (B, C_out, C_in, N)
group  group conv            u[b,g,i,t] E[g,j,i,n] K[g,j,i,n,t]           (B, G, C_out/G, C_in/G, N)
====== ===================== ============================================ =====================

(t is time, convolved causally; b batch; i, j input and output channels; k one of J state blocks; n a state.)

Parameterisation as in the paper's code: diagonal complex ``A = -softplus(a_real) + i a_imag`` initialised to
``-0.5 + i pi n``; ``dt`` initialised geometrically over [dt_min, dt_max] per input channel (dws), per output
channel (full, group) or per state block (s5, neck); "simplified ZOH" (``lambda = exp(dt A)``, input scaled by
``dt``); real B, C, E. Deviations: dt is trainable (in the "sensitive" group with A, see
:data:`SENSITIVE_PARAMETERS`); E and C are drawn at random (scaled Gaussians) instead of constants, and every
mode has an optional output bias like ``nn.Conv1d``.

The order of contraction is chosen per (batch, length) by :mod:`model_zoo.ssm.planner` and cached;
``contraction_plan(batch, length)`` shows it. The step that joins the input with the basis is a causal
convolution, run either by FFT (:func:`~model_zoo.ssm.fftconv.fft_contract`, which also sums over input
channels for full and group) or, when the kernel is still a short weighted basis and the step is elementwise
over channels (dws, s5, neck), by the chunked state-space scan of
:func:`~model_zoo.ssm.basis.basis_convolution`: matrix products only, several times faster per FLOP on a CPU.
Basis steps stay lazy (:class:`_LazyBasis`) until a step needs the kernel in the time domain.

Streaming (``init_state``/``step``) carries the complex state as a real tensor (Re and Im interleaved in a
trailing axis of 2) and is exact: concatenated chunk outputs equal ``forward`` on the whole clip. At inference a
short chunk of the dws, s5 and neck modes is one product with a cached real block matrix; otherwise the chunk's
own response comes from the layer's impulse response, cached as a spectrum per chunk length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .basis import basis_convolution, complex_powers, weighted_basis
from .fftconv import fft_contract, fft_length, irfft_time, rfft_time
from .planner import TIME, ContractionPlan, TensorNetwork, enumerate_plans, plan_contraction

__all__ = ["SSMLayer", "MODES", "SENSITIVE_PARAMETERS"]

MODES = ("dws", "s5", "neck", "full", "group")
# Trained with a lower learning rate and no weight decay (the paper's "sensitive" parameter group).
SENSITIVE_PARAMETERS = ("a_real", "a_imag", "log_dt")


@dataclass(frozen=True)
class _ModeSpec:
    network: TensorNetwork
    state: str  # indices of the complex state (also the basis indices without t)
    dt_shape: str  # indices dt varies over; the rest broadcast
    drive: tuple[str, ...]  # weights applied to the input before it enters the state
    readout: tuple[str, ...]  # weights applied to the state to give the output


def _complex_as(value: Tensor, dtype: torch.dtype) -> Tensor:
    """A complex tensor in the complex type whose parts are ``dtype`` (float32 -> complex64)."""
    return torch.view_as_complex(torch.view_as_real(value).to(dtype).contiguous())


def _spec(mode: str) -> _ModeSpec:
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
    return _ModeSpec(network, state, dt_shape, drive, readout)


def _result_indices(operand_indices: str, kept: str, output: str) -> str:
    """Index order of a step's result: the network output's order first (so the last step needs no permute and
    weight x signal steps are plain matmuls), then the others as they appear, time last."""
    chosen = [c for c in dict.fromkeys(operand_indices) if c in kept and c != TIME]
    chosen.sort(key=lambda c: output.index(c) if c in output else len(output))  # stable: ties keep appearance
    return "".join(chosen) + (TIME if TIME in operand_indices else "")


def _time_product(a_idx: str, b_idx: str, out: str, a: Tensor, b: Tensor) -> Tensor:
    """A time-domain step. The common one, weight ``(free..., summed...)`` times signal
    ``(prefix..., summed..., t)`` into ``(prefix..., free..., t)``, runs as one matmul broadcast over the
    prefix, reading and writing the signal in its layout (``torch.einsum`` permutes it to ``(summed, prefix t)``
    and the result back); anything else goes to ``torch.einsum``."""
    if TIME in b_idx and TIME not in a_idx:
        a_idx, b_idx, a, b = b_idx, a_idx, b, a
    if TIME in a_idx and TIME not in b_idx:
        summed = "".join(c for c in a_idx if c in b_idx and c not in out)
        free = "".join(c for c in b_idx if c not in summed)
        prefix = a_idx[: len(a_idx) - len(summed) - 1]
        if summed and a_idx == prefix + summed + TIME and out == prefix + free + TIME and not set(prefix) & set(b_idx):
            sizes = dict(zip(a_idx, a.shape)) | dict(zip(b_idx, b.shape))
            count = lambda s: math.prod(sizes[c] for c in s)  # noqa: E731
            weight = b.permute([b_idx.index(c) for c in free + summed]).reshape(count(free), count(summed))
            signal = a.reshape(count(prefix), count(summed), a.shape[-1])
            # bmm with the weight expanded (stride 0) over the prefix: under autograd, torch.matmul folds this
            # into one (prefix t, summed) x (summed, free) product with transposing copies, 2-3x slower.
            weight = weight.expand(signal.shape[0], *weight.shape)
            return torch.bmm(weight, signal).view(*(sizes[c] for c in out))
    return torch.einsum(f"{a_idx},{b_idx}->{out}", a, b)


@dataclass
class _LazyBasis:
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


def _materialised(value: Tensor | _LazyBasis) -> Tensor:
    return value.materialise() if isinstance(value, _LazyBasis) else value


def _scan_product(x_idx: str, k_idx: str, out: str, x: Tensor, kernel: _LazyBasis) -> Tensor:
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


class SSMLayer(nn.Module):
    """Centaurus state-space layer, used like ``nn.Conv1d``: ``(B, C_in, L) -> (B, C_out, L)``, causal.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        state_dim: N, states per channel connection (per block for s5 and neck).
        mode: one of ``MODES``.
        blocks: J, state blocks of the s5 and neck modes (s5 carries J N states, neck J blocks of N).
        groups: G for ``mode="group"`` (must divide both channel counts); ``full`` is ``group`` with G = 1.
        bias: add a learnable bias per output channel.
        dt_min, dt_max: range of the initial time steps.
        memory_limit: largest intermediate (elements) the planner may choose when a cheaper order exceeds it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        state_dim: int = 16,
        mode: str = "dws",
        *,
        blocks: int = 4,
        groups: int = 1,
        bias: bool = True,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        memory_limit: int | None = 1 << 28,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        groups = groups if mode == "group" else 1
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.state_dim = in_channels, out_channels, state_dim
        self.mode, self.blocks, self.groups = mode, blocks, groups
        self.memory_limit = memory_limit
        self.spec = _spec(mode)
        self.sizes = {
            "g": groups, "i": in_channels // groups, "j": out_channels // groups, "k": blocks,
            "n": blocks * state_dim if mode == "s5" else state_dim,
        }
        if mode == "dws":
            self.sizes["i"], self.sizes["j"] = in_channels, out_channels

        state_shape = self._shape(self.spec.state)
        n_index = torch.arange(self.sizes["n"], dtype=torch.float32)
        if mode == "s5":  # each block holds states 0..N-1
            n_index = n_index % state_dim
        self.a_real = nn.Parameter(torch.full(state_shape, math.log(math.expm1(0.5))))
        self.a_imag = nn.Parameter((math.pi * n_index).expand(state_shape).clone())
        dt_count = math.prod(self._shape(self.spec.dt_shape))
        log_dt = torch.linspace(math.log(dt_min), math.log(dt_max), dt_count).reshape(self._shape(self.spec.dt_shape))
        if mode == "s5":
            log_dt = torch.linspace(math.log(dt_min), math.log(dt_max), blocks).repeat_interleave(state_dim)
        self.log_dt = nn.Parameter(log_dt)

        weights = {}
        for name, idx in zip(self.spec.network.names, self.spec.network.indices):
            if name in ("u", "K"):
                continue
            fan_in = {"B": self.sizes["i"], "C": math.prod(self._shape(idx)) // self.sizes["j"]}.get(name)
            if name == "E":
                fan_in = self.sizes["n"] * (self.sizes["i"] if "i" in idx else 1)
            weights[name] = nn.Parameter(torch.randn(self._shape(idx)) / math.sqrt(fan_in))
        self.weights = nn.ParameterDict(weights)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._plans: dict[tuple[int, int, str], ContractionPlan] = {}
        self._stream_cache: dict = {}

    # ---- shapes and parameters -------------------------------------------------------------------------------
    def _shape(self, indices: str) -> tuple[int, ...]:
        return tuple(self.sizes[c] for c in indices)

    def _aligned(self, tensor: Tensor, src: str, dst: str) -> Tensor:
        """View ``tensor`` (indices ``src``) with indices ``dst`` (a superset), broadcasting missing ones."""
        perm = [src.index(c) for c in dst if c in src]
        view = tensor.permute(perm)
        shape = [self.sizes[c] if c in src else 1 for c in dst]
        return view.reshape(shape).expand([self.sizes[c] for c in dst])

    def discretised(self) -> tuple[Tensor, Tensor, Tensor]:
        """``Re(dt A)``, ``Im(dt A)`` and ``dt``, each with the state's shape."""
        dt = self._aligned(torch.exp(self.log_dt), self.spec.dt_shape, self.spec.state)
        decay = -nn.functional.softplus(self.a_real) * dt
        return decay, self.a_imag * dt, dt

    # ---- planning ----------------------------------------------------------------------------------------------
    def _sizes_for(self, batch: int, length: int) -> dict[str, int]:
        return {**self.sizes, "b": batch, TIME: length}

    def convolution_policy(self) -> str:
        """How the convolution step runs now (``planner.CONVOLUTIONS``): by FFT while training (module in
        training mode with autograd on, as the paper trains; at the frame-rate lengths our networks train on it
        was also 2-5x faster forward+backward than the scan, whose many small matrix products dominate there),
        else whichever of scan and FFT the cost model finds cheaper."""
        return "fft" if self.training and torch.is_grad_enabled() else "auto"

    def contraction_plan(self, batch: int, length: int, convolution: str | None = None) -> ContractionPlan:
        """The order chosen for this (batch, length), its steps and estimated cost (cached).
        ``convolution`` (``"auto"``, ``"fft"``, ``"scan"``) defaults to :meth:`convolution_policy`."""
        key = (batch, length, convolution or self.convolution_policy())
        if key not in self._plans:
            sizes = self._sizes_for(batch, length)
            self._plans[key] = plan_contraction(
                self.spec.network, sizes, fft_length(length), self.memory_limit, convolution=key[2]
            )
        return self._plans[key]

    def candidate_plans(self, batch: int, length: int, convolution: str = "auto") -> list[ContractionPlan]:
        """Every order the planner considered, with its cost."""
        return enumerate_plans(self.spec.network, self._sizes_for(batch, length), fft_length(length), convolution)

    # ---- forward -----------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, plan: ContractionPlan | None = None) -> Tensor:
        """x: ``(B, C_in, L)`` -> ``(B, C_out, L)``. ``plan`` forces an order (default: the cheapest under
        :meth:`convolution_policy`)."""
        batch, _, length = x.shape
        plan = plan or self.contraction_plan(batch, length)
        u = x.reshape(batch, self.groups, -1, length) if "g" in self.spec.network.indices[0] else x
        y = self._contract(u, plan, length).reshape(batch, self.out_channels, length)
        return y if self.bias is None else y + self.bias[:, None]

    def _contract(self, u: Tensor, plan: ContractionPlan, length: int) -> Tensor:
        net = self.spec.network
        decay, freq, dt = self.discretised()
        operands: list[tuple[str, Tensor | _LazyBasis | None, str]] = []
        for name, idx in zip(net.names, net.indices):
            tensor = u if name == "u" else None if name == "K" else self.weights[name]
            operands.append((name, tensor, idx))
        for (x_pos, y_pos), step in zip(plan.path, plan.steps):
            a, b = operands[x_pos], operands[y_pos]
            rest = [o for p, o in enumerate(operands) if p not in (x_pos, y_pos)]
            out = _result_indices(a[2] + b[2], step.equation.split("->")[1], net.output)
            if step.kind == "basis":
                weight = b if a[0] == "K" else a
                tensor = self._basis(weight[1], weight[2], out, decay, freq, dt, length)
            elif step.kind in ("fft", "scan"):
                x_side, k_side = (a, b) if "u" in a[0] else (b, a)
                kernel = k_side[1]
                if kernel is None:  # the raw basis: one term per row, weighted by dt
                    kernel = self._basis(None, "", k_side[2], decay, freq, dt, length)
                if step.kind == "scan":
                    tensor = _scan_product(x_side[2], k_side[2], out, x_side[1], kernel)
                else:
                    spec = ",".join(i.replace(TIME, "") for i in (x_side[2], k_side[2])) + "->" + out.replace(TIME, "")
                    # A lazy kernel is built zero-padded to the FFT length: no padding copy before the FFT.
                    kernel = kernel.materialise(fft_length(length)) if isinstance(kernel, _LazyBasis) else kernel
                    tensor = fft_contract(spec, x_side[1], kernel, self.memory_limit)
            else:
                tensor = _time_product(a[2], b[2], out, _materialised(a[1]), _materialised(b[1]))
            operands = rest + [(a[0] + b[0], tensor, out)]
        name, tensor, idx = operands[0]
        return tensor.permute([idx.index(c) for c in net.output])

    def _basis(
        self, weight: Tensor | None, weight_idx: str, out: str, decay: Tensor, freq: Tensor, dt: Tensor,
        length: int,
    ) -> _LazyBasis:
        """``sum (weight * dt * Re(lambda^t))`` over the indices not in ``out`` (which ends with t), lazily."""
        state = self.spec.state
        kept = out.replace(TIME, "")
        full = kept + "".join(c for c in dict.fromkeys(weight_idx + state) if c not in kept)
        rows = math.prod(self._shape(kept))
        w = self._aligned(dt, state, full)
        if weight is not None:
            w = w * self._aligned(weight, weight_idx, full)
        decay, freq = (self._aligned(p, state, full).reshape(rows, -1) for p in (decay, freq))
        return _LazyBasis(w.reshape(rows, -1), decay, freq, self._shape(kept), length)

    # ---- streaming ---------------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """Zero state ``(B, *state, 2)``: the complex state (shapes in the module docstring) with Re and Im
        interleaved, real so that the inference step is one real matrix product and states batch like any
        other tensor. ``torch.view_as_complex`` gives the complex view."""
        shape = (batch_size, *self._shape(self.spec.state), 2)
        return torch.zeros(shape, dtype=dtype or self.a_real.dtype, device=device or self.a_real.device)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One chunk: x ``(B, C_in, T)``, any T >= 0 -> y ``(B, C_out, T)`` and the state after the chunk.

        ``y = forward(x) + Re(readout(lambda^(t+1) h))`` and ``h <- lambda^T h + sum_s dt lambda^(T-1-s) drive_s``:
        the cost depends on T only, never on how much came before. At inference, short chunks of the dws, s5
        and neck modes take :meth:`_block_step` (a handful of small products with cached matrices); otherwise,
        or when gradients are needed, the general path below.
        """
        batch, _, length = x.shape
        if length == 0:
            return x.new_zeros(batch, self.out_channels, 0), state
        if not (torch.is_grad_enabled() and (x.requires_grad or self.a_real.requires_grad)):
            operators = self._block_operators(length, state.dtype, x.device)
            if operators is not None:
                return self._block_step(x, state, operators)
        real_state = state
        state = torch.view_as_complex(real_state.contiguous())
        net, spec, s = self.spec.network, self.spec, self.spec.state
        lam_chunk, free, feed = self._stream_tables(length)
        u_idx = net.indices[0]
        u = x.to(state.dtype)
        u = u.reshape(batch, self.groups, -1, length) if "g" in u_idx else u
        weight_idx = dict(zip(net.names, net.indices))
        readout = [self.weights[n].to(state.dtype) for n in spec.readout]
        eq = f"b{s},{s}t," + ",".join(weight_idx[n] for n in spec.readout) + f"->{net.output}"
        y_free = torch.einsum(eq, state, free, *readout).real.reshape(batch, self.out_channels, length)
        drive = [self.weights[n].to(state.dtype) for n in spec.drive]
        eq = ",".join([u_idx, *(weight_idx[n] for n in spec.drive), f"{s}t"]) + f"->b{s}"
        new_state = lam_chunk * state + torch.einsum(eq, u, *drive, feed)
        return self._forced_response(x) + y_free.to(x.dtype), torch.view_as_real(new_state).to(real_state.dtype)

    def _forced_response(self, x: Tensor) -> Tensor:
        """``forward(x)`` for one chunk ``(B, C_in, T)``.

        At inference the layer is a fixed filter bank: its impulse response ``(G, C_out/G, C_in/G, T)``, obtained
        once per chunk length (and parameter version) by ``forward`` on unit impulses, is cached as a spectrum,
        and a chunk costs one rfft, one small product and one irfft instead of a basis, kernel FFTs and einsums.
        Used when that product is not dearer than the planned contraction.
        """
        batch, _, length = x.shape
        if torch.is_grad_enabled():
            return self.forward(x)
        n_fft = fft_length(length)
        g, i, j = self.groups, self.in_channels // self.groups, self.out_channels // self.groups
        product_flops = 8 * batch * g * i * j * (n_fft // 2 + 1)
        # A planned contraction is a few dozen small ops: ~2e7 FLOPs' worth of overhead on a CPU.
        if product_flops > self.contraction_plan(batch, length).cost + 2e7:
            return self.forward(x)
        key = ("impulse", length, x.dtype, x.device, *(p._version for p in self.parameters()))
        if key not in self._stream_cache:
            impulses = torch.zeros(self.in_channels, self.in_channels, length, dtype=x.dtype, device=x.device)
            impulses[:, :, 0] = torch.eye(self.in_channels, dtype=x.dtype, device=x.device)
            response = self.forward(impulses)  # (C_in, C_out, T): output channel for a unit impulse on each input
            if self.bias is not None:
                response = response - self.bias[:, None].to(x.dtype)
            # Keep each output group's own inputs: (g, i, g', j, T) on the diagonal g = g' -> (g, j, i, T).
            response = response.reshape(g, i, g, j, length).diagonal(dim1=0, dim2=2).permute(3, 1, 0, 2)
            self._remember(key, rfft_time(response, n_fft))
        # Chunks are short: a broadcast product beats the transposes of a frequency-major bmm.
        x_hat = rfft_time(x.reshape(batch, g, 1, i, length), n_fft)
        spectrum = (x_hat * self._stream_cache[key]).sum(3)
        y = irfft_time(spectrum, n_fft, length).reshape(batch, self.out_channels, length)
        return y if self.bias is None else y + self.bias[:, None]

    # ---- the block step: short chunks at inference ---------------------------------------------------------------
    # dws, s5 and neck are block-diagonal between the drive and the readout: P blocks (dws: the input channels;
    # s5: the J N states, one each; neck: the J blocks), each with Q complex states fed by one real signal
    # v[p, t] (dws: the input; s5, neck: B x) and read out as one real signal z[p, t] = Re sum_q E h (s5: E = 1),
    # then mixed to the outputs by C. Over a chunk of T samples each block is a linear map of real numbers: its
    # state before (2Q: Re, Im) and its input (T) give its outputs z (T, the state's response plus the kernel's
    # first T taps as a Toeplitz matrix) and, with lambda^T h, the state after. That is two batched matrix
    # products over P with matrices cached per chunk length, instead of a planned contraction, FFTs and einsums.
    BLOCK_STEP_ELEMENTS = 1 << 21  # largest cached block matrices per chunk length (8 MB in float32)

    def _block_operators(self, length: int, dtype: torch.dtype, device: torch.device) -> dict | None:
        """The cached matrix of :meth:`_block_step` for chunks of ``length`` (None where it does not apply).

        ``matrix (P, 2Q + T, T + 2Q)`` maps ``[h, v]`` to ``[z, h']`` for each of the P state blocks: h the
        state before the chunk (Re, Im interleaved), v the chunk's drive, z the pre-readout output and h' the
        state after. ``drive (P, C_in)`` or None (dws); ``readout (C_out, P)``; ``bias (C_out, 1)`` or None.
        For T = 1, instead of the matrix: ``decay`` (lambda, complex), ``feed`` (dt) and ``readin`` (E), each
        ``(P, Q)``, for :meth:`_sample_step`. Built in float64 from the parameters, cached per (length, dtype,
        device) and rebuilt when a parameter's version or storage changes (an optimiser step,
        ``load_state_dict``, assigning ``.data``)."""
        if self.mode not in ("dws", "s5", "neck"):
            return None
        # Read straight from the parameter dicts: nn.Module attribute lookup costs ~1 us a name.
        stamp = [(p._version, p.data_ptr()) for p in (*self._parameters.values(), *self.weights._parameters.values())
                 if p is not None]
        key = ("block", length, dtype, device)
        cached = self._stream_cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        blocks, states = (self.sizes["n"], 1) if self.mode == "s5" else self._shape(self.spec.state)
        if length > 1 and blocks * (length + 2 * states) ** 2 > self.BLOCK_STEP_ELEMENTS:
            self._remember(key, (stamp, None))
            return None
        with torch.no_grad():
            decay, freq, dt = (t.to(torch.float64).reshape(blocks, states) for t in self.discretised())
            w = self.weights
            e = w["E"].to(torch.float64) if "E" in w else torch.ones_like(dt)
            powers = complex_powers(decay, freq, torch.arange(length + 1, device=device))  # (P, Q, T + 1)
            operators = {
                "dtype": dtype,
                "drive": w["B"].to(dtype).reshape(blocks, self.in_channels) if "B" in w else None,
                "readout": w["C"].to(dtype).reshape(self.out_channels, blocks).contiguous(),
                "bias": None if self.bias is None else self.bias.to(dtype)[:, None].contiguous(),
                "state_shape": self._shape(self.spec.state),
                "rows": (blocks, 2 * states),
            }
            if length == 1:
                # One sample: the matrix would be 94% rotation blocks; elementwise complex maths is half the time.
                operators.update(decay=_complex_as(powers[..., 1], dtype), feed=dt.to(dtype), readin=e.to(dtype))
                self._remember(key, (stamp, operators))
                return operators
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
            operators["matrix"] = matrix.to(dtype)
        self._remember(key, (stamp, operators))
        return operators

    def _block_step(self, x: Tensor, state: Tensor, op: dict) -> tuple[Tensor, Tensor]:
        """:meth:`step` for a short chunk by the block matrix of :meth:`_block_operators`: ``[h, v] @ matrix``,
        one ``bmm`` in the layout ``(P, B, ...)`` (blocks first, a view for B = 1), whose last 2Q columns are the
        new state, returned as a view in the ``(B, *state, 2)`` shape of :meth:`init_state`."""
        batch, _, length = x.shape
        blocks, width = op["rows"]
        u = x if x.dtype == op["dtype"] else x.to(op["dtype"])
        if length == 1:
            y, new_state = self._sample_step(u, state, op)
            return (y if y.dtype == x.dtype else y.to(x.dtype)), new_state
        if op["drive"] is None:  # dws: the input channels are the blocks
            v = u.transpose(0, 1)  # (P, B, T)
        else:
            flat = u[0] if batch == 1 else u.transpose(0, 1).reshape(self.in_channels, batch * length)
            v = torch.mm(op["drive"], flat).view(blocks, batch, length)
        h = state.view(batch, blocks, width).transpose(0, 1)  # (P, B, 2Q)
        out = torch.bmm(torch.cat([h, v], 2), op["matrix"])  # (P, B, T + 2Q)
        z = out[:, 0, :length] if batch == 1 else out[..., :length].reshape(blocks, batch * length)
        y = torch.mm(op["readout"], z) if op["bias"] is None else torch.addmm(op["bias"], op["readout"], z)
        y = y.unsqueeze(0) if batch == 1 else y.view(self.out_channels, batch, length).transpose(0, 1)
        new_state = out[..., length:].transpose(0, 1).view(batch, *op["state_shape"], 2)
        return (y if y.dtype == x.dtype else y.to(x.dtype)), new_state

    def _sample_step(self, u: Tensor, state: Tensor, op: dict) -> tuple[Tensor, Tensor]:
        """:meth:`_block_step` for one sample ``(B, C_in, 1)``: ``h' = lambda h + dt v`` elementwise on the complex
        view of the state ``(B, P, Q)``; the block outputs are then ``z = Re sum_q E h'`` (the state's response
        plus the kernel's first tap, ``sum_q E dt``, in one)."""
        batch = u.shape[0]
        blocks, width = op["rows"]
        v = u[..., 0] if op["drive"] is None else torch.mm(u[..., 0], op["drive"].T)  # (B, P)
        # A state left by a longer chunk is a strided view of that step's product: make it whole once.
        h = torch.view_as_complex(state.reshape(batch, blocks, width // 2, 2).contiguous())
        new_state = torch.view_as_real(h * op["decay"])  # (B, P, Q, 2)
        real = new_state[..., 0]
        real.addcmul_(op["feed"], v[..., None])
        z = torch.linalg.vecdot(real, op["readin"])  # (B, P)
        y = torch.mm(op["readout"], z.T) if op["bias"] is None else torch.addmm(op["bias"], op["readout"], z.T)
        y = y.T.unsqueeze(-1)  # (B, C_out, 1)
        return y, new_state.view(batch, *op["state_shape"], 2)

    def _remember(self, key: tuple, value) -> None:
        if len(self._stream_cache) > 16:  # a few chunk lengths in use at a time
            self._stream_cache.clear()
        self._stream_cache[key] = value

    def _stream_tables(self, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """``lambda^T``, ``lambda^(t+1)`` and ``dt lambda^(T-1-t)`` for chunk length T (cached at inference)."""
        key = (length, self.a_real.dtype, self.a_real.device, *(p._version for p in self.parameters()))
        cacheable = not torch.is_grad_enabled()
        if cacheable and key in self._stream_cache:
            return self._stream_cache[key]
        decay, freq, dt = self.discretised()
        device = decay.device
        lam_chunk = complex_powers(decay, freq, torch.tensor([length], device=device))[..., 0]
        free = complex_powers(decay, freq, torch.arange(1, length + 1, device=device))
        feed = dt[..., None] * complex_powers(decay, freq, torch.arange(length - 1, -1, -1, device=device))
        tables = (lam_chunk, free, feed)
        if cacheable:
            self._remember(key, tables)
        return tables
