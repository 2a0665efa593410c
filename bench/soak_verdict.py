"""The verdict of ``bench/soak.py``: memory growth after warm-up, descriptors, sessions left, errors (of the
requests, and of each kind of live session: websocket streams, OpenAI Realtime, Wyoming)."""

from __future__ import annotations

import argparse

from soak_probes import Sample
from soak_requests import Tally
from soak_streams import StreamTally

__all__ = ["LIVE", "judge"]

# The live sessions' kinds: their --option (the slots kept open) and how the summary names them.
LIVE = {"streams": "streams", "realtime": "Realtime sessions", "wyoming": "Wyoming connections"}


def judge(args: argparse.Namespace, tally: Tally, live: dict[str, StreamTally], samples: list[Sample],
          settled: float) -> dict:
    samples = sorted(samples, key=lambda s: s.seconds)
    kinds = [kind for kind in LIVE if getattr(args, kind) > 0 and args.stream_minutes > 0]
    streaming = bool(kinds)

    def progress(s: Sample) -> float:  # of the slower part: requests done, stream time passed
        parts = ([s.requests / tally.done] if args.requests > 0 and tally.done else []) + \
                ([s.seconds / (60 * args.stream_minutes)] if streaming else [])
        return min(parts, default=1.0)

    warm = next((s for s in samples if progress(s) >= args.warmup), samples[0])
    last = samples[-1]
    after = [s for s in samples if s.seconds >= warm.seconds]
    peak = max(s.rss_mb for s in after)
    same_workers = all(s.workers == warm.workers for s in after)
    growth = (peak - warm.rss_mb) / warm.rss_mb if warm.rss_mb else float("nan")
    checks = {
        "rss_growth_under_limit": growth < args.max_rss_growth,
        "server_fds_not_growing": last.server_fds <= warm.server_fds,
        "worker_fds_not_growing": last.worker_fds <= warm.worker_fds,
        "no_sessions_left": last.sessions == 0,
        "no_worker_replaced": same_workers,
    }
    if args.requests > 0:
        checks["requests_done"] = tally.done >= args.requests
        checks["no_unexpected_statuses"] = tally.errors() == 0
    for kind in kinds:
        # Every slot got through more than one session, and capacity refusals did not replace the sessions.
        prefix = "stream" if kind == "streams" else kind
        checks[f"{prefix}_sessions_completed"] = live[kind].completed >= getattr(args, kind)
        checks[f"no_{prefix}_errors"] = not live[kind].errors
    if streaming and args.requests <= 0:
        # Streams alone: the quiet server at the end (every socket closed) is compared with the quiet server at
        # the start too, so a leak smaller than the streams' own sockets at warm-up shows.
        checks["fds_back_to_start"] = (last.server_fds <= samples[0].server_fds
                                       and last.worker_fds <= samples[0].worker_fds)
    verdict = {"checks": checks, "passed": all(checks.values()), "rss_warm_mb": warm.rss_mb, "rss_peak_mb": peak,
               "rss_last_mb": last.rss_mb, "rss_growth": round(growth, 4), "warm_at_request": warm.requests,
               "warm_at_seconds": warm.seconds, "rss_start_mb": samples[0].rss_mb,
               "server_fds_start": samples[0].server_fds, "server_fds_warm": warm.server_fds,
               "server_fds_peak": max(s.server_fds for s in after), "server_fds_last": last.server_fds,
               "worker_fds_start": samples[0].worker_fds, "worker_fds_warm": warm.worker_fds,
               "worker_fds_peak": max(s.worker_fds for s in after), "worker_fds_last": last.worker_fds,
               "sessions_last": last.sessions, "sessions_settled_after_s": settled,
               "load_mean": round(sum(s.load for s in samples) / len(samples), 2),
               "load_max": max(s.load for s in samples), "seconds": last.seconds}
    if args.requests > 0:
        verdict.update({"requests_done": tally.done, "errors": tally.errors(), "admission_503": tally.admission(),
                        "unexpected": tally.unexpected})
    for kind in kinds:
        streams = live[kind]
        verdict[kind] = {
            "streams": getattr(args, kind), "minutes": args.stream_minutes, "sessions_started": streams.started,
            "sessions_completed": streams.completed, "sessions_abandoned": streams.abandoned,
            "audio_seconds_sent": round(streams.audio_seconds_sent, 1),
            "messages": dict(sorted(streams.messages.items())), "messages_total": sum(streams.messages.values()),
            "capacity_refusals": streams.capacity, "errors": streams.errors,
            "errors_total": sum(streams.errors.values()),
            "error_examples": streams.examples, "by_task": streams.by_task, "by_pattern": streams.by_pattern}
    return verdict
