"""Benchmark of the Centaurus SSM layer (every connection mode) and of streaming with the shipped networks.

    python bench/ssm_layers.py            # full run, under ~20 minutes on 2 cores
    python bench/ssm_layers.py --quick    # a minute or two: fewer repeats, no full 64 -> 64, no torch.compile
    python bench/ssm_layers.py --threads 1 --no-compile   # one intra-op thread (see bench/README.md)
    python bench/ssm_layers.py --reference /tmp/centaurus-ref --modes s5 neck --quick   # + the reference, same run

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
  and our ratio to the target (< 1 meets it);
- with ``--reference PATH`` (a local checkout of github.com/Brainchip-Inc/Centaurus, imported at run time, never
  copied: its licence is non-commercial), the reference's layer in the same process for each mode it has,
  alternating with ours repeat by repeat, eager against eager: forward and forward+backward medians, the
  speed-up (reference / ours, goal >= 2) and peak memory of each (``ssm_layers_reference.py``, which also
  says how each mode maps to the reference's arguments). ``--reference-only`` skips everything else.

The table comes first; the last line of the output is one JSON object with every number.

This file is the command line; the setup (layers, input, reference numbers, timing loop) is in
``ssm_layers_setup.py``, the measurements in ``ssm_layers_measure.py``, the table in ``ssm_layers_report.py`` and
the same-run comparison with the reference in ``ssm_layers_reference.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):  # the project, and this script's sibling modules (bench/ssm_layers_*.py)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from model_zoo.runtime import keep_freed_memory  # noqa: E402
from ssm_layers_measure import (floor_ms, in_subprocess, machine_rates, measure_eager, measure_plans,  # noqa: E402
                                measure_streaming, probe_compile, probe_memory)
from ssm_layers_reference import (compare_with_reference, load_reference, print_reference,  # noqa: E402
                                  probe_reference_memory)
from ssm_layers_report import print_report  # noqa: E402
from ssm_layers_setup import (BATCH, CHANNELS, DESCRIPTION, LAYERS, LENGTH, STATES, STREAM_SECONDS,  # noqa: E402
                              load_average, target)


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
    parser.add_argument("--reference", metavar="PATH",
                        help="local checkout of github.com/Brainchip-Inc/Centaurus: time its layer against ours, "
                             "interleaved in this process (imported from PATH at run time)")
    parser.add_argument("--reference-only", action="store_true",
                        help="with --reference: only the comparison (no plans, compile, streaming, main table)")
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_only and not args.reference:
        parser.error("--reference-only needs --reference PATH")
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["CENTAURUS_BENCH_THREADS"] = str(args.threads)
    elif os.environ.get("CENTAURUS_BENCH_THREADS"):  # a probe started by a run with --threads
        torch.set_num_threads(int(os.environ["CENTAURUS_BENCH_THREADS"]))

    if args.probe:  # internal: one measurement in a fresh process, printed as JSON
        kind, mode, *rest = args.probe
        if kind == "reference-memory":
            result = probe_reference_memory(args.probe[1:])
        elif kind == "memory":
            result = probe_memory(mode, rest[0])
        else:
            result = probe_compile(mode, int(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return

    if args.reference:  # fail now, not after the rest of the run, when the checkout or a package is missing
        try:
            load_reference(args.reference)
        except (ImportError, FileNotFoundError) as err:
            parser.error(f"--reference: {err}")

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
    if not args.reference_only:
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
    if args.reference:
        print(f"[{time.time() - started:5.0f} s] reference comparison", flush=True)
        # Our peak memory from the main table when it ran: same probe, same shapes.
        ours_memory = {m: r["memory"] for m, r in report.get("layers", {}).items()}
        report["reference_interleaved"] = compare_with_reference(args.reference, modes, warmup, repeats,
                                                                 ours_memory=ours_memory)
    env["load_end"] = load_average()
    env["wall_s"] = time.time() - started
    print()
    if not args.reference_only:
        print_report(report)
    if args.reference:
        print()
        print_reference(report["reference_interleaved"])
    print(f"(wall time {env['wall_s']:.0f} s)")
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
