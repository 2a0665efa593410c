"""What ``bench/ssm_layers.py`` measures: the layers, the input, the reference's timings, and the timing loop.

The reference implementation's numbers are from centaurus.md (its last table, this machine); the target is 2x
faster than its eager timings.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from model_zoo.ssm.centaurus import SSMLayer

__all__ = ["BATCH", "CHANNELS", "STATES", "LENGTH", "SAMPLE_RATE", "CHUNK", "STREAM_SECONDS", "LAYERS", "DESCRIPTION",
           "REFERENCE", "target", "make_layer", "make_input", "timed", "summary", "run_step", "load_average"]

BATCH, CHANNELS, STATES, LENGTH = 8, 64, 16, 16000
SAMPLE_RATE, CHUNK, STREAM_SECONDS = 16000, 320, 10.0

# name -> (SSMLayer arguments, keyword arguments)
LAYERS: dict[str, tuple[tuple, dict]] = {
    "dws": ((CHANNELS, CHANNELS, STATES, "dws"), {}),
    "s5": ((CHANNELS, CHANNELS, STATES, "s5"), {"blocks": 4}),
    "neck": ((CHANNELS, CHANNELS, STATES, "neck"), {"blocks": 4}),
    "full16": ((16, 16, STATES, "full"), {}),
    "full64": ((64, 64, STATES, "full"), {}),
    "group": ((CHANNELS, CHANNELS, STATES, "group"), {"groups": 4}),
}
DESCRIPTION = {
    "dws": "dws 64", "s5": "s5 J=4", "neck": "neck J=4", "full16": "full 16->16", "full64": "full 64->64",
    "group": "group 64 G=4",
}
# The reference implementation on this machine (centaurus.md, last table): median ms, C = its compiled kernel
# builder, E = eager. None where it has no number (full 64 -> 64 eager risks running out of memory; no group).
REFERENCE = {
    "dws": {"fwd_compiled": 199, "fwd_eager": 453, "fwdbwd_compiled": 675, "fwdbwd_eager": 1434},
    "s5": {"fwd_compiled": 149, "fwd_eager": 185, "fwdbwd_compiled": 723, "fwdbwd_eager": 627},
    "neck": {"fwd_compiled": 24, "fwd_eager": 39, "fwdbwd_compiled": 135, "fwdbwd_eager": 156},
    "full16": {"fwd_compiled": 362, "fwd_eager": 1889, "fwdbwd_compiled": 1228, "fwdbwd_eager": 3909},
    "full64": {"fwd_compiled": 4495, "fwd_eager": None, "fwdbwd_compiled": 13570, "fwdbwd_eager": None},
    "group": {"fwd_compiled": None, "fwd_eager": None, "fwdbwd_compiled": None, "fwdbwd_eager": None},
}


def target(mode: str, kind: str) -> float | None:
    """2x faster than the reference's eager time."""
    ref = REFERENCE[mode][f"{kind}_eager"]
    return None if ref is None else ref / 2


# ---- helpers --------------------------------------------------------------------------------------------------
def make_layer(mode: str) -> SSMLayer:
    torch.manual_seed(0)
    args, kwargs = LAYERS[mode]
    return SSMLayer(*args, **kwargs)


def make_input(mode: str, requires_grad: bool = True, batch: int = BATCH, length: int = LENGTH) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, LAYERS[mode][0][0], length, requires_grad=requires_grad)


def timed(fn, warmup: int, repeats: int) -> list[float]:
    """Seconds per call, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict:
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "runs": len(times)}


def run_step(layer, x: torch.Tensor, kind: str, plan=None) -> None:
    if kind == "fwd_nograd":
        with torch.no_grad():
            layer(x) if plan is None else layer(x, plan=plan)
        return
    y = layer(x) if plan is None else layer(x, plan=plan)
    if kind == "fwdbwd":
        y.backward(torch.ones_like(y))
        x.grad = None
        for p in layer.parameters():
            p.grad = None


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []
