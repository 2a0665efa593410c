"""The measurements of ``bench/ssm_layers.py``: machine rates, eager timings, every contraction order, the floor
of the chosen order, memory and ``torch.compile`` in fresh subprocesses, and streaming with the shipped networks.
Each returns a JSON-ready dict."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from model_zoo.runtime import keep_freed_memory
from model_zoo.ssm.fftconv import fft_length
from ssm_layers_setup import (BATCH, CHANNELS, CHUNK, LENGTH, SAMPLE_RATE, make_input, make_layer, run_step, summary,
                              timed)

__all__ = ["machine_rates", "probe_memory", "peak_memory", "probe_compile", "in_subprocess", "measure_eager", "measure_plans",
           "floor_ms", "measure_streaming"]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().with_name("ssm_layers.py")  # runs a probe with --probe


# ---- machine rates --------------------------------------------------------------------------------------------
def machine_rates(repeats: int) -> dict:
    """fp32 matmul GFLOP/s (a 1024^3 product: the best case) and real-FFT GFLOP/s at the layers' transform
    length (``n = fft_length(16000)``, 512 rows, ``2.5 n log2 n`` FLOPs per row)."""
    a = torch.randn(1024, 1024)
    mm = min(timed(lambda: a @ a, 2, repeats))
    n = fft_length(LENGTH)
    rows = torch.randn(BATCH * CHANNELS, n)
    fft = min(timed(lambda: torch.fft.rfft(rows), 2, repeats))
    spectra = torch.fft.rfft(rows)
    ifft = min(timed(lambda: torch.fft.irfft(spectra, n=n), 2, repeats))
    fft_flops = BATCH * CHANNELS * 2.5 * n * math.log2(n)
    return {
        "matmul_gflops": 2 * 1024**3 / mm / 1e9,
        "rfft_gflops": fft_flops / fft / 1e9,
        "irfft_gflops": fft_flops / ifft / 1e9,
        "fft_gflops": 2 * fft_flops / (fft + ifft) / 1e9,
        "fft_n": n,
        "rfft_512_rows_ms": 1e3 * fft,
        "irfft_512_rows_ms": 1e3 * ifft,
        "method": "best of repeated runs; matmul 1024x1024x1024; rfft/irfft of (512, n) at the layers' n",
    }


# ---- subprocess probes ----------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def probe_memory(mode: str, kind: str) -> dict:
    """Peak resident-set growth (MB) of one call, in this (fresh) process."""
    keep_freed_memory()
    return peak_memory(make_layer(mode), make_input(mode), kind)


def peak_memory(layer: torch.nn.Module, x: torch.Tensor, kind: str) -> dict:
    """Peak resident-set growth (MB) of one ``run_step(layer, x, kind)`` over the resident set before it. Any
    layer: the same-run comparison with the reference implementation measures its layer this way too."""
    base = _status_kb("VmRSS")
    try:  # reset the high-water mark to the current resident set (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss (not reset)"
    run_step(layer, x, kind)
    peak = _status_kb("VmHWM")
    return {"peak_mb": (peak - base) / 1024, "method": method}


def probe_compile(mode: str, warmup: int, repeats: int) -> dict:
    """torch.compile the layer: compile time (first forward and first backward) and steady-state timings."""
    keep_freed_memory()
    layer, x = make_layer(mode), make_input(mode)
    compiled = torch.compile(layer)
    start = time.perf_counter()
    y = compiled(x)
    first_fwd = time.perf_counter() - start
    start = time.perf_counter()
    y.backward(torch.ones_like(y))
    first_bwd = time.perf_counter() - start
    fwd = timed(lambda: run_step(compiled, x, "fwd"), warmup, repeats)
    fwdbwd = timed(lambda: run_step(compiled, x, "fwdbwd"), warmup, repeats)
    eager = layer(x)
    err = ((compiled(x) - eager).norm() / eager.norm()).item()
    return {
        "ok": True, "compile_fwd_s": first_fwd, "compile_bwd_s": first_bwd, "fwd": summary(fwd),
        "fwdbwd": summary(fwdbwd), "rel_error_vs_eager": err,
    }


def in_subprocess(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(SCRIPT), "--probe", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"ok": False, "error": " | ".join(tail)[-400:] or f"exit code {done.returncode}"}
    return json.loads(lines[-1])


# ---- per-mode measurements ------------------------------------------------------------------------------------
def measure_eager(mode: str, warmup: int, repeats: int) -> dict:
    layer, x = make_layer(mode), make_input(mode)
    out = {}
    for kind in ("fwd", "fwd_nograd", "fwdbwd"):
        out[kind] = summary(timed(lambda: run_step(layer, x, kind), warmup, repeats))
    return out


def _signature(plan) -> frozenset:
    """Orders that perform the same pairwise steps (in another sequence) compute the same thing."""
    def step(s) -> tuple:
        inputs, out = s.equation.split("->")
        return s.kind, frozenset(frozenset(op) for op in inputs.split(",")), frozenset(out)

    return frozenset(step(s) for s in plan.steps)


def measure_plans(mode: str, warmup: int, repeats: int, max_ratio: float, budget_s: float) -> dict:
    """Forward (no_grad) time of every distinct order whose estimate is within ``max_ratio`` of the chosen one
    and whose largest intermediate fits the layer's memory limit, cheapest estimate first, for at most
    ``budget_s`` seconds (the chosen order always runs)."""
    layer, x = make_layer(mode), make_input(mode, requires_grad=False)
    # The order inference uses (no_grad): the cheaper of scan and FFT. Training (the fwd column) always FFTs.
    chosen = layer.contraction_plan(BATCH, LENGTH, "auto")
    groups: dict[frozenset, list] = {}
    for plan in layer.candidate_plans(BATCH, LENGTH):
        groups.setdefault(_signature(plan), []).append(plan)
    rows = []
    started = time.perf_counter()
    for plans in sorted(groups.values(), key=lambda ps: min(p.cost for p in ps)):
        plan = chosen if chosen in plans else min(plans, key=lambda p: p.cost)
        row = {
            "steps": " ; ".join(f"{s.kind}:{s.equation}" for s in plan.steps),
            "orders": len(plans), "cost": plan.cost, "fft_flops": plan.fft_flops,
            "cost_vs_chosen": plan.cost / chosen.cost, "peak_elements": plan.peak_elements,
            "chosen": plan is chosen,
        }
        if layer.memory_limit is not None and plan.peak_elements > layer.memory_limit:
            row["skipped"] = f"largest intermediate {plan.peak_elements * 4 / 2**30:.1f} GB > memory limit"
        elif plan is not chosen and plan.cost > max_ratio * chosen.cost:
            row["skipped"] = f"estimated {plan.cost / chosen.cost:.0f}x the chosen order"
        elif plan is not chosen and time.perf_counter() - started > budget_s:
            row["skipped"] = f"time budget of {budget_s:.0f} s for this layer used"
        else:
            row["fwd"] = summary(timed(lambda: run_step(layer, x, "fwd_nograd", plan), warmup, repeats))
        rows.append(row)
    rows.sort(key=lambda r: r["cost"])
    measured = [r for r in rows if "fwd" in r]
    fastest = min(measured, key=lambda r: r["fwd"]["median_ms"])
    return {
        "candidates": len(layer.candidate_plans(BATCH, LENGTH)), "distinct": len(rows), "plans": rows,
        "chosen_is_fastest": fastest["chosen"],
        "fastest_vs_chosen": fastest["fwd"]["median_ms"] / next(r for r in rows if r["chosen"])["fwd"]["median_ms"],
        "chosen_describe": chosen.describe(),
    }


def floor_ms(mode: str, rates: dict) -> dict:
    """Forward floor of the chosen order: its FFT FLOPs at the FFT rate plus its other FLOPs (products, scan,
    basis) at the best matmul rate. Memory traffic is not counted, so the floor is optimistic."""
    plan = make_layer(mode).contraction_plan(BATCH, LENGTH)
    other = plan.other_flops
    ms = 1e3 * (other / (rates["matmul_gflops"] * 1e9) + plan.fft_flops / (rates["fft_gflops"] * 1e9))
    return {"planner_cost": plan.cost, "fft_flops": plan.fft_flops, "other_flops": other, "floor_ms": ms,
            "kinds": [s.kind for s in plan.steps]}


# ---- streaming ------------------------------------------------------------------------------------------------
def measure_streaming(seconds: float, threads: int, cap_s: float) -> dict:
    """Real-time factor of chunked streaming for each shipped network (batch 1, no_grad, 20 ms chunks)."""
    import model_zoo
    from model_zoo.checkpoint import shipped_cards
    from model_zoo.nets import build_network, parameter_count

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    listed = {card.task: card.name for card in shipped_cards()}
    results = {}
    try:
        for task in ("kws", "denoise", "asr"):
            if task in listed:
                net, source = model_zoo.load(listed[task]), f"checkpoint {listed[task]}"
            else:
                net, source = build_network(task), "build_network (random init)"
            net = net.eval()
            torch.manual_seed(2)
            audio = 0.1 * torch.randn(1, int(seconds * SAMPLE_RATE))
            chunks = audio.split(CHUNK, dim=-1)
            with torch.no_grad():
                state = net.init_state(1)
                for chunk in chunks[:5]:  # warm-up: caches per chunk length, allocator
                    _, state = net.step(chunk, state)
                state = net.init_state(1)
                start, done = time.perf_counter(), 0
                for chunk in chunks:
                    _, state = net.step(chunk, state)
                    done += chunk.shape[-1]
                    if time.perf_counter() - start > cap_s:
                        break
                elapsed = time.perf_counter() - start
            audio_s = done / SAMPLE_RATE
            rtf = elapsed / audio_s
            results[task] = {
                "source": source, "parameters": parameter_count(net), "audio_s": audio_s, "elapsed_s": elapsed,
                "rtf": rtf, "x_faster_than_real_time": 1 / rtf, "ms_per_chunk": 1e3 * elapsed / (done / CHUNK),
                "capped": done < audio.shape[-1],
            }
    finally:
        torch.set_num_threads(previous)
    return {"threads": threads, "chunk_samples": CHUNK, "networks": results}
