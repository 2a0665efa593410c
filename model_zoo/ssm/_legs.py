"""Shared machinery of the dense HiPPO-LegS layers (:mod:`.lssl`, :mod:`.liquid_s4`).

Per input channel h (H = C_in copies) a linear SSM with a dense state of size N and Q input columns::

    x_t = Abar_h x_{t-1} + Bq_h v_t,        v_t in R^Q (column 0 is the input u itself)
    y_t = C_h x_t + D_h u_t,                 then a 1x1 channel mixer H -> C_out

``Abar, Bbar`` come from the LegS pair (A, B) and a per-channel step dt by the bilinear transform; the
subclass says how ``Bq`` is built from ``Bbar`` (``_input_matrix``) and how ``v`` is built from ``u``
(``_drive``, which may carry a little memory of past inputs across chunks).

Whole clip: ``y = sum_q K_q * v_q + D u`` with ``K[q, l] = C Abar^l Bq[:, q]``. The Krylov matrix is built by
repeated squaring in two levels, ``C Abar^(L1 i + j) Bq = (C (Abar^L1)^i) (Abar^j Bq)`` with L1 ~ sqrt(L), so
the memory is O(H N sqrt(L) + H Q L) instead of the O(H N L) of one Krylov matrix of length L.
LegS is never diagonalised: its eigenvectors are exponentially ill-conditioned.

Chunk of length T with carried state x (exact for any split of a clip)::

    y_t = (K[:T] * v)_t + C Abar^(t+1) x + D u_t,   x <- Abar^T x + sum_s Abar^(T-1-s) Bq v_s
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from .cache import DerivedCache
from .fftconv import fft_length, irfft_time, rfft_time
from .sensitive import SENSITIVE_PARAMETERS

__all__ = ["legs_matrices", "bilinear", "krylov", "krylov_kernel", "LegSLayerBase", "SENSITIVE_PARAMETERS"]

_MAX_CACHED_LENGTHS = 8


@functools.lru_cache(maxsize=32)
def legs_matrices(state_dim: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """HiPPO-LegS ``(A (N, N), B (N,))`` for ``x' = A x + B u``; built in float64, then cast (cached)."""
    with torch.inference_mode(False):  # a cached inference tensor could never enter autograd later
        q = torch.sqrt(2 * torch.arange(state_dim, dtype=torch.float64) + 1)
        a = -torch.tril(q[:, None] * q[None, :], diagonal=-1)
        a = a - torch.diag(torch.arange(1, state_dim + 1, dtype=torch.float64))
        return a.to(device=device, dtype=dtype), q.to(device=device, dtype=dtype)


