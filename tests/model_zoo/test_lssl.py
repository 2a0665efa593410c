"""LSSL against a plain step-by-step recurrence written here from the math; exact streaming; the kernel's
two-level Krylov construction against sequential powers."""

from __future__ import annotations

import math
import random

import pytest
import torch

from model_zoo.ssm._legs import krylov_kernel
from model_zoo.ssm.lssl import LSSLLayer
from ssm_testkit import bilinear_legs, chunked, grads, legs, mix, one_thread, random_split, rel  # noqa: F401 (one_thread is a fixture)

B, C_IN, C_OUT, N, L = 2, 3, 4, 8, 50


def recurrence(layer: LSSLLayer, x: torch.Tensor) -> torch.Tensor:
    """x_t = Abar x_{t-1} + Bbar u_t, y_t = C x_t + D u_t, then the 1x1 mixer, one time step at a time."""
    abar, bbar = bilinear_legs(layer, x.dtype)
    s = x.new_zeros(x.shape[0], layer.in_channels, layer.state_dim)
    ys = []
    for t in range(x.shape[-1]):
        s = torch.einsum("hmn,bhn->bhm", abar, s) + bbar * x[:, :, t, None]
        ys.append((s * layer.C).sum(-1) + layer.D * x[:, :, t])
    return mix(layer, torch.stack(ys, dim=-1))


@pytest.mark.parametrize("learn_a", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_recurrence(learn_a: bool, bias: bool) -> None:
    torch.manual_seed(0)
    layer = LSSLLayer(C_IN, C_OUT, N, learn_a=learn_a, bias=bias, dt_min=1e-2, dt_max=0.5).double()
    x = torch.randn(B, C_IN, L, dtype=torch.float64)
    g = torch.randn(B, C_OUT, L, dtype=torch.float64)
    assert rel(layer(x), recurrence(layer, x)) < 1e-10
    got, want = grads(layer, layer, x, g), grads(layer, lambda v: recurrence(layer, v), x, g)
    assert len(got) == 1 + 5 + learn_a - (not bias)  # input, log_dt, C, D, mixer weight and bias, A
    for a, b in zip(got, want):
        assert rel(a, b) < 1e-10


@pytest.mark.parametrize("length", [1, 2, 3, 7, 16, 17, 64, 65, 1000])
def test_two_level_krylov_kernel(length: int) -> None:
    torch.manual_seed(1)
    a, b = legs(6)
    abar = torch.linalg.solve(torch.eye(6, dtype=torch.float64) - 0.05 * a, torch.eye(6) + 0.05 * a)
    bq = torch.randn(6, 2, dtype=torch.float64)
    c = torch.randn(6, dtype=torch.float64)
    want, col = [], bq
    for _ in range(length):
        want.append(c @ col)
        col = abar @ col
    assert rel(krylov_kernel(abar, bq, c, length), torch.stack(want, dim=-1)) < 1e-12


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_equals_forward(dtype: torch.dtype, tol: float, seed: int) -> None:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    layer = LSSLLayer(C_IN, C_OUT, 16, learn_a=seed == 2).to(dtype)
    x = torch.randn(B, C_IN, 160, dtype=dtype)
    whole = layer(x)
    splits = [[1] * 40 + [120], random_split(160, rng, 6), random_split(160, rng, 70), [160], [159, 1]]
    for sizes in splits:
        assert rel(chunked(layer, x, sizes), whole) < tol  # with autograd (no cache)
        with torch.no_grad():
            assert rel(chunked(layer, x, sizes), whole) < tol  # cached chunk operators


def test_cache_follows_parameter_updates() -> None:
    torch.manual_seed(3)
    layer = LSSLLayer(C_IN, C_OUT, N).double()
    x = torch.randn(B, C_IN, 40, dtype=torch.float64)
    with torch.no_grad():
        before = chunked(layer, x, [10] * 4)
        assert set(layer._ops_cache) == {10}
        layer.log_dt.add_(0.3)
        layer.C.mul_(-2.0)
        after = chunked(layer, x, [10] * 4)
        assert rel(after, layer(x)) < 1e-9
        assert rel(after, before) > 1e-3


def test_shapes_dtypes_and_state() -> None:
    layer = LSSLLayer(C_IN, C_OUT, N, dt_min=1e-3, dt_max=1e-1)
    dt = torch.exp(layer.log_dt)
    assert bool((dt >= 1e-3 - 1e-9).all() and (dt <= 1e-1 + 1e-9).all())
    assert layer.A is None and "A" not in dict(layer.named_parameters())
    x = torch.randn(B, C_IN, 17)
    assert layer(x).shape == (B, C_OUT, 17) and layer(x).dtype == torch.float32
    state = layer.init_state(5)
    assert [tuple(s.shape) for s in state] == [(5, C_IN, N)] and state[0].dtype == torch.float32
    assert layer.init_state(2, dtype=torch.float64)[0].dtype == torch.float64
    y, new = layer.step(x[..., :4], layer.init_state(B))
    assert y.shape == (B, C_OUT, 4) and new[0].shape == (B, C_IN, N)
    layer.double()
    assert layer(x.double()).dtype == torch.float64 and layer.init_state(1)[0].dtype == torch.float64


def test_learn_a_gets_gradient() -> None:
    torch.manual_seed(4)
    layer = LSSLLayer(C_IN, C_OUT, N, learn_a=True)
    layer(torch.randn(B, C_IN, 20)).square().sum().backward()
    assert layer.A.grad is not None and layer.A.grad.abs().sum() > 0
    assert layer.log_dt.grad.abs().sum() > 0 and layer.C.grad.abs().sum() > 0


def test_causal() -> None:
    torch.manual_seed(5)
    layer = LSSLLayer(C_IN, C_OUT, N).double()
    x = torch.randn(B, C_IN, 60, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 1, 30] += 1.0
    y, y2 = layer(x), layer(x2)
    assert (y[..., :30] - y2[..., :30]).abs().max() < 1e-12
    assert (y[..., 30:] - y2[..., 30:]).abs().max() > 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(6)
    layer = LSSLLayer(C_IN, C_OUT, N, learn_a=True).double()
    x = torch.randn(B, C_IN, 100, dtype=torch.float64)
    want = layer(x)
    layer.cuda()
    xc = x.cuda()
    assert rel(layer(xc).cpu(), want) < 1e-9
    assert rel(chunked(layer, xc, [1, 20, 79]).cpu(), want) < 1e-9
    layer.float()
    with torch.no_grad():
        assert rel(chunked(layer, xc.float(), [33, 33, 34]).double().cpu(), want) < 1e-4
