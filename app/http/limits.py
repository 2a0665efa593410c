"""Upload size limit as ASGI middleware: refuse early from ``Content-Length``, and count bytes while reading.

The header check answers 413 before a byte of the body is read; the count catches chunked uploads and lying
headers. The error goes through the app's envelope: :class:`UploadTooLarge` is an ``HTTPException``, which
FastAPI re-raises from body parsing instead of turning it into a 400.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import error_body

__all__ = ["UploadLimitMiddleware", "UploadTooLarge"]


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the {limit / 1e6:g} MB limit")


class UploadLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps(error_body(UploadTooLarge(self.max_bytes).detail, "invalid_request_error",
                                         "payload_too_large")).encode()
            # Connection: close, because the unread body would otherwise be taken for the next request.
            await send({"type": "http.response.start", "status": 413, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
