"""Contraction planning for Centaurus layers: which order to contract input, weights and SSM basis in.

A Centaurus layer is a tensor network over the input ``u`` (batch b, channels, time t), real weight tensors
(B, C, E) and the SSM basis ``K`` (state indices, time t). Exactly one pairwise step joins the input side with
the kernel side: that step is a causal convolution along t, done by FFT. Every other step is an ordinary
contraction in the time domain (real, length L), or, for the basis, a fused "weight times basis, summed over
states" that never stores the basis (see ``basis.py``).

The search is exhaustive over pairwise orders, like opt_einsum's ``optimal`` strategy, and runs inside
opt_einsum as a :class:`opt_einsum.paths.PathOptimizer`, so ``opt_einsum.contract_path`` reports it. The cost
of a step is opt_einsum's FLOP count (``opt_einsum.helpers.flop_count``) plus what opt_einsum cannot know:

- the FFT step transforms its two operands and its result: ``2.5 n log2 n`` per row of length ``n = n_fft``;
  its product runs over ``n_fft // 2 + 1`` complex frequencies, four real FLOPs per complex multiply-add;
- evaluating the basis ``exp(t Re dtA) cos(t Im dtA)`` costs ``BASIS_FLOPS`` per element it touches.

Index letters: b batch, i input channel, j output channel, g group, k state block, n state, t time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from opt_einsum.helpers import compute_size_by_dict, flop_count
from opt_einsum.paths import PathOptimizer

__all__ = [
    "TIME",
    "BASIS_FLOPS",
    "TensorNetwork",
    "Step",
    "ContractionPlan",
    "enumerate_plans",
    "plan_contraction",
    "FFTAwareOptimal",
]

TIME = "t"
# exp, cos and a multiply-add per basis element; a vectorised exp or cos costs about as much as 4 FLOPs.
BASIS_FLOPS = 10


@dataclass(frozen=True)
class TensorNetwork:
    """Operands of a layer: ``names[p]`` has ``indices[p]``; ``input_name`` and ``basis_name`` are special."""

    names: tuple[str, ...]
    indices: tuple[str, ...]
    output: str
    input_name: str = "u"
    basis_name: str = "K"

    def equation(self) -> str:
        return ",".join(self.indices) + "->" + self.output


@dataclass(frozen=True)
class Step:
    """One pairwise contraction. ``kind`` is ``"time"`` (plain einsum), ``"basis"`` (fused basis build) or
    ``"fft"`` (the causal convolution); ``materialise_basis`` marks an FFT step fed by the raw basis."""

    pair: tuple[int, int]
    equation: str
    kind: str
    flops: float
    materialise_basis: bool = False


@dataclass(frozen=True)
class ContractionPlan:
    """A full contraction order (opt_einsum path format) with its estimated cost."""

    path: tuple[tuple[int, int], ...]
    steps: tuple[Step, ...]
    cost: float
    peak_elements: int
    sizes: dict[str, int] = field(compare=False)

    def describe(self) -> str:
        lines = [f"cost {self.cost:.3e} FLOPs, largest intermediate {self.peak_elements:,} elements"]
        for s in self.steps:
            extra = " (basis materialised)" if s.materialise_basis else ""
            lines.append(f"  {s.pair} {s.kind:5s} {s.equation:28s} {s.flops:.3e}{extra}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Operand:
    indices: str
    has_input: bool
    has_basis: bool
    raw_basis: bool


def fft_flops(rows: int, n_fft: int) -> float:
    """Real-FFT cost model: half of a complex FFT's ``5 n log2 n``."""
    return rows * 2.5 * n_fft * math.log2(max(n_fft, 2))


