"""State-space layers: Centaurus (five connection modes), LSSL and Liquid-S4, all ``(B, C_in, L) -> (B, C_out, L)``
with the same streaming interface (``init_state``, ``step``)."""

from __future__ import annotations

from torch import nn

from .centaurus import SSMLayer
from .liquid_s4 import LiquidS4Layer
from .lssl import LSSLLayer
from .sensitive import SENSITIVE_PARAMETERS

__all__ = ["SSMLayer", "LSSLLayer", "LiquidS4Layer", "LAYER_TYPES", "build_layer", "SENSITIVE_PARAMETERS"]

LAYER_TYPES: dict[str, type[nn.Module]] = {"centaurus": SSMLayer, "lssl": LSSLLayer, "liquid_s4": LiquidS4Layer}


def build_layer(kind: str, in_channels: int, out_channels: int, state_dim: int, **options) -> nn.Module:
    """A layer of type ``kind`` (one of ``LAYER_TYPES``)."""
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}; expected one of {sorted(LAYER_TYPES)}")
    return LAYER_TYPES[kind](in_channels, out_channels, state_dim, **options)
