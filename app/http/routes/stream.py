"""Streaming websockets: ``/v1/stream/denoise``, ``/v1/stream/transcribe``, ``/v1/stream/keywords``.

The route admits a connection (API key, open streams, warm models) and hands it to
:class:`app.streaming.handler.StreamHandler`; the protocol is described there and in README "Streaming".
"""

from __future__ import annotations

from typing import Awaitable, Callable

from fastapi import APIRouter, Depends, WebSocket

from model_zoo.nets import for_every_task

from ...engine import Engine
from ...settings import Settings
from ...streaming.connection import refuse_key, refuse_unless_admitted
from ...streaming.handler import StreamHandler
from ...streaming.live import StreamRegistry
from ..dependencies import get_engine, get_settings, get_streams, stream_key_problem

router = APIRouter(prefix="/v1/stream", tags=["streaming"])

# task -> the path of its stream, for each task of model_zoo.nets.TASKS (checked at import)
PATHS: dict[str, str] = for_every_task({"denoise": "denoise", "asr": "transcribe", "kws": "keywords"},
                                       "app.http.routes.stream.PATHS")


async def stream(websocket: WebSocket, task: str, key_problem: str | None, settings: Settings,
                 registry: StreamRegistry, engine: Engine) -> None:
    """Admit the connection, then run it to its close."""
    if key_problem is not None:
        await refuse_key(websocket, key_problem)
        return
    if await refuse_unless_admitted(websocket, settings, len(registry), engine.ready):
        return
    handler = StreamHandler(websocket, task, settings, engine)
    registry.active.add(handler.session_id)
    try:
        await websocket.accept()
        await handler.run()
    finally:
        registry.active.discard(handler.session_id)


def _endpoint(task: str) -> Callable[..., Awaitable[None]]:
    async def endpoint(websocket: WebSocket, key_problem: str | None = Depends(stream_key_problem),
                       settings: Settings = Depends(get_settings), registry: StreamRegistry = Depends(get_streams),
                       engine: Engine = Depends(get_engine)) -> None:
        await stream(websocket, task, key_problem, settings, registry, engine)

    endpoint.__name__ = f"stream_{task}"
    return endpoint


for _task, _path in PATHS.items():
    router.add_api_websocket_route(f"/{_path}", _endpoint(_task), name=f"stream_{_path}")
