"""Contraction planning for Centaurus layers: which order to contract input, weights and SSM basis in.

A Centaurus layer is a tensor network over the input ``u`` (batch b, channels, time t), real weight tensors
(B, C, E) and the SSM basis ``K`` (state indices, time t). Exactly one pairwise step joins the input side with
the kernel side: a causal convolution along t. Every other step is an ordinary contraction in the time domain
(real, length L), or, for the basis, a fused "weight times basis, summed over states" (see ``basis.py``).

The convolution step runs one of two ways, whichever the cost model prefers:

- ``fft``: FFTs of both sides, a product over frequencies, an inverse FFT (``fftconv.fft_contract``); works
  for any step, including ones that also contract channels (full, group);
- ``scan``: the chunked state-space scan of ``basis.basis_convolution``, all matrix products and no FFT; it
  needs the kernel side to still be a weighted basis (the raw basis or a basis step's output, not yet
  materialised) and the step to be elementwise over channels (the kernel broadcast over the input's other
  indices: dws, s5, neck).

A basis step's output stays lazy (the weights and powers, not the ``(rows, L)`` kernel) until a step other
than a scan needs it in the time domain; that step pays for materialising it.

Which of the two a plan uses is also a policy (``CONVOLUTIONS``): ``"auto"`` takes the cheaper, ``"fft"`` never
scans (layers train this way, as the paper does), ``"scan"`` scans wherever it can (tests force both to check
each against an independent recurrence).

The search is exhaustive over pairwise orders, like opt_einsum's ``optimal`` strategy, and runs inside
opt_einsum as a :class:`opt_einsum.paths.PathOptimizer`, so ``opt_einsum.contract_path`` reports it. Costs are
in matmul-FLOP equivalents: opt_einsum's FLOP count (``opt_einsum.helpers.flop_count``) for products, plus
what opt_einsum cannot know, weighted by what each kind of work costs on a CPU relative to a matrix product
(measured on the 2-core machine this project runs on: fp32 matmul 30-57 GFLOP/s in these shapes and sizes,
real FFT ~10 GFLOP/s, complex elementwise products memory-bound at ~2.5 ns per element):

- an FFT transforms its two operands and its result, ``2.5 n log2 n`` FLOPs per row of length ``n = n_fft``,
  each weighted by ``FFT_FLOP_WEIGHT``; its product runs over ``n_fft // 2 + 1`` complex frequencies, four
  real FLOPs per complex multiply-add plus ``COMPLEX_ELEMENT_FLOPS`` per complex element read or written;
- a scan costs ``rows * L * (2 T + 8 S)`` FLOPs (T its chunk length, S the basis terms per kernel row) plus
  ``SCAN_STEP_FLOPS`` per chunk for the Python step that carries the state;
- materialising the basis costs ``BASIS_FLOPS`` per (row, term, t) element.

Index letters: b batch, i input channel, j output channel, g group, k state block, n state, t time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from opt_einsum.helpers import compute_size_by_dict, flop_count
from opt_einsum.paths import PathOptimizer

from .basis import scan_block

__all__ = [
    "TIME",
    "CONVOLUTIONS",
    "BASIS_FLOPS",
    "FFT_FLOP_WEIGHT",
    "COMPLEX_ELEMENT_FLOPS",
    "SCAN_STEP_FLOPS",
    "TensorNetwork",
    "Step",
    "ContractionPlan",
    "enumerate_plans",
    "plan_contraction",
    "FFTAwareOptimal",
]

TIME = "t"
# How a plan runs its convolution step: the cheaper of scan and FFT, always FFT, or scan wherever possible.
CONVOLUTIONS = ("auto", "fft", "scan")
# Materialising the weighted basis is a blocked matrix product (basis.py): 4 FLOPs per (row, term, t).
BASIS_FLOPS = 4
# An FFT FLOP takes about 3x as long as a FLOP of a matrix product on this CPU.
FFT_FLOP_WEIGHT = 3.0
# A complex elementwise product is memory-bound: each element read or written costs ~24 matmul FLOPs.
COMPLEX_ELEMENT_FLOPS = 24
# One Python step of the chunk scan (a few small ops, ~10-15 us), in matmul FLOPs.
SCAN_STEP_FLOPS = 4e5


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
    """One pairwise contraction. ``kind`` is ``"time"`` (plain einsum), ``"basis"`` (fused basis, lazy),
    ``"fft"`` or ``"scan"`` (the causal convolution, two ways); ``materialise_basis`` marks an FFT step fed by
    the raw basis. ``flops`` is the cost in matmul-FLOP equivalents (module docstring)."""

    pair: tuple[int, int]
    equation: str
    kind: str
    flops: float
    materialise_basis: bool = False
    fft_flops: float = 0.0  # FLOPs of the FFTs themselves (counted FFT_FLOP_WEIGHT times in ``flops``)
    other_flops: float = 0.0  # FLOPs of everything else (products, scan, basis), unweighted


@dataclass(frozen=True)
class ContractionPlan:
    """A full contraction order (opt_einsum path format) with its estimated cost."""

    path: tuple[tuple[int, int], ...]
    steps: tuple[Step, ...]
    cost: float
    peak_elements: int
    sizes: dict[str, int] = field(compare=False)

    @property
    def fft_flops(self) -> float:
        """FLOPs of the plan's FFTs."""
        return sum(s.fft_flops for s in self.steps)

    @property
    def other_flops(self) -> float:
        """FLOPs of the plan's products, scans and basis evaluation (no weights, no memory traffic)."""
        return sum(s.other_flops for s in self.steps)

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
    terms: int = 0  # > 0: a lazy weighted basis with this many terms per row (raw basis: 1)
    pending: float = 0.0  # cost of materialising it, paid by the first step that needs it in the time domain


