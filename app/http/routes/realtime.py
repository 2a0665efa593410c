"""``/v1/realtime``: OpenAI Realtime transcription sessions (the adapter is :mod:`app.streaming.realtime`).

The route admits a connection as the streaming websockets do (the API key of :func:`check_key`, the open-stream
limit, warm models) and hands it to :class:`app.streaming.realtime.RealtimeHandler`. A refused key or intent is
told in OpenAI's shape: the socket is accepted, one ``error`` event is sent, and it closes with 1008.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, WebSocket

from ...engine import Engine
from ...errors import Unauthorized
from ...settings import Settings
from ...streaming.connection import POLICY, refuse_unless_admitted
from ...streaming.live import StreamRegistry
from ...streaming.realtime import RealtimeHandler, refuse_reason
from ...streaming.realtime_messages import error_event
from ..dependencies import check_key, get_engine, get_settings, get_streams

router = APIRouter(prefix="/v1", tags=["openai"])


async def _refuse(websocket: WebSocket, type_: str, code: str, message: str) -> None:
    await websocket.accept()
    await websocket.send_text(error_event(message, type_=type_, code=code).model_dump_json())
    await websocket.close(POLICY, code)


@router.websocket("/realtime", name="realtime")
async def realtime(websocket: WebSocket, settings: Settings = Depends(get_settings),
                   registry: StreamRegistry = Depends(get_streams), engine: Engine = Depends(get_engine)) -> None:
    """OpenAI Realtime API, transcription sessions (``?intent=transcription``)."""
    try:
        check_key(websocket, settings, query=True)
    except Unauthorized as err:
        await _refuse(websocket, "invalid_request_error", "invalid_api_key", err.message)
        return
    if (problem := refuse_reason(websocket.query_params.get("intent"))) is not None:
        await _refuse(websocket, "invalid_request_error", "unsupported_intent", problem)
        return
    if await refuse_unless_admitted(websocket, settings, len(registry), engine.ready):
        return
    beta = websocket.headers.get("openai-beta", "").lower().startswith("realtime")
    handler = RealtimeHandler(websocket, settings, engine, beta=beta, url_model=websocket.query_params.get("model"))
    registry.active.add(handler.session_id)
    try:
        # Browsers offer the "realtime" subprotocol (OpenAI's JavaScript client); it must be echoed to connect.
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
        await handler.run()
    finally:
        registry.active.discard(handler.session_id)

