"""Same-run comparison with the reference implementation (``bench/ssm_layers.py --reference PATH``).

PATH is a local checkout of github.com/Brainchip-Inc/Centaurus (``git clone
https://github.com/Brainchip-Inc/Centaurus /tmp/centaurus-ref``). Its licence is non-commercial, so this repository
holds none of its code: its layer class (``PATH/centaurus/ssm.py``, ``SSMLayer``) is imported at run time from the
path the user gives, and nothing of it is copied or written anywhere. It imports torch, numpy and einops; where
einops is missing, install it outside the project's environment (``pip install --target DIR einops``) and put DIR
on ``PYTHONPATH`` for the run (the memory probes inherit the environment).

How our layers map to the reference's constructor, ``SSMLayer(num_states, in_channels, out_channels,
state_blocks, mode, norm, postact, ...)`` (keywords, from ``LAYERS`` in ``ssm_layers_setup.py``):

===========  ===================================================  ================================================
ours         reference                                            what differs
===========  ===================================================  ================================================
dws 64       num_states=16, 64 -> 64, mode="dws"                  its 1x1 conv has no bias, ours has one; its dt is
                                                                  per (channel, state), ours per channel
s5 J=4       num_states=16, 64 -> 64, state_blocks=4, mode="s5"   ours adds an output bias
neck J=4     num_states=16, 64 -> 64, state_blocks=4, mode="neck" ours adds an output bias
full 16->16  num_states=16, 16 -> 16, mode="full"                 ours adds an output bias; its dt is per (output
                                                                  channel, state), ours per output channel
===========  ===================================================  ================================================

Always ``norm=None, postact=None``: with its defaults (``"batch"``, ``"relu"``) the reference's dws mode puts a
BatchNorm and a ReLU between the depthwise SSM and the 1x1 conv, which ours does not have; its other modes add
nothing while ``use_activations=False`` (its default, kept). The same networks otherwise: states, blocks, a
diagonal complex A per state, the same weights (B, C, E) in each mode; a dt per state instead of per channel
changes the parameter count (in the JSON), not the work, since both broadcast dt to every state before use.
Initial values differ (its B, and E in dws and full, are constants, ours Gaussian; it draws the rest with numpy,
seeded here), which does not change the work done. Not compared: ``full 64->64`` (the reference's kernel builder
makes a (64, 64, 16, 16000) fp32 temporary, 4 GB, and centaurus.md has no eager figure for it) and ``group``
(the reference has no such mode).

Both layers are in training mode (the reference's ``run_mode`` ``"training"``: its FFT path; ours: the training
contraction order, which always FFTs). Eager against eager: the reference decorates its kernel builder with
``torch.compile``; each ``torch.compile``-decorated function in its imported modules is replaced there, at run
time, by the function it wraps (``_torchdynamo_orig_callable``), so neither side compiles. The JSON names them.

Timing: per mode and kind (forward with autograd on; forward+backward with the sum of the outputs as the loss,
``y.backward(ones)``), in one process and one thread setting: warm-up of both, then ours and the reference's
alternately, one call each per repeat (A B A B ...), so both see the same machine load. Speed-up = reference
median / our median; the goal is >= 2. Peak memory: the main table's method (``peak_memory``: VmHWM growth in a
fresh subprocess per side and kind).
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from model_zoo.runtime import keep_freed_memory
from ssm_layers_measure import in_subprocess, peak_memory
from ssm_layers_setup import BATCH, DESCRIPTION, LAYERS, LENGTH, make_input, make_layer, run_step, summary

__all__ = ["GOAL", "NOT_COMPARED", "load_reference", "reference_kwargs", "make_reference_layer", "interleaved",
           "compare_mode", "probe_reference_memory", "compare_with_reference", "print_reference"]

GOAL = 2.0  # reference time / ours: the issue's target speed-up
PACKAGE = "centaurus"  # the reference's package directory inside PATH
NOT_COMPARED = {
    "full64": "the reference's kernel builder makes a 4 GB temporary at (64, 64, 16, 16000) fp32; no eager figure",
    "group": "the reference has no group mode",
}


# ---- loading the reference ------------------------------------------------------------------------------------
def _commit(root: Path) -> str | None:
    """The checkout's HEAD commit, read from its .git directory (None for an archive without one)."""
    head = root / ".git" / "HEAD"
    if not head.is_file():
        return None
    ref = head.read_text().strip()
    if not ref.startswith("ref: "):
        return ref
    name = ref[5:]
    loose = root / ".git" / name
    if loose.is_file():
        return loose.read_text().strip()
    packed = root / ".git" / "packed-refs"
    for line in packed.read_text().splitlines() if packed.is_file() else []:
        if line.endswith(" " + name):
            return line.split()[0]
    return None


