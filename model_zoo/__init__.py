"""Centaurus Speech model zoo: state-space layers, the task networks and their checkpoints (pure torch)."""

from .ssm.centaurus import SSMLayer

__all__ = ["SSMLayer"]
