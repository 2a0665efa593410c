"""Prometheus metrics (``prometheus_client``), one registry per app so several apps can live in one process.

Request counts, errors and latency are recorded by :class:`MetricsMiddleware` under the route's path
template (never the raw URL, which would explode the label set): every route has its own label (``/docs``,
``/openapi.json``, a mount as ``/docs/assets/{path}``), and a path no route matches is ``unmatched``. Audio seconds and real-time factor are
recorded by the routes; queue depth, workers and active streams are read from the pool at scrape time.
"""

from __future__ import annotations

import time
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]

# The *_created series double the output and no dashboard uses them.
prometheus_client.disable_created_metrics()

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RTF = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("centaurus_requests", "HTTP requests", ["endpoint", "method", "status"], registry=r)
        self.errors = Counter("centaurus_errors", "HTTP responses with status >= 400", ["endpoint", "status"],
                              registry=r)
        self.latency = Histogram("centaurus_request_seconds", "HTTP request latency", ["endpoint"],
                                 buckets=_LATENCY, registry=r)
        self.audio_seconds = Counter("centaurus_audio_seconds", "Seconds of audio processed", ["endpoint"], registry=r)
        self.rtf = Histogram("centaurus_real_time_factor", "Processing seconds per audio second", ["endpoint"],
                             buckets=_RTF, registry=r)
        self.queue_depth = Gauge("centaurus_queue_depth", "Model calls waiting for a worker", registry=r)
        self.batch_size = Histogram("centaurus_batch_size", "Rows per model call", ["model", "op"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.active_streams = Gauge("centaurus_active_streams", "Streaming sessions resident in workers", registry=r)
        self.workers = Gauge("centaurus_workers", "Workers by state", ["state"], registry=r)
        self.worker_restarts = Gauge("centaurus_worker_restarts", "Workers replaced since start", registry=r)

    def observe_audio(self, endpoint: str, audio_seconds: float, elapsed: float) -> None:
        self.audio_seconds.labels(endpoint).inc(audio_seconds)
        if audio_seconds > 0:
            self.rtf.labels(endpoint).observe(elapsed / audio_seconds)

    def observe_batch(self, model: str, op: str, rows: int) -> None:
        self.batch_size.labels(model, op).observe(rows)

    def render(self, pool: Any) -> bytes:
        if pool is not None:
            self.queue_depth.set(pool.queue_depth())
            self.active_streams.set(pool.active_sessions())
            workers = pool.workers()
            self.workers.labels("ready").set(sum(w["ready"] for w in workers))
            self.workers.labels("starting").set(sum(not w["ready"] for w in workers))
            self.worker_restarts.set(pool.restarts)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI: counts every HTTP request by route template and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500
        path, root_path = scope["path"], scope.get("root_path", "")  # as routing saw them (a mount changes them)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = _endpoint(scope, path, root_path)
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def _endpoint(scope: Scope, path: str, root_path: str) -> str:
    """The label of a request: its route's path template. FastAPI's routes (included routers' too) record
    themselves in the scope; the app's plain Starlette routes (``/openapi.json``, ``/docs``, ``/redoc``) and mounts
    do not, so they are matched here, only for the requests that lack one."""
    route = scope.get("route")
    if isinstance(getattr(route, "path", None), str) and route.path:
        return route.path
    app = scope.get("app")
    probe = {**scope, "path": path, "root_path": root_path}
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        if not isinstance(getattr(candidate, "path", None), str):
            continue  # an included router: its routes set the scope's route themselves
        match, _ = candidate.matches(probe)
        if match is not Match.NONE:  # FULL, or PARTIAL: the path is right, the method is not (405)
            return candidate.path_format if isinstance(candidate, Mount) else candidate.path
    return "unmatched"
