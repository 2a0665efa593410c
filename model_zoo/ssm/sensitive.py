"""The "sensitive" parameters of every SSM layer here, by the last component of their names.

They set the dynamics (where the poles sit and how fast the state moves), so a step that suits the other
weights can throw them far off: :mod:`training.trainer` gives them a lower learning rate and no weight decay,
as the S4 family and the Centaurus paper do. Centaurus: ``a_real``, ``a_imag`` (the diagonal A) and ``log_dt``;
LSSL and Liquid-S4: ``log_dt`` and ``A`` (the dense LegS matrix, when ``learn_a``).
"""

from __future__ import annotations

__all__ = ["SENSITIVE_PARAMETERS"]

SENSITIVE_PARAMETERS: tuple[str, ...] = ("a_real", "a_imag", "log_dt", "A")
