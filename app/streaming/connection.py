"""One websocket's transport: serialised sends, an inbox that reads the socket all the time, close codes.

Close codes: 1000 done, 1008 bad API key or a limit (idle, session length), 1011 internal error, 1013 overload
(full queue, buffer overflow, worker lost). A full server refuses the handshake itself with HTTP 503
(:func:`refuse_handshake`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..errors import error_body
from .messages import StreamError

__all__ = ["NORMAL", "POLICY", "INTERNAL", "TRY_AGAIN_LATER", "Closing", "Connection", "Inbox", "refuse_handshake",
           "refuse_key"]

NORMAL, POLICY, INTERNAL, TRY_AGAIN_LATER = 1000, 1008, 1011, 1013


class Closing(Exception):
    """End the connection: an error message (unless ``code`` is normal) and this close code."""

    def __init__(self, close_code: int, error_code: str = "", message: str = "") -> None:
        super().__init__(message)
        self.close_code, self.error_code, self.message = close_code, error_code, message


class Connection:
    """The sending side of one websocket: sends are serialised, because the pump and the reader both send."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._send_lock = asyncio.Lock()
        self.gone = False

    async def send(self, message: Any) -> None:
        """Binary audio (``bytes``) or a message model as JSON; a client that has gone away is not an error."""
        async with self._send_lock:
            if self.websocket.application_state != WebSocketState.CONNECTED or self.gone:
                return
            try:
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_text(message.model_dump_json(exclude_none=True))
            except (WebSocketDisconnect, RuntimeError, OSError):
                # The client went away; the reader sees the disconnect and frees the session.
                self.gone = True

    async def error(self, code: str, message: str) -> None:
        await self.send(StreamError(code=code, message=message))

    async def close(self, code: int, reason: str = "") -> None:
        async with self._send_lock:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                try:
                    await self.websocket.close(code, reason[:120])
                except RuntimeError:  # the client closed meanwhile
                    pass


def _message_bytes(message: dict) -> int:
    """What a websocket message holds, for the inbox bound."""
    return len(message.get("bytes") or b"") + len(message.get("text") or "")


class Inbox:
    """The receiving side: a task reads the socket all the time into a queue bounded to ``limit`` bytes.

    uvicorn stops reading a websocket while its app is not receiving, and then answers no ping either: a handler
    waiting for a flush to drain a backlog made clients give up on their keepalive (a 30-minute soak saw it).
    Past the bound the reader waits, and the socket's own flow control takes over.
    """

    def __init__(self, websocket: WebSocket, limit: int) -> None:
        self.websocket, self.limit = websocket, limit
        self._queue: asyncio.Queue[dict] = asyncio.Queue()
        self._bytes = 0
        self._space = asyncio.Event()
        self._reader: asyncio.Task | None = None

    def start(self, name: str) -> None:
        self._reader = asyncio.create_task(self._read_socket(), name=name)

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()

    async def _read_socket(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                self._bytes += _message_bytes(message)
                self._queue.put_nowait(message)
                if message["type"] == "websocket.disconnect":
                    return
                while self._bytes > self.limit:
                    self._space.clear()
                    await self._space.wait()
        except (RuntimeError, OSError):  # the socket is gone
            self._queue.put_nowait({"type": "websocket.disconnect", "code": 1006})

    async def get(self) -> dict:
        """The next ASGI websocket message (``websocket.receive`` or ``websocket.disconnect``), or one the
        handler put in (:meth:`put`)."""
        return self._took(await self._queue.get())

    def get_nowait(self) -> dict | None:
        """The next message if one is waiting, else None."""
        return None if self._queue.empty() else self._took(self._queue.get_nowait())

    def put(self, message: dict) -> None:
        """A message of the handler's own after those received so far (a stream's failure)."""
        self._queue.put_nowait(message)

    def _took(self, message: dict) -> dict:
        self._bytes -= _message_bytes(message)
        self._space.set()
        return message


async def refuse_key(websocket: WebSocket, problem: str) -> None:
    """A refused API key: accept first, so that a browser sees an ``error`` and close code 1008, never the bare
    status of a refused handshake."""
    await websocket.accept()
    await websocket.send_text(StreamError(code="invalid_api_key", message=problem).model_dump_json())
    await websocket.close(POLICY, "invalid_api_key")


async def refuse_unless_admitted(websocket: WebSocket, settings: Any, open_streams: int, ready: bool) -> bool:
    """The admission rule of every websocket protocol: refuse (503 at the handshake) when ``open_streams`` has
    reached ``settings.stream_max_sessions`` or the models are not ``ready``; whether it refused."""
    if open_streams >= settings.stream_max_sessions:
        await refuse_handshake(websocket, settings.retry_after_seconds,
                               f"{settings.stream_max_sessions} streams are already open; retry shortly", "overloaded")
        return True
    if not ready:
        await refuse_handshake(websocket, settings.retry_after_seconds, "models are still loading", "not_ready")
        return True
    return False


async def refuse_handshake(websocket: WebSocket, retry_after: int, message: str, code: str) -> None:
    """HTTP 503 at the handshake (servers without the denial extension get a 1013 close instead)."""
    body = JSONResponse(error_body(message, "server_error", code), 503, headers={"Retry-After": str(retry_after)})
    try:
        await websocket.send_denial_response(body)
    except RuntimeError:
        await websocket.accept()
        await websocket.send_text(StreamError(code=code, message=message).model_dump_json())
        await websocket.close(TRY_AGAIN_LATER, code)
