"""Helpers shared by the LSSL and Liquid-S4 tests: the LegS matrices written from the paper, error measures,
chunked streaming and random splits."""

from __future__ import annotations

import math
import random

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: thread start-up and contention would cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def legs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS for x' = A x + B u, entry by entry from the formula."""
    a = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for k in range(n):
            if i > k:
                a[i, k] = -math.sqrt(2 * i + 1) * math.sqrt(2 * k + 1)
            elif i == k:
                a[i, k] = -(i + 1)
    b = torch.tensor([math.sqrt(2 * i + 1) for i in range(n)], dtype=torch.float64)
    return a, b


def bilinear_legs(layer, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The LegS layers' discretisation, per channel h: ``Abar = (I - dt/2 A)^-1 (I + dt/2 A)`` and
    ``Bbar = (I - dt/2 A)^-1 dt B``, with the layer's own A when it learns one: ``(H, N, N)`` and ``(H, N)``."""
    a, b = legs(layer.state_dim)
    a = (layer.A if layer.A is not None else a).to(dtype)
    b = b.to(dtype)
    eye = torch.eye(layer.state_dim, dtype=dtype)
    dt = torch.exp(layer.log_dt)
    abar, bbar = [], []
    for h in range(layer.in_channels):
        inv = torch.linalg.inv(eye - dt[h] / 2 * a)
        abar.append(inv @ (eye + dt[h] / 2 * a))
        bbar.append(inv @ (dt[h] * b))
    return torch.stack(abar), torch.stack(bbar)


def mix(layer, y: torch.Tensor) -> torch.Tensor:
    """The LegS layers' 1x1 mixer on the SSM outputs ``y (B, H, L)``."""
    out = torch.einsum("oh,bht->bot", layer.mixer.weight[:, :, 0], y)
    return out if layer.mixer.bias is None else out + layer.mixer.bias[:, None]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def grads(layer: torch.nn.Module, fn, x: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    layer.zero_grad()
    x = x.clone().requires_grad_(True)
    (fn(x) * g).sum().backward()
    return [x.grad] + [p.grad.clone() for p in layer.parameters()]


def chunked(layer, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    state, outs, start = layer.init_state(x.shape[0]), [], 0
    for size in sizes:
        y, state = layer.step(x[..., start : start + size], state)
        outs.append(y)
        start += size
    assert start == x.shape[-1]
    return torch.cat(outs, dim=-1)


def random_split(length: int, rng: random.Random, max_chunk: int) -> list[int]:
    sizes = []
    while sum(sizes) < length:
        sizes.append(min(rng.randint(1, max_chunk), length - sum(sizes)))
    return sizes
