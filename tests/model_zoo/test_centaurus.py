"""The Centaurus layer against a plain step-by-step recurrence written here from the math, for every mode
and every contraction order; the planner's choice; exact streaming."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch.nn.functional import softplus

from model_zoo import SSMLayer
from model_zoo.ssm.centaurus import MODES, TRAINING_SCAN_MIN_LENGTH
from model_zoo.ssm.planner import CONVOLUTIONS

B, C_IN, C_OUT, N, L = 2, 4, 6, 3, 40


def make(mode: str, dtype=torch.float64) -> SSMLayer:
    torch.manual_seed(0)
    layer = SSMLayer(C_IN, C_OUT, N, mode, blocks=2, groups=2, dt_min=0.05, dt_max=0.5).to(dtype)
    with torch.no_grad():  # move away from the symmetric init so every parameter matters
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer


def recurrence(layer: SSMLayer, x: torch.Tensor) -> torch.Tensor:
    """h_t = lambda h_{t-1} + dt drive_t, y_t = readout(Re h_t) + bias, one time step at a time."""
    mode, w = layer.mode, layer.weights
    lam_exp = -softplus(layer.a_real) + 1j * layer.a_imag
    dt = torch.exp(layer.log_dt)
    b, _, length = x.shape
    if mode == "dws":
        dt = dt[:, None]
    elif mode == "neck":
        dt = dt[:, None]
    elif mode in ("full", "group"):
        dt = dt[:, :, None, None]
    lam = torch.exp(dt * lam_exp)
    g = layer.groups
    h = torch.zeros((b, *lam.shape), dtype=lam.dtype)
    ys = []
    for t in range(length):
        u = x[:, :, t]
        if mode == "dws":
            h = lam * h + dt * u[:, :, None]
            y = torch.einsum("ji,in,bin->bj", w["C"], w["E"], h.real)
        elif mode == "s5":
            h = lam * h + dt * torch.einsum("ni,bi->bn", w["B"], u)
            y = torch.einsum("jn,bn->bj", w["C"], h.real)
        elif mode == "neck":
            h = lam * h + dt * torch.einsum("ki,bi->bk", w["B"], u)[:, :, None]
            y = torch.einsum("jk,kn,bkn->bj", w["C"], w["E"], h.real)
        else:
            ug = u.reshape(b, g, 1, -1, 1)
            h = lam * h + dt * ug
            y = torch.einsum("gjin,bgjin->bgj", w["E"], h.real).reshape(b, -1)
        ys.append(y + layer.bias)
    return torch.stack(ys, dim=-1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("convolution", CONVOLUTIONS)
def test_every_order_matches_recurrence_outputs_and_gradients(mode, convolution):
    """Every order, its convolution step forced to FFT, to the chunked scan (where the order allows one) or
    left to the cost model."""
    layer = make(mode)
    x = torch.randn(B, C_IN, L, dtype=torch.float64, requires_grad=True)
    params = [x, *layer.parameters()]
    y_ref = recurrence(layer, x)
    g = torch.randn_like(y_ref)
    grads_ref = torch.autograd.grad(y_ref, params, g)
    plans = layer.candidate_plans(B, L, convolution)
    assert len(plans) == math.prod(math.comb(k, 2) for k in range(2, len(layer.spec.network.names) + 1))
    kinds = {s.kind for plan in plans for s in plan.steps}
    if convolution == "fft" or mode in ("full", "group"):  # full and group contract channels: never a scan
        assert "scan" not in kinds
    elif convolution == "scan":
        assert {"scan", "fft"} <= kinds  # orders that materialise the kernel first cannot scan
    for plan in plans:
        y = layer(x, plan=plan)
        assert rel_err(y, y_ref) < 1e-10, plan.describe()
        for got, want in zip(torch.autograd.grad(y, params, g), grads_ref):
            assert rel_err(got, want) < 1e-10, plan.describe()


@pytest.mark.parametrize("mode", MODES)
def test_recurrence_check_can_fail(mode):
    """The reference is sensitive: a small change of one parameter is detected."""
    layer = make(mode)
    x = torch.randn(B, C_IN, L, dtype=torch.float64)
    y_ref = recurrence(layer, x)
    with torch.no_grad():
        layer.a_imag[(0,) * layer.a_imag.dim()] += 1e-3
    assert rel_err(layer(x), y_ref) > 1e-8


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch,length", [(8, 16000), (64, 1000), (1, 320)])
def test_chosen_order_is_cheapest(mode, batch, length):
    layer = SSMLayer(64, 64, 16, mode, groups=4)
    for convolution in CONVOLUTIONS:
        chosen = layer.contraction_plan(batch, length, convolution)
        plans = layer.candidate_plans(batch, length, convolution)
        assert chosen.cost == min(p.cost for p in plans if p.peak_elements <= layer.memory_limit)
        assert layer.contraction_plan(batch, length, convolution) is chosen  # cached per shape and policy


def test_training_convolves_short_sequences_by_fft_and_the_rest_by_the_cheaper():
    layer = SSMLayer(64, 64, 16, "dws")
    x = torch.randn(2, 64, 1000)
    short, long = TRAINING_SCAN_MIN_LENGTH - 1, TRAINING_SCAN_MIN_LENGTH
    assert layer.training and layer.convolution_policy(short) == "fft" and layer.convolution_policy(long) == "auto"
    assert "fft" in {s.kind for s in layer.contraction_plan(8, short).steps}
    assert "scan" in {s.kind for s in layer.contraction_plan(8, 16000).steps}  # the cheaper at this length
    with torch.no_grad():
        assert layer.convolution_policy(short) == "auto"
    layer.eval()
    assert layer.convolution_policy(short) == "auto"
    layer.train()
    used = []
    original = layer._contract
    layer._contract = lambda u, plan, length: used.append(plan) or original(u, plan, length)
    layer(x).sum().backward()
    assert "fft" in {s.kind for s in used[-1].steps} and "scan" not in {s.kind for s in used[-1].steps}


def test_planner_runs_inside_opt_einsum():
    import opt_einsum

    from model_zoo.ssm.fftconv import fft_length
    from model_zoo.ssm.planner import FFTAwareOptimal

    layer = SSMLayer(64, 64, 16, "neck")
    sizes = layer._sizes_for(8, 16000)
    net = layer.spec.network
    shapes = [tuple(sizes[c] for c in ix) for ix in net.indices]
    optimizer = FFTAwareOptimal(net, fft_length(16000))
    path, info = opt_einsum.contract_path(net.equation(), *shapes, shapes=True, optimize=optimizer)
    assert tuple(map(tuple, path)) == layer.contraction_plan(8, 16000).path
    assert info.opt_cost > 0


def test_known_orders_from_the_paper():
    """Depthwise contracts E with the basis first; bottlenecks project the input first (centaurus.md)."""
    dws = SSMLayer(64, 64, 16, "dws").contraction_plan(8, 16000)
    assert dws.steps[0].kind == "basis"
    neck = SSMLayer(64, 64, 16, "neck").contraction_plan(8, 16000)
    assert neck.steps[0].equation.startswith("bit,ki") or neck.steps[0].equation.startswith("ki,bit")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_streaming_equals_forward_for_random_splits(mode, dtype, tol):
    layer = make(mode, dtype)
    x = torch.randn(B, C_IN, 300, dtype=dtype)
    rng = random.Random(mode)
    with torch.no_grad():
        y = layer(x)
        for _ in range(3):
            state, outs, pos = layer.init_state(B), [], 0
            while pos < x.shape[-1]:
                size = rng.choice([1, 2, 3, 17, 64, 100])
                out, state = layer.step(x[..., pos:pos + size], state)
                outs.append(out)
                pos += size
            assert rel_err(torch.cat(outs, -1), y) < tol


@pytest.mark.parametrize("mode", ["dws", "s5", "neck"])
@pytest.mark.parametrize("length", [1, 2, 7, 64])
def test_block_step_equals_general_step(mode, length):
    """The inference step by cached block matrices against the general (differentiable) step, from a random
    state; and the matrices follow the parameters when they change."""
    layer = make(mode).eval()
    state = torch.randn(layer.init_state(B).shape, dtype=torch.float64)
    x = torch.randn(B, C_IN, length, dtype=torch.float64)
    for _ in range(2):
        with torch.no_grad():
            assert layer._block_operators(length, state.dtype, x.device) is not None
            y, new_state = layer.step(x, state)
        y_ref, state_ref = layer.step(x, state)  # autograd on: the general path
        assert new_state.shape == state_ref.shape and new_state.dtype == state_ref.dtype
        assert rel_err(y, y_ref) < 1e-12 and rel_err(new_state, state_ref) < 1e-12
        with torch.no_grad():
            for p in layer.parameters():
                p.mul_(1.1)


@pytest.mark.parametrize("mode", ["dws", "s5", "neck"])
def test_inference_step_across_chunk_lengths(mode):
    """Chunks of 2, 1, 1, 3, 1 samples at inference (the matrix step, the one-sample step, and the state one
    leaves for the other) against the general step, chunk by chunk."""
    layer = make(mode).eval()
    state = state_ref = torch.randn(layer.init_state(B).shape, dtype=torch.float64)
    for length in (2, 1, 1, 3, 1):
        x = torch.randn(B, C_IN, length, dtype=torch.float64)
        with torch.no_grad():
            y, state = layer.step(x, state)
        y_ref, state_ref = layer.step(x, state_ref)  # autograd on: the general path
        assert rel_err(y, y_ref) < 1e-12 and rel_err(state, state_ref) < 1e-12


def test_state_shapes():
    """The complex state's shape (module docstring) with Re and Im in a trailing axis."""
    assert SSMLayer(4, 6, 3, "dws").init_state(2).shape == (2, 4, 3, 2)
    assert SSMLayer(4, 6, 3, "s5", blocks=2).init_state(2).shape == (2, 6, 2)
    assert SSMLayer(4, 6, 3, "neck", blocks=2).init_state(2).shape == (2, 2, 3, 2)
    assert SSMLayer(4, 6, 3, "full").init_state(2).shape == (2, 1, 6, 4, 3, 2)
    assert SSMLayer(4, 6, 3, "group", groups=2).init_state(2).shape == (2, 2, 3, 2, 3, 2)
    assert SSMLayer(4, 6, 3, "dws").init_state(2, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("mode", MODES)
def test_shapes_dtypes_and_causality(mode):
    layer = make(mode, torch.float32)
    x = torch.randn(3, C_IN, 64)
    y = layer(x)
    assert y.shape == (3, C_OUT, 64) and y.dtype == torch.float32
    x2 = x.clone()
    x2[..., 40:] += 1.0
    assert torch.equal(layer(x2)[..., :40], y[..., :40]) or torch.allclose(layer(x2)[..., :40], y[..., :40], atol=1e-6)
    assert not torch.allclose(layer(x2)[..., 40:], y[..., 40:])


@pytest.mark.parametrize("mode", MODES)
def test_training_runs_ffts_in_float32_under_autocast(mode, monkeypatch):
    layer = make(mode, torch.float32).train()
    x = torch.randn(B, C_IN, 128, requires_grad=True)
    y_ref = layer(x)
    seen = []
    rfft = torch.fft.rfft
    monkeypatch.setattr(torch.fft, "rfft", lambda t, *a, **k: seen.append(t.dtype) or rfft(t, *a, **k))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.bfloat16())
        y.float().sum().backward()
    assert seen and set(seen) == {torch.float32}  # the FFT path, in float32 (forward and backward)
    assert torch.isfinite(y).all() and x.grad is not None
    assert rel_err(y.float(), y_ref) < 2e-2  # bfloat16 input and weight products, float32 convolution


