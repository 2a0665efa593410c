"""Liquid-S4 (Hasani et al., ICLR 2023), PB variant with a causal correlation term, on a dense LegS state.

The liquid SSM lets the input modulate the transition (the paper's form, with the input-dependent part acting
elementwise as in its diagonal setting)::

    x_t = (Abar + diag(Bbar) u_t) x_{t-1} + Bbar u_t,     y_t = C x_t + D u_t

Unrolled, the p-th order terms are products of p inputs. Pick the p *consecutive* samples ending at time j,
``z_p[j] = u_j u_{j-1} ... u_{j-p+1}``: the input enters at j-p+1 through Bbar, the next p-1 steps take the
liquid factor diag(Bbar) u instead of Abar, the remaining t-j steps take Abar. That term is exactly::

    C Abar^(t-j) diag(Bbar)^(p-1) Bbar z_p[j] = C Abar^(t-j) Bbar^p z_p[j]       (Bbar^p elementwise)

This layer keeps the linear part and these consecutive-window terms for p = 2..P (``order``), each with a
trainable coefficient ``c_{p,h}`` per channel (initialised to 1, the value in the unroll)::

    z_p[t] = prod_{i=0..p-1} u_{t-i}            (u_s = 0 for s < 0: zero until p samples have been seen)
    x_t    = Abar x_{t-1} + Bbar u_t + sum_{p=2..P} c_p Bbar^p z_p[t]
    y_t    = C x_t + D u_t
    i.e.  y = K * u + sum_{p=2..P} Kliquid_p * z_p + D u,   K[l] = C Abar^l Bbar,
          Kliquid_p[l] = c_p C Abar^l Bbar^p

then the 1x1 channel mixer (C_in -> C_out). A, B, dt and the bilinear discretisation are those of
:mod:`.lssl` (dense HiPPO-LegS, never diagonalised); the kernels come from one Krylov matrix with P columns.

Relation to the paper's PB kernel ``Kliquid_p = C Bbar^p`` and where this deviates:

* PB sets Abar = I inside the correlation terms. For a window of consecutive samples the powers of Abar
  between the factors are Abar^0 = I, so here that simplification is exact rather than an approximation;
  products of non-adjacent samples (which would need it) are left out.
* The readout decay Abar^l is kept: ``Kliquid_p[0] = c_p C Bbar^p`` is the PB value, later lags decay like
  the linear kernel. With Abar = I there too the kernel would be constant in l, an integrator of u^p that
  grows without bound over an endless stream.
* Causal: the reference code forms the products from the *last* samples of the clip and flips them, so every
  output depends on the end of the clip; here z_p[t] uses only u_t and the p-1 samples before it.
* The coefficients are ``nn.Parameter`` s that train; in the reference they are plain attributes holding
  their initial values, so they never receive a gradient.

Streaming is exact: the state is the SSM state and a ring buffer of the last P-1 inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._legs import SENSITIVE_PARAMETERS, LegSLayerBase

__all__ = ["LiquidS4Layer", "SENSITIVE_PARAMETERS"]


class LiquidS4Layer(LegSLayerBase):
    """Liquid-S4 (PB, causal) layer used like ``nn.Conv1d(in_channels, out_channels, 1)``, causal.

    Args:
        in_channels: C_in = H, one SSM per channel.
        out_channels: C_out of the 1x1 mixer.
        state_dim: N, the LegS state size.
        order: P, highest order of the correlation terms (1 gives the plain LegS layer).
        dt_min, dt_max: range of the log-uniform initial step per channel.
        learn_a: make the dense A trainable (initialised to LegS, shared by the channels).
        bias: bias in the mixer.
    """

    def __init__(
        self, in_channels: int, out_channels: int, state_dim: int = 64, *, order: int = 2, dt_min: float = 1e-3,
        dt_max: float = 1e-1, learn_a: bool = False, bias: bool = True,
    ) -> None:
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        super().__init__(
            in_channels, out_channels, state_dim, dt_min=dt_min, dt_max=dt_max, learn_a=learn_a, bias=bias
        )
        self.order = order
        # coef[p - 2, h] = c_{p,h}; 1 is the coefficient of the consecutive-window term in the exact unroll.
        self.coef = nn.Parameter(torch.ones(order - 1, in_channels))

    def _input_matrix(self, bbar: Tensor) -> Tensor:
        """Bq (H, N, P): column 0 is Bbar, column p-1 is c_p Bbar^p (elementwise power)."""
        columns = [bbar] + [self.coef[p - 2][:, None] * bbar**p for p in range(2, self.order + 1)]
        return torch.stack(columns, dim=-1)

    def _drive(self, u: Tensor, memory: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """u (B, H, T) and the ring buffer (B, H, P-1) -> v = [u, z_2, ..., z_P] (B, H, P, T), the new buffer."""
        lag = self.order - 1
        length = u.shape[-1]
        padded = torch.cat([memory[0].to(u.dtype), u], dim=-1)  # padded[..., lag + t] = u_t
        columns, product = [u], u
        for p in range(2, self.order + 1):
            product = product * padded[..., lag - p + 1 : lag - p + 1 + length]  # times u_{t-p+1}
            columns.append(product)
        return torch.stack(columns, dim=2), (padded[..., padded.shape[-1] - lag :],)

    def _init_memory(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
        return (torch.zeros(batch_size, self.in_channels, self.order - 1, device=device, dtype=dtype),)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, C_in, L)`` -> ``(B, C_out, L)``, the whole clip from a zero state."""
        return self._forward(x)

    def init_state(self, batch_size: int, device=None, dtype=None) -> tuple[Tensor, ...]:
        """``(x, ring)``: zero SSM state ``x (B, C_in, N)`` and the last inputs ``ring (B, C_in, order - 1)``
        (oldest first); dtype defaults to the parameters'."""
        return super().init_state(batch_size, device, dtype)

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Next chunk: x ``(B, C_in, T)``, any T >= 1, and the state -> y ``(B, C_out, T)`` and the new state.

        Concatenated chunk outputs equal :meth:`forward` on the whole clip; the cost depends on T only.
        """
        return self._step(x, state)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, order={self.order}"