def bilinear(a: Tensor, b: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear (Tustin) discretisation per channel: A (N, N), B (N,), dt (H,) -> Abar (H, N, N), Bbar (H, N).

    ``Abar = (I - dt/2 A)^-1 (I + dt/2 A)``, ``Bbar = (I - dt/2 A)^-1 dt B``, both from one solve.
    """
    n = a.shape[-1]
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    half = (dt / 2)[:, None, None]
    rhs = torch.cat([eye + half * a, (dt[:, None] * b)[..., None]], dim=-1)
    sol = torch.linalg.solve(eye - half * a, rhs)
    return sol[..., :n], sol[..., n]


def krylov(m: Tensor, b: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """``[b, m b, ..., m^(length-1) b]`` by repeated squaring, and ``m^P`` (P = length rounded up to 2^k).

    m: (..., N, N), b: (..., N, Q) -> (..., N, length, Q) and (..., N, N). Costs log2(length) products.
    """
    cols = b  # (..., N, filled * Q), column j * Q + q holds m^j b[:, q]
    power, filled = m, 1
    while filled < length:
        cols = torch.cat([cols, power @ cols], dim=-1)
        power, filled = power @ power, 2 * filled
    cols = cols.unflatten(-1, (filled, b.shape[-1]))[..., :length, :]
    return cols, power


def krylov_kernel(abar: Tensor, bq: Tensor, c: Tensor, length: int) -> Tensor:
    """``K[..., q, l] = c Abar^l bq[:, q]``: Abar (..., N, N), bq (..., N, Q), c (..., N) -> (..., Q, length)."""
    inner = 1 << max(0, math.ceil(math.log2(max(length, 1)) / 2))  # L1, a power of two near sqrt(L)
    outer = -(-length // inner)
    cols, abar_inner = krylov(abar, bq, inner)  # Abar^j bq, j < L1; and Abar^L1
    rows, _ = krylov(abar_inner.mT, c[..., None], outer)  # (c (Abar^L1)^i)^T, i < L2
    k = torch.einsum("...ni,...njq->...qij", rows[..., 0], cols)
    return k.flatten(-2)[..., :length]


class LegSLayerBase(nn.Module):
    """Parameters, whole-clip and chunked evaluation shared by the LegS layers; subclasses add the drive.

    Args: as :class:`model_zoo.ssm.lssl.LSSLLayer`.
    """

    def __init__(
        self, in_channels: int, out_channels: int, state_dim: int = 64, *, dt_min: float = 1e-3,
        dt_max: float = 1e-1, learn_a: bool = False, bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.state_dim = in_channels, out_channels, state_dim
        self.learn_a = learn_a
        u = torch.rand(in_channels)
        self.log_dt = nn.Parameter(math.log(dt_min) + u * (math.log(dt_max) - math.log(dt_min)))
        # Standard normal as in S4: a smooth unit-variance input then gives a unit-variance output (a constant
        # input excites only the first LegS state, so a 1/sqrt(N) scale would shrink DC by sqrt(N)).
        self.C = nn.Parameter(torch.randn(in_channels, state_dim))
        self.D = nn.Parameter(torch.randn(in_channels))
        a_init = legs_matrices(state_dim, torch.float64, torch.device("cpu"))[0]
        self.register_parameter("A", nn.Parameter(a_init.to(torch.get_default_dtype())) if learn_a else None)
        self.mixer = nn.Conv1d(in_channels, out_channels, 1, bias=bias)
        # The chunk operators per chunk length, while no gradient is wanted (model_zoo.ssm.cache).
        self._ops_cache = DerivedCache(_MAX_CACHED_LENGTHS)

    def _apply(self, fn, *args, **kwargs):
        # .to(), .half(), .cuda(): the cached operators would only hold the old copies alive (they rebuild anyway).
        self._ops_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    # ---- hooks for the subclasses ----------------------------------------------------------------------------
    def _input_matrix(self, bbar: Tensor) -> Tensor:
        """Bq (H, N, Q) from Bbar (H, N)."""
        return bbar[..., None]

    def _drive(self, u: Tensor, memory: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """u (B, H, T) and the carried memory -> v (B, H, Q, T) and the new memory."""
        return u[:, :, None], memory

    def _init_memory(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
        return ()

    # ---- discretisation ---------------------------------------------------------------------------------------
    def state_matrices(self) -> tuple[Tensor, Tensor]:
        """The continuous ``A (N, N)`` and ``B (N,)``, in the parameters' dtype and device."""
        ref = self.C
        a, b = legs_matrices(self.state_dim, ref.dtype, ref.device)
        return (a if self.A is None else self.A), b

    def discretised(self) -> tuple[Tensor, Tensor]:
        """``Abar (H, N, N)`` and ``Bq (H, N, Q)``."""
        a, b = self.state_matrices()
        abar, bbar = bilinear(a, b, torch.exp(self.log_dt))
        return abar, self._input_matrix(bbar)

    def kernel(self, length: int) -> Tensor:
        """Convolution kernel ``K (H, Q, length)``, ``K[h, q, l] = C_h Abar_h^l Bq_h[:, q]``."""
        abar, bq = self.discretised()
        return krylov_kernel(abar, bq, self.C, length)

    # ---- evaluation -------------------------------------------------------------------------------------------
    def _forward(self, x: Tensor) -> Tensor:
        batch, _, length = x.shape
        # Autocast would run the matrix powers in half precision, ruining the slowly decaying kernel: the SSM
        # runs in the parameters' dtype, autocast keeps the mixer.
        with torch.autocast(x.device.type, enabled=False):
            u = x.to(self.C.dtype)
            v, _ = self._drive(u, self._init_memory(batch, u.device, u.dtype))
            n_fft = fft_length(length)
            spectrum = (rfft_time(v, n_fft) * rfft_time(self.kernel(length), n_fft)).sum(-2)
            y = irfft_time(spectrum, n_fft, length) + self.D[:, None] * u
        return self.mixer(y)

    def init_state(self, batch_size: int, device=None, dtype=None) -> tuple[Tensor, ...]:
        """Zero state: ``x (B, C_in, N)`` followed by the drive's memory (batch first in every tensor)."""
        device = self.C.device if device is None else device
        dtype = self.C.dtype if dtype is None else dtype
        x = torch.zeros(batch_size, self.in_channels, self.state_dim, device=device, dtype=dtype)
        return (x, *self._init_memory(batch_size, device, dtype))

    def _step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        length = x.shape[-1]
        carried, *memory = state
        dtype = self.C.dtype
        with torch.autocast(x.device.type, enabled=False):  # as in _forward
            u = x.to(dtype)
            v, memory = self._drive(u, tuple(m.to(dtype) for m in memory))
            k_hat, free_rows, to_state, abar_t = self._chunk_operators(length)
            n_fft = fft_length(length)
            s = carried.to(dtype)
            y = irfft_time((rfft_time(v, n_fft) * k_hat).sum(-2), n_fft, length) + self.D[:, None] * u
            y = y + torch.einsum("hnt,bhn->bht", free_rows, s)  # free response of the carried state
            drive = v.transpose(-1, -2).flatten(-2)  # (B, H, T Q), index s Q + q
            s = torch.einsum("hmn,bhn->bhm", abar_t, s) + torch.einsum("hnk,bhk->bhn", to_state, drive)
        new_state = (s.to(carried.dtype), *(m.to(old.dtype) for m, old in zip(memory, state[1:])))
        return self.mixer(y), new_state

    def _chunk_operators(self, length: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For chunk length T: the spectrum of ``K[:T]`` (H, Q, F), ``C Abar^(t+1)`` as (H, N, T),
        ``Abar^(T-1-s) Bq[:, q]`` as (H, N, T Q) (column s Q + q) and ``Abar^T`` (H, N, N).
        Cached while no gradient is wanted and the parameters are unchanged."""
        def operators() -> tuple[Tensor, Tensor, Tensor, Tensor]:
            abar, bq = self.discretised()
            cols, _ = krylov(abar, bq, length)  # Abar^s Bq: (H, N, T, Q)
            k = torch.einsum("hn,hntq->hqt", self.C, cols)
            free_rows, _ = krylov(abar.mT, (self.C[:, None, :] @ abar).mT, length)  # (C Abar^(t+1))^T
            to_state = cols.flip(-2).flatten(-2).contiguous()
            return (rfft_time(k, fft_length(length)), free_rows[..., 0], to_state,
                    torch.linalg.matrix_power(abar, length))

        params = tuple(self.parameters())
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return operators()  # operators that carry gradients
        return self._ops_cache.get(params, length, operators)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, state_dim={self.state_dim}, learn_a={self.learn_a}"
