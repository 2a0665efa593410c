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
Basis steps stay lazy (:class:`LazyBasis`) until a step needs the kernel in the time domain.

Streaming (``init_state``/``step``) carries the complex state as a real tensor (Re and Im interleaved in a
trailing axis of 2) and is exact: concatenated chunk outputs equal ``forward`` on the whole clip. At inference a
short chunk of the dws, s5 and neck modes is one product with a cached real block matrix
(:mod:`model_zoo.ssm.block_step`); otherwise the chunk's own response comes from the layer's impulse response,
cached as a spectrum per chunk length. What the step caches is rebuilt whenever a parameter changes, by the one
rule of :mod:`model_zoo.ssm.cache`.

The modes' tensor networks and the way each pairwise step runs are in :mod:`model_zoo.ssm.contraction`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .basis import complex_powers
from .block_step import BLOCK_MODES, BLOCK_STEP_ELEMENTS, BlockOperators, block_operators, block_step
from .cache import DerivedCache
from .contraction import LazyBasis, aligned_bias, materialised, mode_spec, result_indices, scan_product, time_product
from .fftconv import fft_contract, fft_length, irfft_time, rfft_time
from .planner import TIME, ContractionPlan, enumerate_plans, plan_contraction
from .sensitive import SENSITIVE_PARAMETERS

__all__ = ["SSMLayer", "MODES", "SENSITIVE_PARAMETERS", "TRAINING_SCAN_MIN_LENGTH"]