def _use_eager(modules: list) -> list[str]:
    """Replace each torch.compile-decorated function in ``modules`` by the function it wraps, so the reference
    runs eagerly like ours. ``torch.compiler.disable`` wrappers are left alone (they already run eagerly)."""
    unwrapped = []
    for module in modules:
        for name, value in list(vars(module).items()):
            orig = getattr(value, "_torchdynamo_orig_callable", None)
            if orig is None or getattr(value, "_torchdynamo_disable", False):
                continue
            if not str(getattr(orig, "__module__", "")).startswith(PACKAGE):
                continue  # something it imported from elsewhere: not its code
            setattr(module, name, orig)
            unwrapped.append(f"{module.__name__}.{name}")
    return sorted(unwrapped)


def load_reference(path: str | Path) -> tuple[type, dict]:
    """Import the reference's ``SSMLayer`` from the checkout at ``path``; returns the class and provenance.

    Raises ``FileNotFoundError`` when ``path`` is not a checkout and ``ImportError`` (with what is missing) when
    importing it fails."""
    root = Path(path).expanduser().resolve()
    if not (root / PACKAGE / "ssm.py").is_file():
        raise FileNotFoundError(f"{root} has no {PACKAGE}/ssm.py: not a checkout of github.com/Brainchip-Inc/Centaurus "
                                f"(git clone https://github.com/Brainchip-Inc/Centaurus {root})")
    # A package of the same name imported before (another checkout) would shadow this one: drop it.
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    try:
        ssm = importlib.import_module(f"{PACKAGE}.ssm")
    except ImportError as err:
        raise ImportError(f"importing the reference from {root} failed: {err} (it needs torch, numpy and einops; "
                          "install a missing one outside the project's environment, e.g. pip install --target DIR "
                          "einops, and put DIR on PYTHONPATH)") from err
    if not Path(ssm.__file__).resolve().is_relative_to(root):
        raise ImportError(f"{PACKAGE}.ssm was imported from {ssm.__file__}, not from {root}")
    modules = [m for n, m in sys.modules.items() if (n == PACKAGE or n.startswith(PACKAGE + ".")) and m is not None]
    info = {"path": str(root), "module": ssm.__file__, "commit": _commit(root), "eager_unwrapped": _use_eager(modules)}
    return ssm.SSMLayer, info


# ---- the layers -----------------------------------------------------------------------------------------------
def reference_kwargs(mode: str) -> dict:
    """The reference constructor's keywords for our layer ``mode`` (a key of ``LAYERS``), as in the docstring."""
    if mode in NOT_COMPARED:
        raise ValueError(f"{mode} is not compared: {NOT_COMPARED[mode]}")
    (in_channels, out_channels, states, kind), kwargs = LAYERS[mode]
    return {"num_states": states, "in_channels": in_channels, "out_channels": out_channels,
            "state_blocks": kwargs.get("blocks"), "mode": kind, "norm": None, "postact": None}


def make_reference_layer(cls: type, mode: str) -> torch.nn.Module:
    """The reference layer for ``mode``, seeded (it draws its initial weights with numpy as well as torch)."""
    torch.manual_seed(0)
    try:
        import numpy
        numpy.random.seed(0)
    except ImportError:  # a stand-in reference (the tests') may not need it
        pass
    return cls(**reference_kwargs(mode)).train()


