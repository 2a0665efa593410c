"""Load generator for a running Centaurus Speech server: throughput, latency percentiles and real-time factor.

For every endpoint and concurrency level (default 1, 8, 32) it keeps that many requests in flight for
``--seconds`` (and at most ``--max-requests``), then prints a table and, last, one JSON line with every number.
While the load runs, a probe asks ``/health/live`` every 50 ms: its latency shows whether model work stalls
the HTTP event loop (the processes-vs-threads question).

    python bench/service.py --url http://127.0.0.1:8000
    python bench/service.py --serve process --random-models /tmp/bench-models   # starts (and stops) a server
    python bench/service.py --serve process --workers 0 --endpoints keywords --audio-seconds 1 \
        --set max_batch_size=1                     # the shipped checkpoints, one worker per core, no batching

RTF is latency / audio seconds per request (lower is better; < 1 is faster than real time), so it includes
queueing: at high concurrency it measures what a caller experiences, not the model alone.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import numpy as np

ENDPOINTS = {
    "transcribe": ("/transcribe", {}),
    "openai": ("/v1/audio/transcriptions", {"model": "whisper-1"}),
    "denoise": ("/denoise", {}),
    "keywords": ("/keywords", {}),
}


def clip(seconds: float, rate: int = 16000) -> bytes:
    """A 16-bit WAV of a syllable-rate modulated glide plus noise (speech-like load, no corpus needed)."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * math.pi * (200 * t + 30 * t**2)) * (0.5 + 0.5 * np.sin(2 * math.pi * 4 * t) ** 2)
    x += 0.02 * np.random.default_rng(0).standard_normal(len(t))
    return wav_bytes(x, rate)


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    """Float samples in [-1, 1] as the bytes of a 16-bit mono WAV file (clipped, truncated toward zero)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these local processes (Linux /proc); 0 for unknown pids."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


async def server_pids(client: httpx.AsyncClient, main_pid: int | None) -> list[int]:
    """The server process and its worker processes (from /health/ready), when the server is local."""
    if main_pid is None:
        return []
    try:
        workers = (await client.get("/health/ready")).json().get("workers", [])
    except (httpx.HTTPError, ValueError):
        workers = []
    return [main_pid] + [w["pid"] for w in workers if w.get("pid")]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def probe(client: httpx.AsyncClient, stop: asyncio.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            await client.get("/health/live", timeout=30)
            latencies.append(time.perf_counter() - started)
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)


async def cell(client: httpx.AsyncClient, endpoint: str, concurrency: int, audio: bytes, audio_seconds: float,
               seconds: float, max_requests: int, main_pid: int | None = None) -> dict:
    path, fields = ENDPOINTS[endpoint]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    probe_latencies: list[float] = []
    sent = 0
    end = time.monotonic() + seconds

    async def user(own: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.monotonic() < end and sent < max_requests:
            sent += 1
            started = time.perf_counter()
            try:
                r = await own.post(path, files={"file": ("clip.wav", audio, "audio/wav")}, data=fields, timeout=120)
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(time.perf_counter() - started)

    # One client (one keep-alive connection) per simulated user, as separate callers would have. One shared
    # client with a connection per user costs the load generator CPU that grows with the number of connections
    # (httpcore checks every pooled connection for each request): 5.6 ms per request at 32 users against 1.7 ms at
    # 8, on the same cores as the server.
    users = [httpx.AsyncClient(base_url=client.base_url, headers=client.headers,
                               limits=httpx.Limits(max_connections=1)) for _ in range(concurrency)]
    stop = asyncio.Event()
    pids = await server_pids(client, main_pid)
    http_before, workers_before = cpu_seconds(pids[:1]), cpu_seconds(pids[1:])
    client_before = time.process_time()
    prober = asyncio.create_task(probe(client, stop, probe_latencies))
    started = time.perf_counter()
    await asyncio.gather(*(user(own) for own in users))
    wall = time.perf_counter() - started
    # CPU per request: unlike latency, barely moved by other load on the machine. The server's is split into
    # the HTTP process and the worker processes; the load generator's own (this process) shares the cores too.
    client_cpu = time.process_time() - client_before
    http_cpu = cpu_seconds(pids[:1]) - http_before if pids else float("nan")
    worker_cpu = cpu_seconds(pids[1:]) - workers_before if pids else float("nan")
    stop.set()
    await prober
    await asyncio.gather(*(own.aclose() for own in users))
    ok = len(latencies)

    def per_request(seconds: float) -> float:
        return 1000 * seconds / ok if ok else float("nan")

    return {
        "endpoint": endpoint, "concurrency": concurrency, "requests": sum(statuses.values()), "ok": ok,
        "statuses": statuses, "throughput_rps": ok / wall, "audio_seconds_per_second": ok * audio_seconds / wall,
        "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95), "p99_s": percentile(latencies, 99),
        "rtf_p50": percentile(latencies, 50) / audio_seconds, "rtf_p95": percentile(latencies, 95) / audio_seconds,
        "health_p50_ms": 1000 * percentile(probe_latencies, 50), "health_p99_ms": 1000 * percentile(probe_latencies, 99),
        "server_cpu_ms_per_request": per_request(http_cpu + worker_cpu),
        "http_cpu_ms_per_request": per_request(http_cpu), "worker_cpu_ms_per_request": per_request(worker_cpu),
        "client_cpu_ms_per_request": per_request(client_cpu),
    }


def print_table(rows: list[dict]) -> None:
    header = (f"{'endpoint':<11}{'conc':>5}{'ok/sent':>10}{'req/s':>8}{'audio s/s':>10}{'p50 s':>8}{'p95 s':>8}"
              f"{'p99 s':>8}{'RTF p50':>9}{'live p99 ms':>12}{'cpu ms/req':>11}{'http+wrk':>10}{'client':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['endpoint']:<11}{r['concurrency']:>5}{r['ok']:>5}/{r['requests']:<4}{r['throughput_rps']:>8.2f}"
              f"{r['audio_seconds_per_second']:>10.2f}{r['p50_s']:>8.3f}{r['p95_s']:>8.3f}{r['p99_s']:>8.3f}"
              f"{r['rtf_p50']:>9.3f}{r['health_p99_ms']:>12.1f}{r['server_cpu_ms_per_request']:>11.1f}"
              f"{r['http_cpu_ms_per_request']:>5.1f}+{r['worker_cpu_ms_per_request']:<4.1f}"
              f"{r['client_cpu_ms_per_request']:>7.1f}")


def make_random_models(directory: Path) -> dict[str, str]:
    """Randomly initialised ``small`` networks (the serving size): same compute as trained ones."""
    import torch

    from model_zoo.checkpoint import save
    from model_zoo.nets import build_network

    torch.manual_seed(0)
    return {task: str(save(build_network(task, "small").eval(), directory / task, name=task, task=task)) + ".json"
            for task in ("kws", "denoise", "asr")}


def start_server(mode: str, models: dict[str, str] | None, workers: int,
                 settings: dict[str, str] | None = None, timeout: float = 180.0,
                 cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A local server, once ``/health/ready`` says 200 within ``timeout`` (on a machine shared with training
    jobs, loading can take minutes); ``settings``: more of its settings by name (``max_batch_size``:
    CENTAURUS_MAX_BATCH_SIZE); ``cwd``: the checkout whose ``app`` serves (default: the current folder)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CENTAURUS_PORT": str(port), "CENTAURUS_HOST": "127.0.0.1", "CENTAURUS_WORKER_MODE": mode,
           "CENTAURUS_WORKERS_PER_DEVICE": str(workers), "CENTAURUS_LOG_LEVEL": "warning",
           **{f"CENTAURUS_{name.upper()}": value for name, value in (settings or {}).items()}}
    if models:
        env["CENTAURUS_MODELS"] = json.dumps(models)
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=env, cwd=cwd)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    process.terminate()
    process.wait(60)
    raise SystemExit(f"server not ready within {timeout:.0f} s (exit code {process.returncode})")


async def run(args: argparse.Namespace, base: str, main_pid: int | None) -> list[dict]:
    audio = clip(args.audio_seconds)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=max(args.concurrency) + 4)
    rows = []
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        for endpoint in args.endpoints:
            for concurrency in args.concurrency:
                row = await cell(client, endpoint, concurrency, audio, args.audio_seconds, args.seconds,
                                 args.max_requests, main_pid)
                rows.append(row)
                print(f"# {endpoint} x{concurrency}: {row['ok']} ok, p50 {row['p50_s']:.3f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=os.environ.get("CENTAURUS_API_KEY"))
    parser.add_argument("--endpoints", type=lambda s: s.split(","), default=list(ENDPOINTS),
                        help=f"comma list of {', '.join(ENDPOINTS)}")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each (endpoint, concurrency) cell")
    parser.add_argument("--max-requests", type=int, default=2000, help="cap per cell")
    parser.add_argument("--audio-seconds", type=float, default=5.0, help="length of the test clip")
    parser.add_argument("--serve", choices=["process", "thread"], help="start a server in this worker mode")
    parser.add_argument("--workers", type=int, default=1, help="workers per device for --serve (0: one per core)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="another server setting for --serve, e.g. --set max_batch_size=1 (repeatable)")
    parser.add_argument("--server-pid", type=int, help="pid of a local server, to count its CPU per request")
    parser.add_argument("--random-models", type=Path, help="with --serve: build random small models here")
    args = parser.parse_args(argv)
    unknown = set(args.endpoints) - set(ENDPOINTS)
    if unknown:
        parser.error(f"unknown endpoints {sorted(unknown)}")

    settings = dict(item.split("=", 1) for item in args.settings)
    process, base = None, args.url
    if args.serve:
        models = make_random_models(args.random_models) if args.random_models else None
        process, base = start_server(args.serve, models, args.workers, settings)
    try:
        rows = asyncio.run(run(args, base, process.pid if process is not None else args.server_pid))
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    print_table(rows)
    print(json.dumps({"url": base, "mode": args.serve, "workers": args.workers if args.serve else None,
                      "settings": settings, "audio_seconds": args.audio_seconds, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