def test_basis_and_scan_ignore_autocast():
    """The kernel and the chunked scan are evaluated in float32 under autocast, bit for bit as without it."""
    from model_zoo.ssm.basis import basis_convolution, weighted_basis

    torch.manual_seed(0)
    weight, decay, freq = torch.randn(6, 4), -torch.rand(6, 4) * 0.1, torch.rand(6, 4)
    x = torch.randn(3, 6, 300)
    want_kernel, want_y = weighted_basis(weight, decay, freq, 300), basis_convolution(x, weight, decay, freq)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kernel, y = weighted_basis(weight, decay, freq, 300), basis_convolution(x.bfloat16(), weight, decay, freq)
    assert kernel.dtype == y.dtype == torch.float32
    assert torch.equal(kernel, want_kernel)
    assert rel_err(y, basis_convolution(x.bfloat16().float(), weight, decay, freq)) < 1e-6
    assert rel_err(y, want_y) < 1e-2


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unknown mode"):
        SSMLayer(4, 4, 4, "conv")
    with pytest.raises(ValueError, match="groups"):
        SSMLayer(4, 6, 4, "group", groups=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("mode", MODES)
def test_cuda_matches_cpu(mode):
    layer = make(mode, torch.float32)
    x = torch.randn(B, C_IN, 200)
    y_cpu = layer(x)
    y_gpu = layer.cuda()(x.cuda())
    assert rel_err(y_gpu.cpu(), y_cpu) < 1e-4
    state = layer.init_state(B)
    assert state.device.type == "cuda"


def test_fft_length_is_smooth_and_refuses_empty_signals():
    from model_zoo.ssm.fftconv import fft_length

    for length in (1, 7, 160, 16000):
        n = fft_length(length)
        assert n >= 2 * length
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        assert n == 1
    with pytest.raises(ValueError, match="positive length"):
        fft_length(0)  # used to search forever: a one-sample upload resampled to nothing hung a worker
