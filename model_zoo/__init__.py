"""Centaurus Speech model zoo: state-space layers, the task networks and their checkpoints (pure torch)."""

from .card import ModelCard
from .checkpoint import CheckpointError, list_models, load
from .ssm import LiquidS4Layer, LSSLLayer, SSMLayer

__all__ = ["SSMLayer", "LSSLLayer", "LiquidS4Layer", "load", "list_models", "CheckpointError", "ModelCard"]