MODES = ("dws", "s5", "neck", "full", "group")
# Training sequences this long or longer convolve by whichever of scan and FFT is cheaper, shorter ones by FFT.
# Forward+backward, batch 8, 64 channels, one thread, FFT vs scan (bench/README.md, "Training path"): at 1000
# steps dws 19 vs 31 ms and neck 3.3 vs 4.9 ms (s5 26 vs 15); at 4000 dws 129 vs 99, s5 88 vs 57, neck 20 vs 20;
# at 16000 dws 479 vs 227, s5 549 vs 230, neck 44 vs 45. Our networks train at frame rate, under 1000 steps (the
# recognizer's layers see 999 at 30 s of audio, the denoiser's 1000 at its 1 s segments).
TRAINING_SCAN_MIN_LENGTH = 4000
# Entries of the step cache: a few chunk lengths are in use at a time, each with up to three kinds of entry.
_STEP_CACHE_ENTRIES = 16


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
        self.spec = mode_spec(mode)
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
        # What the inference step derives from the parameters, per chunk length (module docstring).
        self._step_cache = DerivedCache(_STEP_CACHE_ENTRIES)

    # ---- shapes and parameters -------------------------------------------------------------------------------
    def _shape(self, indices: str) -> tuple[int, ...]:
        return tuple(self.sizes[c] for c in indices)

    def _aligned(self, tensor: Tensor, src: str, dst: str) -> Tensor:
        """View ``tensor`` (indices ``src``) with indices ``dst`` (a superset), broadcasting missing ones."""
        perm = [src.index(c) for c in dst if c in src]
        view = tensor.permute(perm)
        shape = [self.sizes[c] if c in src else 1 for c in dst]
        return view.reshape(shape).expand([self.sizes[c] for c in dst])

    def _sources(self) -> tuple[Tensor | None, ...]:
        """Every parameter, read straight from the parameter dicts (``nn.Module`` attribute lookup costs ~1 us
        a name, and the block step runs in tens of microseconds): what the step caches derive from."""
        return (*self._parameters.values(), *self.weights._parameters.values())

    def _apply(self, fn, *args, **kwargs):
        # .to(), .half(), .cuda(): the step caches would only hold the old copies alive (they rebuild anyway).
        self._step_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def discretised(self) -> tuple[Tensor, Tensor, Tensor]:
        """``Re(dt A)``, ``Im(dt A)`` and ``dt``, each with the state's shape."""
        dt = self._aligned(torch.exp(self.log_dt), self.spec.dt_shape, self.spec.state)
        decay = -nn.functional.softplus(self.a_real) * dt
        return decay, self.a_imag * dt, dt

    # ---- planning ----------------------------------------------------------------------------------------------
    def _sizes_for(self, batch: int, length: int) -> dict[str, int]:
        return {**self.sizes, "b": batch, TIME: length}

    def convolution_policy(self, length: int) -> str:
        """How the convolution step runs now (``planner.CONVOLUTIONS``): by FFT while training on sequences
        shorter than :data:`TRAINING_SCAN_MIN_LENGTH` (module in training mode with autograd on), else whichever of
        scan and FFT the cost model finds cheaper. The cost model counts forward FLOPs; backward through the scan's
        many small matrix products costs more than that at short lengths, which is where the FFT wins."""
        short = length < TRAINING_SCAN_MIN_LENGTH
        return "fft" if self.training and torch.is_grad_enabled() and short else "auto"

    def contraction_plan(self, batch: int, length: int, convolution: str | None = None) -> ContractionPlan:
        """The order chosen for this (batch, length), its steps and estimated cost (cached).
        ``convolution`` (``"auto"``, ``"fft"``, ``"scan"``) defaults to :meth:`convolution_policy`."""
        key = (batch, length, convolution or self.convolution_policy(length))
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
        return self._contract(u, plan, length).reshape(batch, self.out_channels, length)

    def _contract(self, u: Tensor, plan: ContractionPlan, length: int) -> Tensor:
        """The plan's steps, the output bias added by the last one (:func:`time_product` can fold it into its
        matmul) or after it."""
        net = self.spec.network
        bias = self.bias
        decay, freq, dt = self.discretised()
        operands: list[tuple[str, Tensor | LazyBasis | None, str]] = []
        for name, idx in zip(net.names, net.indices):
            tensor = u if name == "u" else None if name == "K" else self.weights[name]
            operands.append((name, tensor, idx))
        for (x_pos, y_pos), step in zip(plan.path, plan.steps):
            a, b = operands[x_pos], operands[y_pos]
            rest = [o for p, o in enumerate(operands) if p not in (x_pos, y_pos)]
            out = result_indices(a[2] + b[2], step.equation.split("->")[1], net.output)
            if step.kind == "basis":
                weight = b if a[0] == "K" else a
                tensor = self._basis(weight[1], weight[2], out, decay, freq, dt, length)
            elif step.kind in ("fft", "scan"):
                x_side, k_side = (a, b) if "u" in a[0] else (b, a)
                kernel = k_side[1]
                if kernel is None:  # the raw basis: one term per row, weighted by dt
                    kernel = self._basis(None, "", k_side[2], decay, freq, dt, length)
                if step.kind == "scan":
                    tensor = scan_product(x_side[2], k_side[2], out, x_side[1], kernel)
                else:
                    spec = ",".join(i.replace(TIME, "") for i in (x_side[2], k_side[2])) + "->" + out.replace(TIME, "")
                    # A lazy kernel is built zero-padded to the FFT length: no padding copy before the FFT.
                    kernel = kernel.materialise(fft_length(length)) if isinstance(kernel, LazyBasis) else kernel
                    tensor = fft_contract(spec, x_side[1], kernel, self.memory_limit)
            else:
                last = not rest
                tensor = time_product(a[2], b[2], out, materialised(a[1]), materialised(b[1]),
                                      bias=bias if last else None)
                bias = None if last else bias
            operands = rest + [(a[0] + b[0], tensor, out)]
        name, tensor, idx = operands[0]
        y = tensor.permute([idx.index(c) for c in net.output])
        if bias is not None:
            y = y + aligned_bias(bias, net.output, self.sizes)
        return y

    def _basis(
        self, weight: Tensor | None, weight_idx: str, out: str, decay: Tensor, freq: Tensor, dt: Tensor,
        length: int,
    ) -> LazyBasis:
        """``sum (weight * dt * Re(lambda^t))`` over the indices not in ``out`` (which ends with t), lazily."""
        state = self.spec.state
        kept = out.replace(TIME, "")
        full = kept + "".join(c for c in dict.fromkeys(weight_idx + state) if c not in kept)
        rows = math.prod(self._shape(kept))
        w = self._aligned(dt, state, full)
        if weight is not None:
            w = w * self._aligned(weight, weight_idx, full)
        decay, freq = (self._aligned(p, state, full).reshape(rows, -1) for p in (decay, freq))
        return LazyBasis(w.reshape(rows, -1), decay, freq, self._shape(kept), length)

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
        and neck modes take the block step (:mod:`model_zoo.ssm.block_step`: a handful of small products with
        cached matrices); otherwise, or when gradients are needed, the general path below, whose impulse
        response and power tables are cached at inference too. All three caches are one
        :class:`~model_zoo.ssm.cache.DerivedCache`, dropped whenever a parameter changes.
        """
        batch, _, length = x.shape
        if length == 0:
            return x.new_zeros(batch, self.out_channels, 0), state
        if not (torch.is_grad_enabled() and (x.requires_grad or self.a_real.requires_grad)):
            operators = self._block_operators(length, state.dtype, x.device)
            if operators is not None:
                return block_step(x, state, operators)
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
        once per chunk length (while the parameters are unchanged) by ``forward`` on unit impulses, is cached as a
        spectrum, and a chunk costs one rfft, one small product and one irfft instead of a basis, kernel FFTs and
        einsums.
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

        def impulse_spectrum() -> Tensor:  # (G, C_out/G, C_in/G, F)
            impulses = torch.zeros(self.in_channels, self.in_channels, length, dtype=x.dtype, device=x.device)
            impulses[:, :, 0] = torch.eye(self.in_channels, dtype=x.dtype, device=x.device)
            response = self.forward(impulses)  # (C_in, C_out, T): output channel for a unit impulse on each input
            if self.bias is not None:
                response = response - self.bias[:, None].to(x.dtype)
            # Keep each output group's own inputs: (g, i, g', j, T) on the diagonal g = g' -> (g, j, i, T).
            response = response.reshape(g, i, g, j, length).diagonal(dim1=0, dim2=2).permute(3, 1, 0, 2)
            return rfft_time(response, n_fft)

        key = ("impulse", length, x.dtype, x.device)
        response_hat = self._step_cache.get(self._sources(), key, impulse_spectrum)
        # Chunks are short: a broadcast product beats the transposes of a frequency-major bmm.
        x_hat = rfft_time(x.reshape(batch, g, 1, i, length), n_fft)
        spectrum = (x_hat * response_hat).sum(3)
        y = irfft_time(spectrum, n_fft, length).reshape(batch, self.out_channels, length)
        return y if self.bias is None else y + self.bias[:, None]

    # ---- the block step: short chunks at inference (model_zoo.ssm.block_step) --------------------------------------
    BLOCK_STEP_ELEMENTS = BLOCK_STEP_ELEMENTS

    def _block_operators(self, length: int, dtype: torch.dtype, device: torch.device) -> BlockOperators | None:
        """The cached operators of the block step for chunks of ``length`` (None where it does not apply: the
        full and group modes, or a matrix too big to cache), rebuilt when a parameter changes."""
        if self.mode not in BLOCK_MODES:
            return None
        return self._step_cache.get(self._sources(), ("block", length, dtype, device),
                                    lambda: block_operators(self, length, dtype, device))

    def _stream_tables(self, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """``lambda^T``, ``lambda^(t+1)`` and ``dt lambda^(T-1-t)`` for chunk length T (cached at inference)."""
        def tables() -> tuple[Tensor, Tensor, Tensor]:
            decay, freq, dt = self.discretised()
            device = decay.device
            lam_chunk = complex_powers(decay, freq, torch.tensor([length], device=device))[..., 0]
            free = complex_powers(decay, freq, torch.arange(1, length + 1, device=device))
            feed = dt[..., None] * complex_powers(decay, freq, torch.arange(length - 1, -1, -1, device=device))
            return lam_chunk, free, feed

        if torch.is_grad_enabled():  # the general step under autograd: tables that carry gradients
            return tables()
        return self._step_cache.get(self._sources(), ("tables", length), tables)
