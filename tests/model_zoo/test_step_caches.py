"""The streaming caches follow the parameters: after any change a step must equal ``forward`` again.

Every SSM layer caches what it derives from its parameters for a chunk length (block matrices, impulse spectra,
power tables, Krylov operators). Assigning ``p.data = new`` swaps the storage but leaves ``p._version`` as it
was, so a cache keyed on versions alone would keep serving the old parameters' values. Each case below fills
the caches of one step path, changes one parameter that way, and streams again.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_zoo import LiquidS4Layer, LSSLLayer, SSMLayer

B, C_IN, C_OUT, N = 2, 4, 6, 3

# (layer, chunk sizes): the step path each exercises, named in the test id.
CASES = {
    "centaurus-sample-step": ("dws", [1] * 12),  # T = 1: the elementwise step with cached decay and feed
    "centaurus-block-step": ("s5", [6, 6]),  # short T: one product with a cached block matrix
    "centaurus-general-step": ("full", [6, 6]),  # no block form: cached impulse spectrum and power tables
    "centaurus-long-chunk": ("dws", [720, 720]),  # a block matrix too big to cache: the general path again
    "lssl": ("lssl", [6, 6]),
    "liquid_s4": ("liquid_s4", [6, 6]),
}


def _layer(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "lssl":
        layer = LSSLLayer(C_IN, C_OUT, N, learn_a=True)
    elif kind == "liquid_s4":
        layer = LiquidS4Layer(C_IN, C_OUT, N, learn_a=True)
    else:
        layer = SSMLayer(C_IN, C_OUT, N, kind, blocks=2, dt_min=0.05, dt_max=0.5)
    return layer.double().eval()


def _stream(layer: nn.Module, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """``(B, C_in, L)`` -> ``(B, C_out, L)`` chunk by chunk, ``sum(sizes) == L``."""
    state, outs = layer.init_state(x.shape[0], dtype=x.dtype), []
    for chunk in torch.split(x, sizes, dim=-1):
        y, state = layer.step(chunk, state)
        outs.append(y)
    return torch.cat(outs, dim=-1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _parameter_names(case: str) -> list[str]:
    return [name for name, _ in _layer(CASES[case][0]).named_parameters()]


@pytest.mark.parametrize("case,parameter", [(c, p) for c in CASES for p in _parameter_names(c)])
def test_step_follows_an_assignment_to_data(case: str, parameter: str) -> None:
    kind, sizes = CASES[case]
    layer = _layer(kind)
    x = torch.randn(B, C_IN, sum(sizes), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert _rel(_stream(layer, x, sizes), layer(x)) < 1e-9  # fills the caches
        p = layer.get_parameter(parameter)
        version = p._version
        p.data = p.detach() * 1.3 + 0.05  # new storage, same version: what a stale cache would miss
        assert p._version == version
        want = layer(x)
        assert _rel(_stream(layer, x, sizes), want) < 1e-9


@pytest.mark.parametrize("case", list(CASES))
def test_step_follows_load_state_dict_and_in_place_updates(case: str) -> None:
    """The common ways parameters change (an optimiser's in-place step, ``load_state_dict``) bump versions."""
    kind, sizes = CASES[case]
    layer, other = _layer(kind), _layer(kind)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    x = torch.randn(B, C_IN, sum(sizes), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _stream(layer, x, sizes)
        layer.load_state_dict(other.state_dict())
        assert _rel(_stream(layer, x, sizes), layer(x)) < 1e-9
        for p in layer.parameters():
            p.mul_(0.9)
        assert _rel(_stream(layer, x, sizes), layer(x)) < 1e-9


@pytest.mark.parametrize("case", list(CASES))
def test_step_follows_a_change_of_dtype(case: str) -> None:
    """``.to(dtype)`` replaces every parameter; the caches are dropped with the old copies."""
    kind, sizes = CASES[case]
    layer = _layer(kind)
    x = torch.randn(B, C_IN, sum(sizes), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _stream(layer, x, sizes)
        layer.float()
        assert _rel(_stream(layer, x.float(), sizes).double(), layer(x.float()).double()) < 1e-5


def test_derived_cache_rebuilds_on_any_change_of_its_sources() -> None:
    from model_zoo.ssm.cache import DerivedCache

    p = nn.Parameter(torch.ones(3))
    cache, builds = DerivedCache(capacity=2), []

    def get(key: int) -> float:
        return cache.get((p, None), key, lambda: builds.append(key) or float(p.detach().sum()))

    assert get(1) == 3.0 and get(1) == 3.0 and builds == [1]
    with torch.no_grad():
        p.mul_(2)  # in place: the version moves
    assert get(1) == 6.0 and builds == [1, 1]
    p.data = torch.zeros(3)  # new storage, same version
    assert get(1) == 0.0 and builds == [1, 1, 1]
    with torch.inference_mode():
        assert get(1) == 0.0 and builds == [1, 1, 1, 1]  # not served across inference mode
    get(1), get(2), get(3)  # capacity 2: the oldest key goes first
    assert list(cache) == [2, 3]
    cache.clear()
    assert len(cache) == 0
