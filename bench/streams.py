"""Capacity: how many live real-time streams a server holds at low latency, per task.

For each task (``--tasks denoise,asr,kws``) and each count N (``--streams``, default 1,8,16,32,64,128) it opens N
websockets to ``/v1/stream/{task}`` at once, each asking for ``--step-ms`` of audio per model step (default 20;
``--step-ms 0`` takes the server's default), and sends ``--seconds`` of 16 kHz ``pcm_s16le`` in ``--frame-ms``
frames at real-time pace on an absolute clock (one asyncio task per stream; the N streams' frame phases are
spread evenly over one frame). The latency of a frame is the time from sending it to receiving the output that
completes it (the denoised samples covering it; for asr and kws the ``input.progress`` message the session asks
for, which follows the step's partial transcript or detections): ``bench/streams_session.py``. So it includes
waiting for the step to fill (a 20 ms step of the denoiser is 24 ms: its 8 ms blocks; of the recognizer 30 ms:
its frame), the model and queueing. Each stream sends the same clip from a different point in it (``rotated``),
so that their pauses, and the finals there, do not all come at once.

Per cell it reports latency p50, p99 and max over every frame after the first ``--warmup`` seconds of each
stream; the streams that fell behind (audio sent but not answered exceeded one step + one frame +
``--max-lag-ms``), were refused or closed; dropped frames (never answered by the end of the session); the
server's CPU (its process and every descendant, psutil when installed, else /proc: cores busy on average while
the frames were sent; with ``--url``, give ``--server-pid``); the client's own CPU; and how late the client
sent (p99: a client that cannot keep its own schedule measures itself, not the server). A cell holds when p99
is under ``--target-ms`` (50) with nothing behind, closed or dropped; per task, the largest N that holds is
its capacity. A task's sweep stops at its first failing N (``--keep-going`` runs them all).

    python bench/streams.py                                      # starts a server (shipped models, a worker per core)
    python bench/streams.py --streams 1,4 --tasks denoise --seconds 5
    python bench/streams.py --url http://127.0.0.1:8000 --server-pid 1234 --tasks asr
    python bench/streams.py --random-models /tmp/m --set max_batch_size=32
    python bench/streams.py --tasks asr --start asr.beam_search=false    # greedy finals

A started server gets ``stream_max_sessions`` = the largest N and ``queue_limit`` = the largest N + 16 (each
stream has at most one step waiting), so admission limits do not cap the measurement; ``--set NAME=VALUE``
overrides any setting, ``--start TASK.NAME=JSON`` adds a field to a task's ``session.start``. The table comes
first, the last line is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from service import clip, make_random_models, start_server
from streams_session import RATE, PacedStream, tree_cpu_seconds

TASKS = ("denoise", "asr", "kws")


def percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 2) if len(values) else None


def rotated(pcm: bytes, k: int, count: int, frame_samples: int) -> bytes:
    """Stream ``k`` of ``count`` starts ``k / count`` of the way into the clip (whole frames of 16-bit samples):
    with one clip for all, every transcript stream would reach a pause, and cut an utterance (a beam search), at
    the same moment, which independent callers do not."""
    frames = len(pcm) // (2 * frame_samples)
    at = 2 * frame_samples * (k * frames // max(1, count))
    return pcm[at:] + pcm[:at]


async def cell(args: argparse.Namespace, base: str, task: str, count: int, pcm: bytes, server_pid: int | None) -> dict:
    """``count`` concurrent streams of ``task`` for ``--seconds``; one row of the table."""
    frame_samples = int(round(RATE * args.frame_ms / 1000))
    frames = int(args.seconds * 1000 / args.frame_ms)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    url = "ws" + base[4:] if base.startswith("http") else base
    streams = [PacedStream(task, url.rstrip("/"), headers, rotated(pcm, k, count, frame_samples), frames,
                           frame_samples, args.step_ms or None, timeout=args.stream_timeout,
                           options=args.start_options.get(task, {})) for k in range(count)]
    opened = await asyncio.gather(*(s.open() for s in streams))
    running = [s for s, ok in zip(streams, opened) if ok]
    period = frame_samples / RATE
    t0 = time.monotonic() + 0.5
    cpu0, client0, wall0 = None, None, None

    async def mark_start() -> None:
        nonlocal cpu0, client0, wall0
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        cpu0, client0, wall0 = tree_cpu_seconds(server_pid), time.process_time(), time.monotonic()

    marker = asyncio.create_task(mark_start())
    sending = [asyncio.create_task(s.run(t0, k * period / max(1, len(running)))) for k, s in enumerate(running)]
    # The CPU window ends when the last frame is due, before the sessions end (and drain, and close).
    await asyncio.sleep(max(0.0, t0 + frames * period - time.monotonic()))
    await marker
    cpu1, client1, wall1 = tree_cpu_seconds(server_pid), time.process_time(), time.monotonic()
    await asyncio.gather(*sending)

    skip = int(args.warmup * 1000 / args.frame_ms)
    latencies = np.concatenate([s.latencies(skip) for s in running]) if running else np.zeros(0)
    started = next((s.started for s in running if s.started), None) or {}
    step_samples = started.get("step_samples")
    allowed = (step_samples or 0) / started.get("sample_rate", RATE) * RATE + frame_samples \
        + args.max_lag_ms / 1000 * RATE
    late = np.array([x for s in running for x in s.late])
    wall = (wall1 - wall0) if wall0 is not None else 0.0
    server_cores = None if cpu0 is None or cpu1 is None or wall <= 0 else round((cpu1 - cpu0) / wall, 3)
    row = {
        "task": task, "streams": count, "frame_ms": args.frame_ms, "step_ms": started.get("step_ms"),
        "step_samples": step_samples, "frames_per_stream": frames, "frames_measured": int(len(latencies)),
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "max_ms": round(float(latencies.max()) * 1000, 2) if len(latencies) else None,
        "refused": sum(1 for s in streams if s.started is None),
        "closed": sum(1 for s in running if not s.ended),
        "behind": sum(1 for s in running if s.max_lag > allowed),
        "max_lag_ms": round(max((s.max_lag for s in running), default=0) / RATE * 1000, 1),
        "dropped_frames": int(sum(frames - s.complete for s in streams)),
        "server_cores": server_cores,
        "client_cores": round((client1 - client0) / wall, 3) if wall > 0 else None,
        "send_late_p99_ms": percentile(late, 99),
        "errors": sorted({e for s in streams for e in s.errors})[:5],
        "close_reasons": sorted({s.closed for s in streams if s.closed})[:5],
    }
    row["holds"] = bool(row["p99_ms"] is not None and row["p99_ms"] < args.target_ms and not row["refused"]
                        and not row["closed"] and not row["behind"] and not row["dropped_frames"])
    return row


def fmt(value, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    print(f"{'task':<8}{'N':>5}{'step':>6}{'p50':>8}{'p99':>8}{'max':>8}{'behind':>7}{'closed':>7}{'dropped':>8}"
          f"{'srv cores':>10}{'cli cores':>10}{'late p99':>9}  holds")
    for r in rows:
        print(f"{r['task']:<8}{r['streams']:>5}{fmt(r['step_ms'], 'g'):>6}{fmt(r['p50_ms'], '.1f'):>8}"
              f"{fmt(r['p99_ms'], '.1f'):>8}{fmt(r['max_ms'], '.1f'):>8}{r['behind']:>7}"
              f"{r['closed'] + r['refused']:>7}{r['dropped_frames']:>8}{fmt(r['server_cores'], '.2f'):>10}"
              f"{fmt(r['client_cores'], '.2f'):>10}{fmt(r['send_late_p99_ms'], '.1f'):>9}  "
              f"{'yes' if r['holds'] else 'no'}")
    for r in rows:
        for note in r["close_reasons"] + r["errors"]:
            print(f"  {r['task']} x{r['streams']}: {note}")


async def sweep(args: argparse.Namespace, base: str, server_pid: int | None) -> list[dict]:
    pcm = clip(args.seconds + 1.0)[44:]  # a modulated glide plus noise, the soak's speech-like load
    rows = []
    for task in args.tasks:
        for count in args.streams:
            row = await cell(args, base, task, count, pcm, server_pid)
            rows.append(row)
            print(f"# {task} x{count}: p50 {fmt(row['p50_ms'])} ms, p99 {fmt(row['p99_ms'])} ms, "
                  f"{'holds' if row['holds'] else 'does not hold'}", file=sys.stderr, flush=True)
            await asyncio.sleep(args.pause)  # let the last sessions close before the next cell
            if not row["holds"] and not args.keep_going:
                break
    return rows


def capacity(rows: list[dict], tasks: list[str]) -> dict[str, int]:
    """Per task, the largest N that held (0: none did)."""
    return {task: max((r["streams"] for r in rows if r["task"] == task and r["holds"]), default=0) for task in tasks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start one on loopback)")
    parser.add_argument("--server-pid", type=int, help="with --url: the local server's pid, for its CPU")
    parser.add_argument("--api-key", default=os.environ.get("CENTAURUS_API_KEY"))
    parser.add_argument("--streams", type=lambda s: [int(n) for n in s.split(",")], default=[1, 8, 16, 32, 64, 128])
    parser.add_argument("--tasks", type=lambda s: s.split(","), default=list(TASKS), help="comma list: denoise,asr,kws")
    parser.add_argument("--seconds", type=float, default=15.0, help="audio per stream in each cell")
    parser.add_argument("--frame-ms", type=float, default=20.0, help="audio per websocket frame")
    parser.add_argument("--step-ms", type=float, default=20.0, help="session.start step_ms (0: the server's default)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds at each stream's start left out")
    parser.add_argument("--target-ms", type=float, default=50.0, help="p99 a cell must stay under")
    parser.add_argument("--max-lag-ms", type=float, default=200.0,
                        help="a stream is behind when unanswered audio exceeds one step + one frame + this")
    parser.add_argument("--keep-going", action="store_true", help="run every N even after one fails")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between cells")
    parser.add_argument("--stream-timeout", type=float, default=60.0, help="seconds to open a stream or end it")
    parser.add_argument("--workers", type=int, default=0, help="workers per device of a started server (0: per core)")
    parser.add_argument("--random-models", type=Path, help="a started server serves random small models built here")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="another setting of the started server, e.g. --set max_batch_size=32")
    parser.add_argument("--start", dest="start", action="append", default=[], metavar="TASK.NAME=JSON",
                        help="another field of a task's session.start, e.g. --start asr.beam_search=false")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    args.start_options = {}
    for item in args.start:
        name, _, value = item.partition("=")
        task, _, field_name = name.partition(".")
        if task not in TASKS or not field_name or not value:
            parser.error(f"--start {item!r}: give TASK.NAME=JSON with TASK one of {', '.join(TASKS)}")
        try:
            args.start_options.setdefault(task, {})[field_name] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--start {item!r}: {value!r} is not JSON")
    if unknown := set(args.tasks) - set(TASKS):
        parser.error(f"unknown tasks {sorted(unknown)}; choose from {', '.join(TASKS)}")
    if args.warmup >= args.seconds:
        parser.error("--warmup must be shorter than --seconds")

    process, base, pid = None, args.url, args.server_pid
    settings = {"stream_max_sessions": str(max(args.streams)), "queue_limit": str(max(64, max(args.streams) + 16)),
                **dict(item.split("=", 1) for item in args.settings)}
    if not args.url:
        models = make_random_models(args.random_models) if args.random_models else None
        process, base = start_server("process", models, args.workers, settings, timeout=args.ready_timeout)
        pid = process.pid
    load_start = os.getloadavg()
    try:
        rows = asyncio.run(sweep(args, base, pid))
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    print_table(rows)
    found = capacity(rows, args.tasks)
    print("capacity (largest N with p99 < {:g} ms at {:g} ms frames, nothing behind, closed or dropped): {}".format(
        args.target_ms, args.frame_ms, ", ".join(f"{t} {n}" for t, n in found.items())))
    print(json.dumps({"bench": "streams", "url": base, "started_server": process is not None,
                      "settings": settings if process is not None else None, "workers": args.workers if process else None,
                      "random_models": bool(args.random_models), "frame_ms": args.frame_ms, "step_ms": args.step_ms,
                      "session_start": args.start_options,
                      "seconds": args.seconds, "warmup": args.warmup, "target_p99_ms": args.target_ms,
                      "max_lag_ms": args.max_lag_ms, "cpu_count": os.cpu_count(),
                      "load_average": {"start": load_start, "end": os.getloadavg()},
                      "capacity": found, "cells": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
