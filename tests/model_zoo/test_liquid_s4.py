"""Liquid-S4 (PB, causal) against a plain step-by-step recurrence written here from the module's equations:
z_p[t] = u_t u_{t-1} ... u_{t-p+1}, x_t = Abar x_{t-1} + Bbar u_t + sum_p c_p Bbar^p z_p[t], y_t = C x_t + D u_t."""

from __future__ import annotations

import math
import random

import pytest
import torch

from model_zoo.ssm.liquid_s4 import LiquidS4Layer
from model_zoo.ssm.lssl import LSSLLayer
from ssm_testkit import bilinear_legs, chunked, grads, mix, one_thread, random_split, rel  # noqa: F401 (one_thread is a fixture)

B, C_IN, C_OUT, N, L = 2, 3, 4, 8, 50


def recurrence(layer: LiquidS4Layer, x: torch.Tensor) -> torch.Tensor:
    """One time step at a time, with the products of the last p inputs formed from x directly."""
    abar, bbar = bilinear_legs(layer, x.dtype)
    s = x.new_zeros(x.shape[0], layer.in_channels, layer.state_dim)
    ys = []
    for t in range(x.shape[-1]):
        drive = bbar * x[:, :, t, None]
        for p in range(2, layer.order + 1):
            if t - p + 1 < 0:  # the window reaches before the clip: the product is zero
                continue
            z = torch.ones_like(x[:, :, t])
            for i in range(p):
                z = z * x[:, :, t - i]
            drive = drive + layer.coef[p - 2][:, None] * bbar**p * z[..., None]
        s = torch.einsum("hmn,bhn->bhm", abar, s) + drive
        ys.append((s * layer.C).sum(-1) + layer.D * x[:, :, t])
    return mix(layer, torch.stack(ys, dim=-1))


def make(order: int, seed: int, learn_a: bool = False, **kw) -> LiquidS4Layer:
    torch.manual_seed(seed)
    layer = LiquidS4Layer(C_IN, C_OUT, N, order=order, learn_a=learn_a, dt_min=0.05, dt_max=0.5, **kw)
    with torch.no_grad():  # away from the initial 1 so that a swapped coefficient would show
        layer.coef.copy_(torch.randn_like(layer.coef))
    return layer


@pytest.mark.parametrize("order, learn_a", [(2, False), (3, False), (4, True)])
def test_forward_and_gradients_match_recurrence(order: int, learn_a: bool) -> None:
    layer = make(order, order, learn_a).double()
    x = torch.randn(B, C_IN, L, dtype=torch.float64)
    g = torch.randn(B, C_OUT, L, dtype=torch.float64)
    want = recurrence(layer, x)
    assert rel(layer(x), want) < 1e-10
    # the correlation terms must matter, or this test could not see them
    with torch.no_grad():
        linear = LSSLLayer(C_IN, C_OUT, N, learn_a=learn_a).double()
        linear.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "coef"})
        assert rel(linear(x), want) > 1e-4
    got, expected = grads(layer, layer, x, g), grads(layer, lambda v: recurrence(layer, v), x, g)
    names = ["input"] + [n for n, _ in layer.named_parameters()]
    assert "coef" in names and len(got) == len(expected) == len(names)
    for name, a, b in zip(names, got, expected):
        assert rel(a, b) < 1e-10, name


def test_order_one_is_lssl() -> None:
    layer = make(1, 7).double()
    assert layer.coef.shape == (0, C_IN)
    linear = LSSLLayer(C_IN, C_OUT, N).double()
    linear.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "coef"})
    x = torch.randn(B, C_IN, 40, dtype=torch.float64)
    assert rel(layer(x), linear(x)) < 1e-13


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_streaming_equals_forward(dtype: torch.dtype, tol: float, order: int) -> None:
    rng = random.Random(order)
    layer = make(order, 10 + order).to(dtype)
    x = torch.randn(B, C_IN, 120, dtype=dtype)
    whole = layer(x)
    splits = [[1] * 30 + [90], random_split(120, rng, 4), random_split(120, rng, 50), [2, 1, 117], [120]]
    for sizes in splits:
        assert rel(chunked(layer, x, sizes), whole) < tol
        with torch.no_grad():
            assert rel(chunked(layer, x, sizes), whole) < tol


def test_state_shapes_and_dtypes() -> None:
    layer = LiquidS4Layer(C_IN, C_OUT, N, order=3)
    state = layer.init_state(5)
    assert [tuple(s.shape) for s in state] == [(5, C_IN, N), (5, C_IN, 2)]
    assert all(s.dtype == torch.float32 for s in state)
    assert all(s.dtype == torch.float64 for s in layer.init_state(1, dtype=torch.float64))
    x = torch.randn(B, C_IN, 9)
    y, new = layer.step(x[..., :1], layer.init_state(B))
    assert y.shape == (B, C_OUT, 1) and [s.shape for s in new] == [(B, C_IN, N), (B, C_IN, 2)]
    assert torch.equal(new[1][..., -1], x[..., 0]) and torch.equal(new[1][..., 0], torch.zeros(B, C_IN))
    assert layer(x).shape == (B, C_OUT, 9) and layer(x).dtype == torch.float32
    layer.double()
    assert layer(x.double()).dtype == torch.float64
    with pytest.raises(ValueError):
        LiquidS4Layer(C_IN, C_OUT, N, order=0)


def test_coefficients_get_gradients() -> None:
    torch.manual_seed(8)
    layer = LiquidS4Layer(C_IN, C_OUT, N, order=3, dt_min=0.05, dt_max=0.5)
    assert isinstance(layer.coef, torch.nn.Parameter) and layer.coef.requires_grad
    layer(torch.randn(B, C_IN, 30)).square().sum().backward()
    assert layer.coef.grad is not None and bool((layer.coef.grad != 0).all())


def test_causal() -> None:
    layer = make(3, 9).double()
    x = torch.randn(B, C_IN, 60, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 2, 30] += 1.0
    y, y2 = layer(x), layer(x2)
    assert (y[..., :30] - y2[..., :30]).abs().max() < 1e-12
    assert (y[..., 30:] - y2[..., 30:]).abs().max() > 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    layer = make(3, 11, learn_a=True).double()
    x = torch.randn(B, C_IN, 100, dtype=torch.float64)
    want = layer(x)
    layer.cuda()
    xc = x.cuda()
    assert rel(layer(xc).cpu(), want) < 1e-9
    assert rel(chunked(layer, xc, [1, 1, 20, 78]).cpu(), want) < 1e-9
    layer.float()
    with torch.no_grad():
        assert rel(chunked(layer, xc.float(), [33, 33, 34]).double().cpu(), want) < 1e-4