def fft_flops(rows: int, n_fft: int) -> float:
    """Real-FFT cost model: half of a complex FFT's ``5 n log2 n``."""
    return rows * 2.5 * n_fft * math.log2(max(n_fft, 2))


def scan_flops(rows: int, length: int, terms: int) -> float:
    """Cost of ``basis.basis_convolution`` over ``rows`` rows with ``terms`` basis terms per kernel row."""
    block = scan_block(terms)
    chunks = -(-length // block)
    return rows * chunks * block * (2 * block + 8 * terms) + chunks * SCAN_STEP_FLOPS


@dataclass(frozen=True)
class _StepCost:
    kind: str
    cost: float
    result: _Operand
    materialise: bool = False
    fft: float = 0.0
    other: float | None = None  # unweighted non-FFT FLOPs (default: ``cost``)


def _step_cost(
    a: _Operand, b: _Operand, out: str, sizes: dict[str, int], n_fft: int, convolution: str = "auto"
) -> _StepCost:
    union = "".join(sorted(set(a.indices) | set(b.indices)))
    inner = bool(set(union) - set(out))
    rows_of = lambda ix: compute_size_by_dict(ix.replace(TIME, ""), sizes)  # noqa: E731
    merged = _Operand(out, a.has_input or b.has_input, a.has_basis or b.has_basis, False)
    if (a.has_input and b.has_basis) or (b.has_input and a.has_basis):
        x, k = (a, b) if a.has_input else (b, a)
        freq_sizes = dict(sizes)
        freq_sizes[TIME] = n_fft // 2 + 1
        transforms = fft_flops(rows_of(a.indices) + rows_of(b.indices) + rows_of(out), n_fft)
        traffic = (rows_of(a.indices) + rows_of(b.indices) + rows_of(out)) * freq_sizes[TIME]
        product = 4 * flop_count(union, inner, 2, freq_sizes) + k.pending
        fft_cost = FFT_FLOP_WEIGHT * transforms + COMPLEX_ELEMENT_FLOPS * traffic + product
        elementwise = set(k.indices) <= set(x.indices) and set(out) == set(x.indices)
        if k.terms and elementwise and convolution != "fft":
            scan_cost = scan_flops(rows_of(x.indices), sizes[TIME], k.terms)
            if scan_cost < fft_cost or convolution == "scan":
                overhead = -(-sizes[TIME] // scan_block(k.terms)) * SCAN_STEP_FLOPS
                return _StepCost("scan", scan_cost, merged, other=scan_cost - overhead)
        return _StepCost("fft", fft_cost, merged, k.raw_basis, transforms, product)
    if a.raw_basis or b.raw_basis:  # weight x raw basis, summed over the terms not kept: stays lazy
        terms = compute_size_by_dict("".join(set(union) - set(out)), sizes)
        rows, length = rows_of(out), sizes[TIME]
        tables = BASIS_FLOPS * rows * terms * 2 * math.isqrt(length)  # the blocked power tables
        lazy = _Operand(out, False, True, False, terms, BASIS_FLOPS * rows * terms * length)
        return _StepCost("basis", tables, lazy)
    return _StepCost("time", float(flop_count(union, inner, 2, sizes)) + a.pending + b.pending, merged)


def enumerate_plans(
    network: TensorNetwork, sizes: dict[str, int], n_fft: int, convolution: str = "auto"
) -> list[ContractionPlan]:
    """Every pairwise contraction order of ``network`` with its cost (the search space of the planner), the
    convolution step of each run as ``convolution`` (one of ``CONVOLUTIONS``) says."""
    if convolution not in CONVOLUTIONS:
        raise ValueError(f"unknown convolution {convolution!r}; expected one of {CONVOLUTIONS}")
    def leaf(name: str, ix: str) -> _Operand:
        if name != network.basis_name:
            return _Operand(ix, name == network.input_name, False, False)
        return _Operand(ix, False, True, True, 1, BASIS_FLOPS * compute_size_by_dict(ix, sizes))

    leaves = [leaf(name, ix) for name, ix in zip(network.names, network.indices)]
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
                c = _step_cost(a, b, out, sizes, n_fft, convolution)
                other = c.cost if c.other is None else c.other
                step = Step((x, y), f"{a.indices},{b.indices}->{out}", c.kind, c.cost, c.materialise, c.fft, other)
                size = compute_size_by_dict(out, sizes)
                recurse(rest + [c.result], path + [(x, y)], steps + [step], cost + c.cost, max(peak, size))

    recurse(leaves, [], [], 0.0, 0)
    return plans


def plan_contraction(
    network: TensorNetwork, sizes: dict[str, int], n_fft: int, memory_limit: int | None = None,
    convolution: str = "auto",
) -> ContractionPlan:
    """The cheapest order whose largest intermediate fits ``memory_limit`` elements (if any order does)."""
    plans = enumerate_plans(network, sizes, n_fft, convolution)
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

