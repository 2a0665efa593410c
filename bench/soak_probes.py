"""What ``bench/soak.py`` watches on the server: resident memory and descriptors from /proc, resident streaming
sessions from /metrics, sampled into :class:`Sample` rows."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from soak_streams import StreamTally

__all__ = ["Sample", "rss_kb", "fd_count", "settle", "sample", "show", "print_table"]


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
    streams_open: int = 0  # websockets and Wyoming connections this client had open
    stream_sessions: int = 0  # stream, Realtime and Wyoming sessions finished so far (any outcome)
    load: float = 0.0  # 1-minute load average of the machine


async def settle(client: httpx.AsyncClient, seconds: float) -> float:
    """Wait (up to ``seconds``) for the server to report no resident session; how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for line in (await client.get("/metrics", timeout=30)).text.splitlines():
            if line.startswith("centaurus_active_streams ") and float(line.split()[1]) == 0:
                return round(time.monotonic() - started, 2)
        await asyncio.sleep(0.25)
    return float("nan")


async def sample(client: httpx.AsyncClient, server_pid: int, done: int, started: float,
                 streams: list[StreamTally] | None = None) -> Sample:
    """A row of samples; ``streams``: the tallies of the live sessions (websocket streams, Realtime, Wyoming),
    whose open connections and finished sessions are summed."""
    ready = (await client.get("/health/ready", timeout=30)).json()
    workers = [w["pid"] for w in ready.get("workers", []) if w.get("pid")]
    sessions = float("nan")
    for line in (await client.get("/metrics", timeout=30)).text.splitlines():
        if line.startswith("centaurus_active_streams "):
            sessions = float(line.split()[1])
    rss = rss_kb(server_pid) + sum(rss_kb(p) for p in workers)
    return Sample(done, round(time.monotonic() - started, 1), round(rss / 1024, 1), fd_count(server_pid),
                  sum(fd_count(p) for p in workers), sessions, workers,
                  sum(t.open for t in streams or []), sum(t.sessions() for t in streams or []),
                  round(os.getloadavg()[0], 2))


def show(last: Sample) -> None:
    print(f"# {last.requests:>6} requests {last.seconds:>7.1f} s  rss {last.rss_mb:8.1f} MB  "
          f"fds {last.server_fds}+{last.worker_fds}  sessions {last.sessions:g}  streams open {last.streams_open} "
          f"done {last.stream_sessions}  load {last.load:.2f}", file=sys.stderr, flush=True)


def print_table(samples: list[Sample]) -> None:
    print(f"{'seconds':>8}{'requests':>9}{'rss MB':>9}{'srv fds':>8}{'wrk fds':>8}{'sessions':>9}{'streams':>8}"
          f"{'done':>6}{'load':>6}")
    for s in sorted(samples, key=lambda s: s.seconds):
        print(f"{s.seconds:>8.1f}{s.requests:>9}{s.rss_mb:>9.1f}{s.server_fds:>8}{s.worker_fds:>8}{s.sessions:>9g}"
              f"{s.streams_open:>8}{s.stream_sessions:>6}{s.load:>6.2f}")