# ---- timing ---------------------------------------------------------------------------------------------------
def interleaved(first: Callable[[], object], second: Callable[[], object], warmup: int,
                repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per call of ``first`` and ``second``, called alternately (A B A B ...) after ``warmup`` untimed
    calls of each, so that both see the same load on a shared machine."""
    for _ in range(warmup):
        first()
        second()
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return a, b


def compare_mode(cls: type, mode: str, warmup: int, repeats: int, batch: int = BATCH, length: int = LENGTH) -> dict:
    """Interleaved timings of our layer and the reference's for ``mode``: forward (autograd on) and
    forward+backward, with medians, the speed-up (reference / ours) and whether it reaches ``GOAL``."""
    ours, theirs = make_layer(mode).train(), make_reference_layer(cls, mode)
    x_ours, x_theirs = make_input(mode, batch=batch, length=length), make_input(mode, batch=batch, length=length)
    with torch.no_grad():  # both must map (B, C_in, L) to the same shape, or the comparison is void
        shapes = [tuple(layer(x).shape) for layer, x in ((ours, x_ours), (theirs, x_theirs))]
    if shapes[0] != shapes[1]:
        raise ValueError(f"{mode}: our output {shapes[0]} but the reference's {shapes[1]}")
    out = {"reference_kwargs": reference_kwargs(mode), "batch": batch, "length": length, "output_shape": shapes[0],
           "parameters": {"ours": sum(p.numel() for p in ours.parameters()),
                          "reference": sum(p.numel() for p in theirs.parameters())}}
    for kind in ("fwd", "fwdbwd"):
        a, b = interleaved(lambda: run_step(ours, x_ours, kind), lambda: run_step(theirs, x_theirs, kind),
                           warmup, repeats)
        ours_ms, ref_ms = summary(a), summary(b)
        speedup = ref_ms["median_ms"] / ours_ms["median_ms"]
        out[kind] = {"ours": ours_ms, "reference": ref_ms, "speedup": speedup,
                     "pair_speedup_median": statistics.median(tb / ta for ta, tb in zip(a, b)),
                     "meets_goal": speedup >= GOAL}
    return out


# ---- memory ---------------------------------------------------------------------------------------------------
def probe_reference_memory(args: list[str]) -> dict:
    """``--probe reference-memory SIDE MODE KIND BATCH LENGTH PATH``: peak memory of one call of our layer
    (SIDE ``ours``) or the reference's, in this fresh process, by the main table's method."""
    side, mode, kind, batch, length, path = args
    keep_freed_memory()
    if side == "ours":
        layer = make_layer(mode).train()
    else:
        cls, _ = load_reference(path)
        layer = make_reference_layer(cls, mode)
    return peak_memory(layer, make_input(mode, batch=int(batch), length=int(length)), kind)


def _memory(side: str, mode: str, batch: int, length: int, path: str) -> dict:
    return {kind: in_subprocess(["reference-memory", side, mode, kind, str(batch), str(length), path], 600)
            for kind in ("fwd", "fwdbwd")}


# ---- the whole comparison -------------------------------------------------------------------------------------
def compare_with_reference(path: str | Path, modes: list[str], warmup: int, repeats: int, *, memory: bool = True,
                           ours_memory: dict | None = None, batch: int = BATCH, length: int = LENGTH,
                           log: Callable[[str], None] = print) -> dict:
    """The comparison for each of ``modes`` the reference has (the others are listed as skipped, with why).
    ``ours_memory``: our peak memory per mode already measured at these shapes (the main table's), reused."""
    cls, info = load_reference(path)
    result = {**info, "goal_speedup": GOAL, "warmup": warmup, "repeats": repeats, "order": "A B A B (ours first)",
              "modes": {}, "skipped": {m: NOT_COMPARED[m] for m in modes if m in NOT_COMPARED}}
    for mode in (m for m in modes if m not in NOT_COMPARED):
        log(f"reference comparison: {DESCRIPTION[mode]}")
        try:
            row = compare_mode(cls, mode, warmup, repeats, batch, length)
        except Exception as err:  # one mode failing (out of memory, an API change) must not lose the others
            result["modes"][mode] = {"error": f"{type(err).__name__}: {err}"[:400]}
            continue
        if memory:
            known = (ours_memory or {}).get(mode)
            row["memory"] = {"ours": known or _memory("ours", mode, batch, length, str(path)),
                             "reference": _memory("reference", mode, batch, length, info["path"])}
        result["modes"][mode] = row
    return result


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_reference(result: dict) -> None:
    """The comparison's table, printed after the main one."""
    print(f"Same-run comparison with the reference implementation ({result['path']}, commit "
          f"{result['commit'] or 'unknown'}): eager vs eager, fp32, training mode, interleaved {result['order']}, "
          f"{result['warmup']} warm-up + {result['repeats']} runs each; median ms")
    head = (f"{'layer':13s} | {'fwd':>6s} {'ref':>6s} {'x ref':>5s} {'>=2x':>4s} | {'f+b':>6s} {'ref':>6s} "
            f"{'x ref':>5s} {'>=2x':>4s} | {'mem f':>6s} {'ref':>6s} | {'mem fb':>6s} {'ref':>6s}")
    print(head)
    print("-" * len(head))
    for mode, r in result["modes"].items():
        if "error" in r:
            print(f"{DESCRIPTION[mode]:13s} | failed: {r['error']}")
            continue
        cells = []
        for kind in ("fwd", "fwdbwd"):
            k = r[kind]
            cells.append(f"{_fmt(k['ours']['median_ms']):>6s} {_fmt(k['reference']['median_ms']):>6s} "
                         f"{_fmt(k['speedup'], 2):>5s} {'yes' if k['meets_goal'] else 'no':>4s}")
        mem = r.get("memory", {})
        for kind in ("fwd", "fwdbwd"):
            cells.append(" ".join(f"{_fmt(mem.get(side, {}).get(kind, {}).get('peak_mb')):>6s}"
                                  for side in ("ours", "reference")))
        print(f"{DESCRIPTION[mode]:13s} | " + " | ".join(cells))
    print(f"x ref = reference median / our median (speed-up; the goal is >= {GOAL:g}). Columns without a label: the "
          "reference. Memory: peak MB, as in the main table ('-': not measured or the probe failed, see the JSON).")
    if result["eager_unwrapped"]:
        print(f"  run eagerly: the reference's torch.compile-decorated {', '.join(result['eager_unwrapped'])}")
    for mode, why in result["skipped"].items():
        print(f"  {DESCRIPTION[mode]} not compared: {why}")
