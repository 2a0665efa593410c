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

With ``--streams N --stream-minutes M`` it also (at the same time as the requests, or alone with
``--requests 0``) keeps N websocket streams open for M minutes, cycling over ``/v1/stream/{transcribe,denoise,
keywords}``: each sends speech-like 16 kHz ``pcm_s16le`` in 20 ms frames paced in real time, in sessions of
``--session-seconds`` (5-60 s) that end with ``session.end`` and are followed by a new session; transcription
asks for interim results. A fixed cycle of patterns mixes in the legal but rough ones: ``input.flush`` and
``session.update`` mid-session, a burst of 2 s of audio sent at once, a client that closes without
``session.end`` and one that drops the TCP connection. Every server message must parse as the documented
schema (``app/streaming/messages.py``), a session that ends must get its last result and ``session.ended`` and a
close 1000 (denoise: exactly as many samples back as were sent). Errors are counted by kind; a 503 at the
handshake and a 1013 close are capacity refusals, counted apart. Samples are then taken every
``--sample-seconds`` as well, and the warm-up is the ``--warmup`` fraction of the stream time.

The request mix holds ``stream=true`` uploads too (OpenAI's server-sent events, beam search and greedy), whose
bodies must be deltas and one ``transcript.text.done`` they concatenate to. ``--realtime N`` and ``--wyoming N``
add N OpenAI Realtime sessions (``/v1/realtime``) and N Wyoming connections (the started server listens for
Wyoming on a free loopback port; with ``--url``, give ``--wyoming-uri``) for the same ``--stream-minutes``, each
sending paced audio in a cycle of patterns (commits, server_vad turns, clears, closes and drops mid-turn;
transcriptions, wake words, describe, closes and resets mid-audio): ``soak_realtime.py``, ``soak_wyoming.py``.
Their sessions are judged like the streams' (completed, abandoned on purpose, capacity refusals, errors by kind),
and the leak checks (memory, descriptors, resident sessions) cover them too.

    python bench/soak.py --random-models /tmp/soak-models --requests 10000 --concurrency 8
    python bench/soak.py --random-models /tmp/soak-models --requests 300        # the CI version
    python bench/soak.py --random-models /tmp/soak-models --requests 0 --streams 6 --stream-minutes 30
    python bench/soak.py --random-models /tmp/soak-models --requests 0 --streams 4 --realtime 2 --wyoming 2 \
        --stream-minutes 30

This file runs the soak and is its command line; the request mix is ``soak_requests.py``, the streams
``soak_streams.py``, the Realtime and Wyoming sessions ``soak_realtime.py`` and ``soak_wyoming.py`` (on
``soak_protocols.py``), the samples of memory, descriptors and sessions ``soak_probes.py``, and the checks
``soak_verdict.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlparse

import httpx

from service import clip, make_random_models, start_server
from soak_probes import Sample, print_table, sample, settle, show
from soak_realtime import REALTIME_PATTERNS, realtime_streamer
from soak_requests import BAD_BODY, MIX, Tally, sse_problem
from soak_streams import PATTERNS, StreamTally, speech_pcm, streamer
from soak_verdict import LIVE, judge
from soak_wyoming import WYOMING_PATTERNS, wyoming_streamer


async def soak(args: argparse.Namespace, base: str,
               server_pid: int) -> tuple[Tally, dict[str, StreamTally], list[Sample], float]:
    """The run; the live sessions' tallies by kind (``streams``, ``realtime``, ``wyoming``)."""
    bodies = {seconds: (clip(seconds) if seconds > 0 else b"this is not audio" * 64)
              for seconds in {m[3] for m in MIX if m[3] != 0.0}}
    tally, samples = Tally(), []
    live = {kind: StreamTally() for kind in LIVE}
    tallies = list(live.values())
    cases = itertools.cycle(MIX)
    started = time.monotonic()
    end = started + args.seconds
    lock = asyncio.Lock()
    claimed = [0]  # requests handed out so far
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    # Idle pooled connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout: with equal timeouts
    # a request can go out on a connection the server is closing (one ReadError in the first 10,000-request run).
    limits = httpx.Limits(max_connections=args.concurrency + 4, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=300) as client:
        samples.append(await sample(client, server_pid, 0, started, tallies))

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
                    if status == 200 and fields.get("stream") == "true" and (problem := sse_problem(
                            response.headers.get("content-type", ""), response.text)):
                        status = BAD_BODY
                        print(f"# {name}: {problem}", file=sys.stderr)
                except httpx.HTTPError as err:
                    status = 0
                    print(f"# transport error on {name}: {err!r}", file=sys.stderr)
                async with lock:
                    tally.record(name, status, expected)
                    due = tally.done % args.sample_every == 0
                if due:
                    samples.append(await sample(client, server_pid, tally.done, started, tallies))
                    show(samples[-1])

        stream_end = started + 60 * args.stream_minutes
        stopped = asyncio.Event()

        async def sampler() -> None:  # during the streams: a sample every --sample-seconds
            while not stopped.is_set():
                try:
                    await asyncio.wait_for(stopped.wait(), args.sample_seconds)
                except asyncio.TimeoutError:
                    samples.append(await sample(client, server_pid, tally.done, started, tallies))
                    show(samples[-1])

        async def all_streams() -> None:
            if args.streams + args.realtime + args.wyoming <= 0 or args.stream_minutes <= 0:
                return
            pcm, patterns = speech_pcm(61.0), itertools.cycle(PATTERNS)
            realtime, wyoming = itertools.cycle(REALTIME_PATTERNS), itertools.cycle(WYOMING_PATTERNS)
            wyoming_at = urlparse(args.wyoming_uri or "")
            sampling = asyncio.create_task(sampler())
            await asyncio.gather(
                *(streamer(slot, args, base, headers, live["streams"], pcm, patterns, stream_end)
                  for slot in range(args.streams)),
                *(realtime_streamer(slot, args, base, headers, live["realtime"], realtime, stream_end)
                  for slot in range(args.realtime)),
                *(wyoming_streamer(slot, args, wyoming_at.hostname, wyoming_at.port, live["wyoming"], wyoming,
                                   stream_end) for slot in range(args.wyoming)))
            stopped.set()
            await sampling

        await asyncio.gather(all_streams(), *(user() for _ in range(args.concurrency if args.requests > 0 else 0)))
        await asyncio.sleep(1.0)  # let closing sessions and sockets settle before the last look
        settled = await settle(client, 10.0)
        samples.append(await sample(client, server_pid, tally.done, started, tallies))
    return tally, live, samples, settled


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    parser.add_argument("--streams", type=int, default=0, help="websocket streams kept open at once")
    parser.add_argument("--stream-minutes", type=float, default=30.0,
                        help="how long the streams, Realtime sessions and Wyoming connections run")
    parser.add_argument("--realtime", type=int, default=0, help="OpenAI Realtime sessions kept open at once")
    parser.add_argument("--wyoming", type=int, default=0, help="Wyoming connections kept open at once")
    parser.add_argument("--wyoming-uri", help="the Wyoming server of --url (tcp://HOST:PORT); a started server "
                        "gets a free loopback port")
    parser.add_argument("--session-seconds", type=lambda v: tuple(float(x) for x in v.split(",")), default=(5.0, 60.0),
                        metavar="MIN,MAX", help="length of a stream session (uniform between)")
    parser.add_argument("--sample-seconds", type=float, default=30.0, help="seconds between samples during streams")
    parser.add_argument("--stream-timeout", type=float, default=120.0,
                        help="seconds a stream may wait for session.started or its end")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="another setting of the started server, e.g. --set stream_max_sessions=4")
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.url and not args.server_pid:
        parser.error("--url needs --server-pid (memory and descriptors are read from /proc)")
    if args.url and args.wyoming > 0 and not args.wyoming_uri:
        parser.error("--wyoming with --url needs --wyoming-uri")

    process = None
    if args.url:
        base, pid = args.url, args.server_pid
    else:
        models = make_random_models(args.random_models) if args.random_models else None
        settings = dict(v.split("=", 1) for v in args.settings)
        if args.wyoming > 0:
            args.wyoming_uri = settings.setdefault("wyoming_uri", f"tcp://127.0.0.1:{free_port()}")
        process, base = start_server("process", models, args.workers, settings, timeout=args.ready_timeout)
        pid = process.pid
    try:
        tally, live, samples, settled = asyncio.run(soak(args, base, pid))
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    verdict = judge(args, tally, live, samples, settled)
    print_table(samples)
    if args.requests > 0:
        print(f"{tally.done} requests, {verdict['errors']} errors, {verdict['admission_503']} admission 503s")
    for kind in LIVE:
        if kind in verdict:
            v = verdict[kind]
            print(f"{v['streams']} {LIVE[kind]} for {args.stream_minutes:g} min: {v['sessions_started']} sessions "
                  f"started, {v['sessions_completed']} completed, {v['sessions_abandoned']} abandoned on purpose, "
                  f"{v['audio_seconds_sent']:.0f} s of audio sent, {v['messages_total']} server messages; "
                  f"capacity refusals {v['capacity_refusals'] or 0}, errors {v['errors'] or 0}")
    print(f"resident memory: {verdict['rss_start_mb']:.1f} MB at start, {verdict['rss_warm_mb']:.1f} MB after "
          f"warm-up ({verdict['warm_at_seconds']:.0f} s, request {verdict['warm_at_request']}), "
          f"peak {verdict['rss_peak_mb']:.1f} MB, last {verdict['rss_last_mb']:.1f} MB, "
          f"growth {100 * verdict['rss_growth']:.2f}%")
    print(f"descriptors: server {verdict['server_fds_warm']} -> {verdict['server_fds_last']}, "
          f"workers {verdict['worker_fds_warm']} -> {verdict['worker_fds_last']}; sessions left "
          f"{verdict['sessions_last']:g} (settled after {verdict['sessions_settled_after_s']} s); "
          f"load average mean {verdict['load_mean']} max {verdict['load_max']}")
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