def _step_cost(a: _Operand, b: _Operand, out: str, sizes: dict[str, int], n_fft: int) -> tuple[str, float, bool]:
    union = "".join(sorted(set(a.indices) | set(b.indices)))
    inner = bool(set(union) - set(out))
    if (a.has_input and b.has_basis) or (b.has_input and a.has_basis):
        freq_sizes = dict(sizes)
        freq_sizes[TIME] = n_fft // 2 + 1
        rows_of = lambda ix: compute_size_by_dict(ix.replace(TIME, ""), sizes)  # noqa: E731
        cost = fft_flops(rows_of(a.indices) + rows_of(b.indices) + rows_of(out), n_fft)
        cost += 4 * flop_count(union, inner, 2, freq_sizes)
        raw = a.raw_basis or b.raw_basis
        if raw:
            basis = a if a.raw_basis else b
            cost += BASIS_FLOPS * compute_size_by_dict(basis.indices, sizes)
        return "fft", cost, raw
    if a.raw_basis or b.raw_basis:
        return "basis", BASIS_FLOPS * compute_size_by_dict(union, sizes), False
    return "time", float(flop_count(union, inner, 2, sizes)), False


def enumerate_plans(network: TensorNetwork, sizes: dict[str, int], n_fft: int) -> list[ContractionPlan]:
    """Every pairwise contraction order of ``network`` with its cost (the search space of the planner)."""
    leaves = [
        _Operand(ix, name == network.input_name, name == network.basis_name, name == network.basis_name)
        for name, ix in zip(network.names, network.indices)
    ]
    plans: list[ContractionPlan] = []

    def recurse(ops: list[_Operand], path: list, steps: list, cost: float, peak: int) -> None:
        if len(ops) == 1:
            plans.append(ContractionPlan(tuple(path), tuple(steps), cost, peak, dict(sizes)))
            return
        for x in range(len(ops)):
            for y in range(x + 1, len(ops)):
                a, b = ops[x], ops[y]
                rest = [o for p, o in enumerate(ops) if p not in (x, y)]
                keep = set(network.output).union(*(set(o.indices) for o in rest))
                out = "".join(c for c in dict.fromkeys(a.indices + b.indices) if c in keep)
                kind, step_cost, materialise = _step_cost(a, b, out, sizes, n_fft)
                merged = _Operand(out, a.has_input or b.has_input, a.has_basis or b.has_basis, False)
                step = Step((x, y), f"{a.indices},{b.indices}->{out}", kind, step_cost, materialise)
                size = compute_size_by_dict(out, sizes)
                recurse(rest + [merged], path + [(x, y)], steps + [step], cost + step_cost, max(peak, size))

    recurse(leaves, [], [], 0.0, 0)
    return plans


def plan_contraction(
    network: TensorNetwork, sizes: dict[str, int], n_fft: int, memory_limit: int | None = None
) -> ContractionPlan:
    """The cheapest order whose largest intermediate fits ``memory_limit`` elements (if any order does)."""
    plans = enumerate_plans(network, sizes, n_fft)
    fitting = [p for p in plans if memory_limit is None or p.peak_elements <= memory_limit] or plans
    return min(fitting, key=lambda p: (p.cost, p.peak_elements))


class FFTAwareOptimal(PathOptimizer):
    """The planner as an opt_einsum path optimizer: ``opt_einsum.contract_path(eq, *shapes, shapes=True,
    optimize=FFTAwareOptimal(network, n_fft))`` returns our path and opt_einsum's own report of it."""

    def __init__(self, network: TensorNetwork, n_fft: int) -> None:
        self.network = network
        self.n_fft = n_fft
        self.plan: ContractionPlan | None = None

    def __call__(self, inputs, output, size_dict, memory_limit=None) -> Sequence[tuple[int, int]]:
        expected = [frozenset(ix) for ix in self.network.indices]
        if [frozenset(x) for x in inputs] != expected:
            raise ValueError("FFTAwareOptimal was given an equation other than its network's")
        self.plan = plan_contraction(self.network, dict(size_dict), self.n_fft, memory_limit)
        return list(self.plan.path)

