"""Benchmark of the Centaurus SSM layer (every connection mode) and of streaming with the shipped networks.

    python bench/ssm_layers.py            # full run, under ~20 minutes on 2 cores
    python bench/ssm_layers.py --quick    # a minute or two: fewer repeats, no full 64 -> 64, no torch.compile
    python bench/ssm_layers.py --threads 1 --no-compile   # one intra-op thread (see bench/README.md)

Measured at batch 8, 64 channels, 16 states, length 16000, fp32, on the CPU:

- per mode, eager: forward (autograd on, as in training), forward under ``torch.no_grad``, forward+backward
  (median of several runs after warm-up), and peak memory of forward and of forward+backward, each in a
  fresh subprocess: growth of the resident set's high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs``) over the resident set before the call, so it counts every allocation torch makes
  on the CPU (tracemalloc does not see them);
- per mode, ``torch.compile``: in a subprocess with a time limit (compiling a layer takes minutes here, and
  complex FFT code may fail or fall back); compile time and the same timings, or the error;
- per mode, every contraction order the planner considers (orders doing the same steps are grouped):
  estimated cost and measured forward time, and whether the chosen order is the fastest measured;
- the floor of the chosen order: its non-FFT FLOPs at this machine's fp32 matmul rate plus its FFT FLOPs at
  this machine's real-FFT rate (``2.5 n log2 n`` per transform), and measured / floor;
- streaming: each shipped network (``model_zoo.load`` when a checkpoint is listed, else
  ``build_network(task)`` with random weights), batch 1, ``torch.no_grad``, 20 ms chunks for 10 s of audio:
  real-time factor (processing time / audio time) with one intra-op thread and with the default count;
- the reference implementation's timings from centaurus.md, the target (2x faster than its eager numbers)
  and our ratio to the target (< 1 meets it).

The table comes first; the last line of the output is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model_zoo.runtime import keep_freed_memory  # noqa: E402
from model_zoo.ssm.centaurus import SSMLayer  # noqa: E402
from model_zoo.ssm.fftconv import fft_length  # noqa: E402

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


def make_input(mode: str, requires_grad: bool = True) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(BATCH, LAYERS[mode][0][0], LENGTH, requires_grad=requires_grad)


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


def fmt(value, digits: int = 0, none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


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
    layer, x = make_layer(mode), make_input(mode)
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
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", *args]
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
    from model_zoo.nets import build_network, parameter_count

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    listed = {m["task"]: m["name"] for m in model_zoo.list_models()}
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


# ---- report ---------------------------------------------------------------------------------------------------
def print_report(report: dict) -> None:
    env = report["environment"]
    print(f"Centaurus SSM layer benchmark: B={BATCH}, C={CHANNELS}, N={STATES}, L={LENGTH}, fp32, CPU")
    print(f"torch {env['torch']}, torch.get_num_threads() = {env['threads']}, {env['cpu']}, "
          f"load average {env['load_start']} at start, {env['load_end']} at end")
    print(f"keep_freed_memory() called: {env['keep_freed_memory']} (glibc keeps freed memory, no page faults "
          "on every large allocation)")
    rates = report["rates"]
    print(f"machine: fp32 matmul {rates['matmul_gflops']:.1f} GFLOP/s, real FFT {rates['fft_gflops']:.1f} GFLOP/s "
          f"(n = {rates['fft_n']}: rfft of 512 rows {rates['rfft_512_rows_ms']:.0f} ms, irfft "
          f"{rates['irfft_512_rows_ms']:.0f} ms)")
    print()
    head = (f"{'layer':13s} | {'fwd':>6s} {'ref E':>6s} {'target':>6s} {'ratio':>5s} | {'f+b':>6s} {'ref E':>6s} "
            f"{'target':>6s} {'ratio':>5s} | {'nograd':>6s} | {'mem f':>6s} {'mem fb':>6s} | {'cmp f':>6s} "
            f"{'cmp fb':>6s} {'ref C f':>7s} {'ref C fb':>8s} | {'floor':>6s} {'x flr':>5s}")
    print("Eager and compiled timings (median ms), peak memory (MB), floor of the chosen order (ms)")
    print(head)
    print("-" * len(head))
    for mode, r in report["layers"].items():
        e, ref, c = r["eager"], REFERENCE[mode], r.get("compile", {})
        cf = c["fwd"]["median_ms"] if c.get("ok") else None
        cfb = c["fwdbwd"]["median_ms"] if c.get("ok") else None
        cmp_note = "" if c.get("ok") or not c else ("skip" if c.get("skipped") else "fail")
        mem = r.get("memory", {})
        print(
            f"{DESCRIPTION[mode]:13s} | {fmt(e['fwd']['median_ms']):>6s} {fmt(ref['fwd_eager']):>6s} "
            f"{fmt(r['target_fwd']):>6s} {fmt(r['ratio_fwd'], 2):>5s} | {fmt(e['fwdbwd']['median_ms']):>6s} "
            f"{fmt(ref['fwdbwd_eager']):>6s} {fmt(r['target_fwdbwd']):>6s} {fmt(r['ratio_fwdbwd'], 2):>5s} | "
            f"{fmt(e['fwd_nograd']['median_ms']):>6s} | {fmt(mem.get('fwd', {}).get('peak_mb')):>6s} "
            f"{fmt(mem.get('fwdbwd', {}).get('peak_mb')):>6s} | {fmt(cf, none=cmp_note or '-'):>6s} "
            f"{fmt(cfb, none=cmp_note or '-'):>6s} {fmt(ref['fwd_compiled']):>7s} {fmt(ref['fwdbwd_compiled']):>8s} | "
            f"{fmt(r['floor']['floor_ms']):>6s} {fmt(e['fwd']['median_ms'] / r['floor']['floor_ms'], 1):>5s}"
        )
    print("ratio = ours / target (target = reference eager / 2; < 1 meets it). x flr = measured fwd / floor.")
    failures = {m: r["compile"]["error"] for m, r in report["layers"].items() if r.get("compile") and not r["compile"].get("ok")}
    for mode, err in failures.items():
        print(f"  torch.compile {DESCRIPTION[mode]}: {err}")
    compiled = {m: r["compile"] for m, r in report["layers"].items() if r.get("compile", {}).get("ok")}
    for mode, c in compiled.items():
        print(f"  torch.compile {DESCRIPTION[mode]}: compile {c['compile_fwd_s']:.0f} s fwd + {c['compile_bwd_s']:.0f} s "
              f"bwd, relative error vs eager {c['rel_error_vs_eager']:.1e}")
    print()
    print("Contraction orders (forward under no_grad, median ms; orders doing the same steps grouped)")
    for mode, r in report["layers"].items():
        p = r.get("plans")
        if not p:
            continue
        fl = r["floor"]
        print(f"{DESCRIPTION[mode]}: {p['candidates']} orders, {p['distinct']} distinct; chosen is fastest measured: "
              f"{p['chosen_is_fastest']}; chosen: {fl['fft_flops'] / 1e9:.2f} GFLOP in FFTs + "
              f"{fl['other_flops'] / 1e9:.2f} GFLOP other -> floor {fl['floor_ms']:.0f} ms")
        skipped = [row for row in p["plans"] if "fwd" not in row]
        for row in [row for row in p["plans"] if "fwd" in row] + skipped[:2]:
            mark = "*" if row["chosen"] else " "
            timing = fmt(row["fwd"]["median_ms"]) + " ms" if "fwd" in row else row["skipped"]
            print(f"  {mark} cost {row['cost']:.2e} ({row['cost_vs_chosen']:6.1f}x)  {timing:>42s}  {row['steps']}")
        if len(skipped) > 2:
            print(f"    ... {len(skipped) - 2} more not run (estimated dearer still; all in the JSON)")
    print()
    for key, stream in report["streaming"].items():
        print(f"Streaming, batch 1, no_grad, {CHUNK}-sample (20 ms) chunks, {stream['threads']} thread(s):")
        for task, s in stream["networks"].items():
            capped = f" (time cap: {s['audio_s']:.1f} s of audio)" if s["capped"] else ""
            print(f"  {task:8s} {s['parameters']:>9,d} params  RTF {s['rtf']:.3f}  "
                  f"{s['x_faster_than_real_time']:.2f}x real time  {s['ms_per_chunk']:.1f} ms/chunk  "
                  f"[{s['source']}]{capped}")
    print()
    print("Memory: peak growth of the resident set (VmHWM reset by clear_refs) during one call in a fresh process.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a run of a minute or two")
    parser.add_argument("--modes", nargs="*", choices=list(LAYERS), help="layers to measure (default: all)")
    parser.add_argument("--compile", dest="compile", action="store_true", default=None,
                        help="measure torch.compile (default: on in the full run, off with --quick)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--compile-timeout", type=float, default=300.0, help="seconds per compile subprocess")
    parser.add_argument("--compile-budget", type=float, default=600.0, help="seconds for all compile runs")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for the whole run (subprocesses too)")
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["CENTAURUS_BENCH_THREADS"] = str(args.threads)
    elif os.environ.get("CENTAURUS_BENCH_THREADS"):  # a probe started by a run with --threads
        torch.set_num_threads(int(os.environ["CENTAURUS_BENCH_THREADS"]))

    if args.probe:  # internal: one measurement in a fresh process, printed as JSON
        kind, mode, *rest = args.probe
        result = probe_memory(mode, rest[0]) if kind == "memory" else probe_compile(mode, int(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return

    started = time.time()
    freed = keep_freed_memory()
    quick = args.quick
    modes = args.modes or [m for m in LAYERS if not (quick and m == "full64")]
    do_compile = (not quick) if args.compile is None else args.compile
    warmup, repeats = (1, 3) if quick else (2, 7)
    env = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "keep_freed_memory": freed, "load_start": load_average(), "quick": quick,
        "python": platform.python_version(),
    }
    print(f"keep_freed_memory() -> {freed}; torch.get_num_threads() = {env['threads']}; load {env['load_start']}",
          flush=True)
    report: dict = {"environment": env, "setup": {"batch": BATCH, "channels": CHANNELS, "states": STATES,
                                                  "length": LENGTH, "dtype": "float32"}}
    report["rates"] = machine_rates(3 if quick else 5)
    report["layers"] = {}
    compile_spent = 0.0
    for mode in modes:
        print(f"[{time.time() - started:5.0f} s] {DESCRIPTION[mode]}", flush=True)
        slow = mode == "full64"
        w, r = (1, 3) if slow else (warmup, repeats)
        layer_report = {"eager": measure_eager(mode, w, r)}
        e = layer_report["eager"]
        for kind in ("fwd", "fwdbwd"):
            t = target(mode, kind)
            layer_report[f"target_{kind}"] = t
            layer_report[f"ratio_{kind}"] = None if t is None else e[kind]["median_ms"] / t
        layer_report["memory"] = {kind: in_subprocess(["memory", mode, kind], 600) for kind in ("fwd", "fwdbwd")}
        layer_report["floor"] = floor_ms(mode, report["rates"])
        layer_report["plans"] = measure_plans(mode, 1, 1 if slow else (2 if quick else 3), 5.0 if quick else 10.0,
                                              20.0 if quick else 60.0)
        if do_compile:
            if compile_spent > args.compile_budget:
                layer_report["compile"] = {"ok": False, "skipped": True,
                                           "error": f"skipped: compile budget of {args.compile_budget:.0f} s used"}
            else:
                start = time.time()
                cw, cr = (1, 2) if slow else (1, 5)
                layer_report["compile"] = in_subprocess(["compile", mode, str(cw), str(cr)], args.compile_timeout)
                compile_spent += time.time() - start
        report["layers"][mode] = layer_report
    print(f"[{time.time() - started:5.0f} s] streaming", flush=True)
    seconds = 3.0 if quick else STREAM_SECONDS
    report["streaming"] = {"threads_1": measure_streaming(seconds, 1, cap_s=60.0)}
    if not quick and torch.get_num_threads() != 1:
        report["streaming"][f"threads_{torch.get_num_threads()}"] = measure_streaming(
            seconds, torch.get_num_threads(), cap_s=60.0)
    env["load_end"] = load_average()
    env["wall_s"] = time.time() - started
    print()
    print_report(report)
    print(f"(wall time {env['wall_s']:.0f} s)")
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
