"""The ASGI application: ``create_app(settings)`` wires settings, pool, routers, middleware and error handlers.

``app.main:app`` builds one from the environment on first access (so importing this module stays cheap and
never loads models). Models load in the workers after startup; ``/health/ready`` says when they are warm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import torch
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from model_zoo import list_models
from model_zoo.checkpoint import read_card

from . import __version__
from .audio.warmup import warm_up
from .engine import Engine
from .errors import install_handlers
from .execution.pool import Pool, PoolConfig, plan_devices
from .http.limits import UploadLimitMiddleware
from .http.metrics import Metrics, MetricsMiddleware
from .http.redaction import redact_server_logs
from .http.routes import demo, denoise, docs, keywords, openai, ops, realtime, stream, transcribe
from .settings import Settings, check_environment
from .streaming.live import StreamRegistry

__all__ = ["create_app", "served_models"]

log = logging.getLogger(__name__)


def served_models(settings: Settings) -> dict[str, str]:
    """Served name -> checkpoint; by default every shipped checkpoint under its own name."""
    if settings.models is not None:
        return dict(settings.models)
    return {m["name"]: m["name"] for m in list_models()}


def create_app(settings: Settings | None = None, when_warm: Callable[[], object] | None = None) -> FastAPI:
    """A configured app. Checkpoint cards are read (and validated) here, so a bad model path fails at once; so
    does a ``CENTAURUS_*`` variable that is no setting (:class:`~app.settings.UnknownSetting`, one line).
    ``when_warm`` is called once this process has started and warmed up its codecs (the command line freezes the
    loaded objects there: :func:`model_zoo.runtime.freeze_loaded_objects`)."""
    check_environment()
    settings = settings or Settings()
    models = served_models(settings)
    cards = {name: read_card(source) for name, source in models.items()}
    metrics = Metrics()
    pool = Pool(
        PoolConfig(
            models=models, devices=plan_devices(settings.device), workers_per_device=settings.workers_per_device,
            mode=settings.worker_mode, max_batch_size=settings.max_batch_size,
            stream_batch_size=settings.stream_batch_size,
            max_batch_wait=settings.max_batch_wait_ms / 1000, busy_batch_wait=settings.busy_batch_wait_ms / 1000,
            queue_limit=settings.queue_limit,
            retry_after_seconds=settings.retry_after_seconds, torch_threads=settings.torch_threads,
            warmup=settings.warmup,
        ),
        on_batch=metrics.observe_batch,
    )

    async def warm() -> None:
        await asyncio.to_thread(warm_up)
        if when_warm is not None:
            when_warm()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redact_server_logs()  # websocket keys may come as ?api_key=, and uvicorn logs query strings
        # Audio work in this process (decode, resample, encode) already runs one request per thread; torch's
        # intra-op threads on top spin-wait for each other on a busy CPU (decoding a 5 s WAV: 51 ms of CPU with
        # 2 threads, 9.5 ms with 1, on the 2-core machine). The workers set their own count.
        torch.set_num_threads(1)
        await pool.start()
        app.state.codecs = asyncio.create_task(warm(), name="warm-codecs")
        log.info("serving %s on %s", ", ".join(f"{n} ({c.task})" for n, c in cards.items()) or "no models",
                 ", ".join(pool.config.devices))
        # Wyoming (Home Assistant) beside HTTP when CENTAURUS_WYOMING_URI is set, on the same engine.
        app.state.wyoming = None
        try:
            if settings.wyoming_uri:
                from .wyoming import WyomingServer  # the wyoming package is imported only when it is used

                app.state.wyoming = WyomingServer(app.state.engine, settings)
                await app.state.wyoming.start()
            yield
        finally:
            if app.state.wyoming is not None:
                await app.state.wyoming.stop()
            await pool.close(timeout=settings.request_timeout_seconds)

    app = FastAPI(
        title="Centaurus Speech",
        version=__version__,
        summary="Keyword spotting, denoising and speech recognition on state-space networks, behind one API.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # FastAPI's pages load from a CDN; these come from the package (routes/docs.py)
    )
    app.state.settings, app.state.metrics, app.state.pool = settings, metrics, pool
    app.state.engine = Engine(pool, cards, settings.chunk_seconds)
    app.state.streams = StreamRegistry()
    app.state.started = int(time.time())
    app.state.codecs = None  # the codec warm-up task, started with the pool
    install_handlers(app)
    for router in (transcribe.router, openai.router, denoise.router, keywords.router, stream.router, realtime.router,
                   ops.models_router, ops.health_router, demo.router):
        app.include_router(router)
    docs.install(app)  # /docs, /redoc and their assets, served from the installed package
    # Added innermost first: the metrics middleware sees every request, 413s and CORS preflights included.
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"],
                           expose_headers=["Retry-After", "X-Sample-Rate", "X-Channels", "X-Duration", "X-Encoding"])
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def __getattr__(name: str):
    # ``uvicorn app.main:app`` and ``import app.main`` stay cheap until the app is actually asked for.
    if name == "app":
        globals()["app"] = built = create_app()
        return built
    raise AttributeError(name)
