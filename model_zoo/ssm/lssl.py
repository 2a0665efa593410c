"""LSSL: the linear state-space layer with a dense HiPPO-LegS state matrix (Gu et al., NeurIPS 2021).

Per input channel h (H = C_in single-input single-output copies, each with its own step dt_h)::

    x' = A x + B u,       A[n, k] = -sqrt(2n+1) sqrt(2k+1) (n > k),  -(n+1) (n = k),  0 (n < k)
                          B[n] = sqrt(2n+1)
    Abar = (I - dt/2 A)^-1 (I + dt/2 A),    Bbar = (I - dt/2 A)^-1 dt B        (bilinear)
    x_t = Abar x_{t-1} + Bbar u_t,          y_t = C x_t + D u_t
    K = C [Bbar, Abar Bbar, ..., Abar^(L-1) Bbar],   y = causal_conv(K, u) + D u

followed by a 1x1 channel mixer (C_in -> C_out). The Krylov matrix is built by repeated squaring (see
:mod:`._legs`), never by L sequential products, and LegS is never diagonalised.

Trainable: log dt (initialised log-uniform in [dt_min, dt_max]), C, D, the mixer, and A (dense, initialised
to LegS) when ``learn_a=True``; otherwise A stays LegS (the paper's LSSL-f freezes dt too; here dt always
trains). ``log_dt`` and ``A`` belong in the low-learning-rate group (:data:`SENSITIVE_PARAMETERS`).

C is 1 x N per channel (the paper's M = 1): mixing across channels is left to the 1x1 mixer.

Cost of the kernel: O(H (N^3 log L + N^2 sqrt(L) + N L)) time, O(H (N sqrt(L) + L)) memory. Streaming
(``init_state``/``step``) carries the dense state (B, H, N) and is exact; a chunk of T samples costs
O(H N (N + T)) plus an FFT of length ~2T once its operators are cached (grad off, parameters unchanged).
"""

from __future__ import annotations

from torch import Tensor

from ._legs import SENSITIVE_PARAMETERS, LegSLayerBase

__all__ = ["LSSLLayer", "SENSITIVE_PARAMETERS"]


class LSSLLayer(LegSLayerBase):
    """LSSL layer used like ``nn.Conv1d(in_channels, out_channels, 1)`` but causal with SSM memory.

    Args:
        in_channels: C_in = H, one SSM per channel.
        out_channels: C_out of the 1x1 mixer.
        state_dim: N, the LegS state size.
        dt_min, dt_max: range of the log-uniform initial step per channel.
        learn_a: make the dense A trainable (initialised to LegS, shared by the channels).
        bias: bias in the mixer.
    """

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, C_in, L)`` -> ``(B, C_out, L)``, the whole clip from a zero state."""
        return self._forward(x)

    def init_state(self, batch_size: int, device=None, dtype=None) -> tuple[Tensor, ...]:
        """``(x,)`` with the zero SSM state ``x (B, C_in, N)``; dtype defaults to the parameters'."""
        return super().init_state(batch_size, device, dtype)

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Next chunk: x ``(B, C_in, T)``, any T >= 1, and the state -> y ``(B, C_out, T)`` and the new state.

        Concatenated chunk outputs equal :meth:`forward` on the whole clip; the cost depends on T only.
        """
        return self._step(x, state)
