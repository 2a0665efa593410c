"""Soak test: a long mix of requests against a real server process, watching for leaks.

It starts ``centaurus-speech serve`` on loopback (random ``small`` models with ``--random-models DIR``, else
the shipped checkpoints), or uses ``--url`` and ``--server-pid`` of a running local one, and keeps
``--concurrency`` clients busy with a fixed mix (transcriptions native and OpenAI in several formats,
denoising, keywords, model listing, a few bad uploads that must get 4xx) until ``--requests`` are done or
``--seconds`` have passed. Every ``--sample-every`` requests it records:

* resident memory of the server and its workers (VmRSS from /proc, summed),
* open file descriptors of the server process (/proc/PID/fd) and of its workers,
* resident streaming sessions (``centaurus_active_streams`` from /metrics),

and at the end judges: memory growth after warm-up (the first ``--warmup`` fraction) under
``--max-rss-growth`` (5%), descriptors back to the warm-up level, no session left, and no errors besides the
4xx the bad uploads ask for and the 503s of admission control. Exit status 1 when a check fails; the last line
is one JSON object with every number.

    python bench/soak.py --random-models /tmp/soak-models --requests 10000 --concurrency 8
    python bench/soak.py --random-models /tmp/soak-models --requests 300        # the CI version
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from service import clip, make_random_models, start_server

# (name, path, form fields, clip seconds, statuses that count as correct)
MIX: list[tuple[str, str, dict, float, set[int]]] = [
    ("transcribe 1s", "/transcribe", {}, 1.0, {200}),
    ("transcribe 3s beam", "/transcribe", {"beam_search": "true"}, 3.0, {200}),
    ("openai json", "/v1/audio/transcriptions", {"model": "whisper-1"}, 2.0, {200}),
    ("openai verbose", "/v1/audio/transcriptions", {"response_format": "verbose_json",
                                                    "timestamp_granularities[]": ["word", "segment"]}, 1.5, {200}),
    ("openai srt", "/v1/audio/transcriptions", {"response_format": "srt"}, 1.0, {200}),
    ("denoise 1s", "/denoise", {}, 1.0, {200}),
    ("denoise 2s flac", "/denoise", {"response_format": "flac"}, 2.0, {200}),
    ("keywords 1s", "/keywords", {}, 1.0, {200}),
    ("keywords 4s", "/keywords", {"hop": "0.5"}, 4.0, {200}),
    ("models", "/v1/models", {}, 0.0, {200}),
    ("not audio", "/transcribe", {}, -1.0, {415}),
    ("unknown model", "/keywords", {"model": "nope"}, 1.0, {404}),
]
ADMISSION = 503  # the queue is full: what admission control is for, not an error


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@dataclass
class Sample:
    requests: int
    seconds: float
    rss_mb: float  # server + workers
    server_fds: int
    worker_fds: int
    sessions: float
    workers: list[int]


@dataclass
class Tally:
    by_case: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    done: int = 0

    def record(self, case: str, status: int, expected: set[int]) -> None:
        counts = self.by_case.setdefault(case, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
        self.done += 1
        if status not in expected and status != ADMISSION and len(self.unexpected) < 20:
            self.unexpected.append(f"{case}: {status}")

    def errors(self) -> int:
        return sum(n for case, counts in self.by_case.items() for status, n in counts.items()
                   if int(status) not in next(m[4] for m in MIX if m[0] == case) and int(status) != ADMISSION)

    def admission(self) -> int:
        return sum(counts.get(str(ADMISSION), 0) for counts in self.by_case.values())


async def sample(client: httpx.AsyncClient, server_pid: int, done: int, started: float) -> Sample:
    ready = (await client.get("/health/ready", timeout=30)).json()
    workers = [w["pid"] for w in ready.get("workers", []) if w.get("pid")]
    sessions = float("nan")
    for line in (await client.get("/metrics", timeout=30)).text.splitlines():
        if line.startswith("centaurus_active_streams "):
            sessions = float(line.split()[1])
    rss = rss_kb(server_pid) + sum(rss_kb(p) for p in workers)
    return Sample(done, round(time.monotonic() - started, 1), round(rss / 1024, 1), fd_count(server_pid),
                  sum(fd_count(p) for p in workers), sessions, workers)


async def soak(args: argparse.Namespace, base: str, server_pid: int) -> tuple[Tally, list[Sample]]:
    bodies = {seconds: (clip(seconds) if seconds > 0 else b"this is not audio" * 64)
              for seconds in {m[3] for m in MIX if m[3] != 0.0}}
    tally, samples = Tally(), []
    cases = itertools.cycle(MIX)
    started = time.monotonic()
    end = started + args.seconds
    lock = asyncio.Lock()
    claimed = [0]  # requests handed out so far
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    # Idle pooled connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout: with equal timeouts
    # a request can go out on a connection the server is closing (one ReadError in the first 10,000-request run).
    limits = httpx.Limits(max_connections=args.concurrency + 2, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=300) as client:
        samples.append(await sample(client, server_pid, 0, started))

        async def user() -> None:
            while time.monotonic() < end:
                async with lock:
                    if claimed[0] >= args.requests:
                        return
                    claimed[0] += 1
                    name, path, fields, seconds, expected = next(cases)
                try:
                    if path == "/v1/models":
                        response = await client.get(path)
                    else:
                        response = await client.post(path, files={"file": ("clip.wav", bodies[seconds])}, data=fields)
                    status = response.status_code
                except httpx.HTTPError as err:
                    status = 0
                    print(f"# transport error on {name}: {err!r}", file=sys.stderr)
                async with lock:
                    tally.record(name, status, expected)
                    due = tally.done % args.sample_every == 0
                if due:
                    samples.append(await sample(client, server_pid, tally.done, started))
                    last = samples[-1]
                    print(f"# {last.requests:>6} requests {last.seconds:>7.1f} s  rss {last.rss_mb:8.1f} MB  "
                          f"fds {last.server_fds}+{last.worker_fds}  sessions {last.sessions:g}", file=sys.stderr)

        await asyncio.gather(*(user() for _ in range(args.concurrency)))
        await asyncio.sleep(1.0)  # let closing sessions and sockets settle before the last look
        samples.append(await sample(client, server_pid, tally.done, started))
    return tally, samples


def judge(args: argparse.Namespace, tally: Tally, samples: list[Sample]) -> dict:
    warm = next((s for s in samples if s.requests >= args.warmup * tally.done), samples[0])
    last = samples[-1]
    peak = max(s.rss_mb for s in samples if s.requests >= warm.requests)
    same_workers = all(s.workers == warm.workers for s in samples if s.requests >= warm.requests)
    growth = (peak - warm.rss_mb) / warm.rss_mb if warm.rss_mb else float("nan")
    checks = {
        "requests_done": tally.done >= args.requests,
        "rss_growth_under_limit": growth < args.max_rss_growth,
        "server_fds_not_growing": last.server_fds <= warm.server_fds,
        "worker_fds_not_growing": last.worker_fds <= warm.worker_fds,
        "no_sessions_left": last.sessions == 0,
        "no_unexpected_statuses": tally.errors() == 0,
        "no_worker_replaced": same_workers,
    }
    return {"checks": checks, "passed": all(checks.values()), "rss_warm_mb": warm.rss_mb, "rss_peak_mb": peak,
            "rss_last_mb": last.rss_mb, "rss_growth": round(growth, 4), "warm_at_request": warm.requests,
            "server_fds_warm": warm.server_fds, "server_fds_last": last.server_fds,
            "worker_fds_warm": warm.worker_fds, "worker_fds_last": last.worker_fds, "sessions_last": last.sessions,
            "errors": tally.errors(), "admission_503": tally.admission(), "unexpected": tally.unexpected}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running local server (with --server-pid); default: start one")
    parser.add_argument("--server-pid", type=int, help="pid of the server at --url, to read its memory and fds")
    parser.add_argument("--api-key", default=os.environ.get("CENTAURUS_API_KEY"))
    parser.add_argument("--random-models", type=Path, help="build random small models here and serve them")
    parser.add_argument("--workers", type=int, default=1, help="workers per device of the started server")
    parser.add_argument("--requests", type=int, default=10000, help="stop after this many requests")
    parser.add_argument("--seconds", type=float, default=3600.0, help="or after this long")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sample-every", type=int, default=250, help="requests between memory/fd samples")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of requests before the baseline")
    parser.add_argument("--max-rss-growth", type=float, default=0.05, help="allowed growth after warm-up")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds the started server may take")
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.url and not args.server_pid:
        parser.error("--url needs --server-pid (memory and descriptors are read from /proc)")

    process = None
    if args.url:
        base, pid = args.url, args.server_pid
    else:
        models = make_random_models(args.random_models) if args.random_models else None
        process, base = start_server("process", models, args.workers, timeout=args.ready_timeout)
        pid = process.pid
    try:
        tally, samples = asyncio.run(soak(args, base, pid))
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    verdict = judge(args, tally, samples)
    print(f"{tally.done} requests, {verdict['errors']} errors, {verdict['admission_503']} admission 503s")
    print(f"resident memory: {verdict['rss_warm_mb']:.1f} MB after warm-up (request {verdict['warm_at_request']}), "
          f"peak {verdict['rss_peak_mb']:.1f} MB, growth {100 * verdict['rss_growth']:.2f}%")
    print(f"descriptors: server {verdict['server_fds_warm']} -> {verdict['server_fds_last']}, "
          f"workers {verdict['worker_fds_warm']} -> {verdict['worker_fds_last']}; sessions left {verdict['sessions_last']:g}")
    for name, ok in verdict["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    result = {"bench": "soak", "requests": args.requests, "concurrency": args.concurrency, **verdict,
              "by_case": tally.by_case, "samples": [asdict(s) for s in samples]}
    line = json.dumps(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(line + "\n")
    print(line)
    return 0 if verdict["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
