"""Streaming speed of the shipped networks: batch 1, 20 ms chunks through ``step``, as a live stream runs.

    python bench/streaming.py                       # kws, denoise, asr; 1 thread and the default count
    python bench/streaming.py --threads 1 --seconds 30 --repeats 5
    python bench/streaming.py --source /tmp/old     # the model_zoo of another checkout (A/B, same weights)
    python bench/streaming.py --untrained           # build_network(task): the current architectures, random init

Per network (``model_zoo.load(task)`` when a checkpoint is listed, else ``build_network(task)`` with random
weights, in eval mode), a stream of ``--seconds`` of noise is fed in 320-sample (20 ms at 16 kHz) chunks under
``torch.inference_mode()`` (as the service steps streams), after a warm-up stream that fills the per-chunk-length
caches. Reported: real-time factor RTF = processing time / audio time (below 1 is faster than real time),
x real time = 1 / RTF, ms per chunk, the median over ``--repeats`` streams (taken round robin over the networks,
so that all see the same windows of a shared machine; the best is in the JSON), on wall
time and on the process's CPU time. The target is 20x real time (1 ms per 20 ms chunk).

On a shared machine wall time mostly measures the wait for a core; CPU time (``time.process_time``) is what
the step itself costs and is the number to compare under load. The header prints the load average and whether
training jobs are running. The last line of the output is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE, CHUNK = 16000, 320
TASKS = ("kws", "denoise", "asr")
TARGET_X_REAL_TIME = 20.0


def load_network(task: str, untrained: bool = False) -> tuple[torch.nn.Module, str]:
    """The shipped checkpoint of ``task`` if one is listed (and not ``untrained``), else a randomly initialised
    network of the default size."""
    import model_zoo
    from model_zoo.checkpoint import shipped_cards
    from model_zoo.nets import build_network

    listed = {card.task: card.name for card in shipped_cards()}
    if task in listed and not untrained:
        try:
            return model_zoo.load(listed[task]).eval(), f"checkpoint {listed[task]}"
        except Exception as err:  # noqa: BLE001 - a checkpoint behind its architecture: say so, measure anyway
            return build_network(task).eval(), f"build_network (random init; checkpoint failed: {type(err).__name__})"
    return build_network(task).eval(), "build_network (random init)"


def stream_once(net: torch.nn.Module, chunks: tuple[torch.Tensor, ...]) -> tuple[float, float]:
    """Wall and CPU seconds to step one whole stream."""
    with torch.inference_mode():
        state = net.init_state(1)
        wall, cpu = time.perf_counter(), time.process_time()
        for chunk in chunks:
            _, state = net.step(chunk, state)
        return time.perf_counter() - wall, time.process_time() - cpu


def measure_streaming(
    seconds: float, threads: int, repeats: int, tasks=TASKS, chunk: int = CHUNK, untrained: bool = False
) -> dict:
    """RTF of chunked streaming for each network at ``threads`` intra-op threads."""
    from model_zoo.nets import parameter_count

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    results = {}
    try:
        torch.manual_seed(2)
        audio = 0.1 * torch.randn(1, int(seconds * SAMPLE_RATE))
        chunks = audio.split(chunk, dim=-1)
        audio_s = audio.shape[-1] / SAMPLE_RATE
        nets = {task: load_network(task, untrained) for task in tasks}
        for net, _ in nets.values():
            stream_once(net, chunks[: max(1, len(chunks) // 4)])  # warm-up: caches per chunk length, allocator
        # Round robin, so that every network sees the same mix of fast and slow windows on a shared machine.
        all_runs: dict[str, list] = {task: [] for task in tasks}
        for _ in range(repeats):
            for task, (net, _) in nets.items():
                all_runs[task].append(stream_once(net, chunks))
        for task, (net, source) in nets.items():
            runs = all_runs[task]
            row = {"source": source, "parameters": parameter_count(net), "audio_s": audio_s, "chunks": len(chunks)}
            for clock, index in (("wall", 0), ("cpu", 1)):
                times = [r[index] for r in runs]
                rtf = statistics.median(times) / audio_s
                row[clock] = {
                    "rtf": rtf, "x_real_time": 1 / rtf, "ms_per_chunk": 1e3 * statistics.median(times) / len(chunks),
                    "best_rtf": min(times) / audio_s, "runs_s": times,
                }
            results[task] = row
    finally:
        torch.set_num_threads(previous)
    return {"threads": threads, "chunk_samples": chunk, "seconds": seconds, "repeats": repeats, "networks": results}


def training_jobs() -> list[str]:
    """Command lines of running training jobs (they share the cores and make wall times pessimistic)."""
    try:
        out = subprocess.run(["pgrep", "-fa", "training reproduce|training train"], capture_output=True, text=True)
    except OSError:
        return []
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


def print_table(stream: dict) -> None:
    print(f"Streaming, batch 1, {stream['chunk_samples']}-sample chunks, {stream['threads']} thread(s), "
          f"median of {stream['repeats']} x {stream['seconds']:g} s:")
    print(f"  {'network':8s} {'params':>9s} | {'wall RTF':>8s} {'x real':>7s} {'ms/chunk':>8s} | "
          f"{'CPU RTF':>8s} {'x real':>7s} {'ms/chunk':>8s} | target 20x   source")
    for task, r in stream["networks"].items():
        wall, cpu = r["wall"], r["cpu"]
        met = "met" if wall["x_real_time"] >= TARGET_X_REAL_TIME else (
            "CPU only" if cpu["x_real_time"] >= TARGET_X_REAL_TIME else "no")
        print(f"  {task:8s} {r['parameters']:9,d} | {wall['rtf']:8.4f} {wall['x_real_time']:7.1f} "
              f"{wall['ms_per_chunk']:8.2f} | {cpu['rtf']:8.4f} {cpu['x_real_time']:7.1f} {cpu['ms_per_chunk']:8.2f} | "
              f"{met:10s}   {r['source']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per stream")
    parser.add_argument("--repeats", type=int, default=3, help="streams per network (median reported)")
    parser.add_argument("--threads", type=int, nargs="*", default=None,
                        help="intra-op thread counts (default: 1 and torch's default)")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=TASKS)
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose model_zoo to import")
    parser.add_argument("--untrained", action="store_true",
                        help="build_network(task) with random weights instead of the shipped checkpoints")
    args = parser.parse_args()
    sys.path.insert(0, str(args.source.resolve()))
    import model_zoo
    from model_zoo.runtime import keep_freed_memory

    kept = keep_freed_memory()
    default_threads = torch.get_num_threads()
    threads = args.threads or sorted({1, default_threads})
    jobs = training_jobs()
    report = {
        "environment": {
            "torch": torch.__version__, "default_threads": default_threads, "cpu": platform.machine(),
            "cpus": os.cpu_count(), "load_start": list(os.getloadavg()), "training_jobs": jobs,
            "model_zoo": str(Path(model_zoo.__file__).parent), "keep_freed_memory": kept,
        },
        "target_x_real_time": TARGET_X_REAL_TIME,
        "streaming": {},
    }
    env = report["environment"]
    print(f"Streaming benchmark: model_zoo from {env['model_zoo']}, torch {env['torch']}, {env['cpus']} CPUs, "
          f"load average {env['load_start']} at start")
    if jobs:
        print(f"  {len(jobs)} training job(s) running: wall times are pessimistic, compare CPU times")
    for count in threads:
        stream = measure_streaming(args.seconds, count, args.repeats, args.tasks, untrained=args.untrained)
        report["streaming"][f"threads_{count}"] = stream
        print_table(stream)
    env["load_end"] = list(os.getloadavg())
    print(f"load average {env['load_end']} at end")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
