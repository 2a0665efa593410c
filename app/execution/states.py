"""Batching streaming states: stack the states of several sessions into one batch and split them again.

A model's streaming state is a nested structure (lists, tuples, dicts) of tensors whose first dimension is
the batch, with ``None`` for stateless blocks. Sessions can share one ``step`` call when their chunks have the
same length and their states the same :func:`signature` (shapes past the batch dimension, e.g. the same number
of samples pending in a downsampling buffer).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["signature", "stack", "split"]


def signature(state: Any) -> Any:
    """A hashable description of the structure and per-item shapes of ``state``."""
    if isinstance(state, torch.Tensor):
        return ("T", tuple(state.shape[1:]), state.dtype)
    if isinstance(state, dict):
        return ("D", tuple((k, signature(v)) for k, v in state.items()))
    if isinstance(state, (list, tuple)):
        return ("L", type(state).__name__, tuple(signature(v) for v in state))
    return ("V", repr(state))


def stack(states: list[Any]) -> Any:
    """States of batch size b_i with equal signatures -> one state of batch size sum(b_i)."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(states, dim=0)
    if isinstance(first, dict):
        return {k: stack([s[k] for s in states]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(stack([s[i] for s in states]) for i in range(len(first)))
    return first


def split(state: Any, sizes: list[int]) -> list[Any]:
    """Inverse of :func:`stack`: one state per entry of ``sizes`` (their batch sizes)."""
    if isinstance(state, torch.Tensor):
        return list(torch.split(state, sizes, dim=0))
    if isinstance(state, dict):
        parts = {k: split(v, sizes) for k, v in state.items()}
        return [{k: parts[k][i] for k in state} for i in range(len(sizes))]
    if isinstance(state, (list, tuple)):
        parts = [split(v, sizes) for v in state]
        return [type(state)(p[i] for p in parts) for i in range(len(sizes))]
    return [state for _ in sizes]
