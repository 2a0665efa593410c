"""One error envelope for every failure: ``{"error": {"message", "type", "code", "param"}}`` (OpenAI's shape).

Routes and the pool raise :class:`ServiceError` subclasses; the handlers installed by :func:`install_handlers`
also turn FastAPI's validation errors, Starlette's 404/405 and unexpected exceptions into the same shape.

Messages are for the client: a value the client sent is quoted with :func:`echo` (cut to a short prefix), and
:func:`public_message` strips what a library may put into its exception text (source paths, a traceback) from
every message on its way out, over HTTP and websockets alike.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "ServiceError", "BadRequest", "InvalidParameter", "AudioDecodeError", "PayloadTooLarge", "Unauthorized", "NotFound",
    "Overloaded", "NotReady", "DeadlineExceeded", "WorkerLost", "install_handlers", "error_body", "error_response",
    "echo", "public_message",
]

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error with an HTTP status, an envelope ``type`` and a stable machine-readable ``code``."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None, status: int | None = None, type_: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.type = type_ or self.type
        self.code = code or self.code
        self.param = param
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, type, code = 400, "invalid_request_error", "bad_request"


class InvalidParameter(ServiceError):
    status, type, code = 422, "invalid_request_error", "invalid_parameter"


class AudioDecodeError(ServiceError):
    status, type, code = 415, "invalid_request_error", "unsupported_audio"


class PayloadTooLarge(ServiceError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class Unauthorized(ServiceError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class NotFound(ServiceError):
    status, type, code = 404, "invalid_request_error", "not_found"


class Overloaded(ServiceError):
    """The queue is full: the caller should retry after ``Retry-After`` seconds."""

    status, type, code = 503, "server_error", "overloaded"


class NotReady(ServiceError):
    status, type, code = 503, "server_error", "not_ready"


class WorkerLost(ServiceError):
    """The worker running this request died (killed, out of memory, crashed); a replacement is starting."""

    status, type, code = 503, "server_error", "worker_lost"


class DeadlineExceeded(ServiceError):
    status, type, code = 504, "server_error", "deadline_exceeded"


# How much of a client's value an error message quotes: enough to recognise it, never a 100 kB value echoed whole.
ECHO_CHARS = 40
_ECHO_ITEMS = 5
# A source location or an installed package's path, as libraries put them into their exception text
# ("/__w/torchcodec/.../SingleStreamDecoder.cpp:1217", ".../site-packages/torch/nn/functional.py").
_INTERNAL_PATH = re.compile(
    r"(?:[A-Za-z]:)?[\w.~+@-]*(?:[/\\][\w.~+@-]+)+\.(?:py|pyx|pyi|c|cc|cpp|cxx|cu|cuh|h|hh|hpp|hxx|so|dylib|dll)\b"
    r"(?::\d+)*|\S*(?:site|dist)-packages\S*")


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """A client's value as an error message quotes it: the repr of at most ``limit`` characters, then ``...``
    when cut. A list quotes its first few items the same way."""
    if isinstance(value, (list, tuple)):
        shown = ", ".join(echo(item, limit) for item in value[:_ECHO_ITEMS])
        return f"[{shown}{', ...' if len(value) > _ECHO_ITEMS else ''}]"
    text = value if isinstance(value, str) else str(value)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def public_message(message: str) -> str:
    """``message`` as a client may see it: its first line (a traceback or a C++ stack never follows), with
    source paths and installed-package paths replaced by ``<internal>``."""
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    first = first.split("Traceback (most recent call last)")[0].strip()
    return _INTERNAL_PATH.sub("<internal>", first) or "error"


def error_body(message: str, type_: str, code: str, param: str | None = None) -> dict:
    return {"error": {"message": public_message(message), "type": type_, "code": code, "param": param}}


def error_response(error: ServiceError) -> JSONResponse:
    """The envelope response of any :class:`ServiceError`: the one place an error becomes HTTP."""
    return JSONResponse(error_body(error.message, error.type, error.code, error.param), error.status,
                        headers=error.headers)


_STATUS_TYPES = {401: ("authentication_error", "invalid_api_key"), 404: ("invalid_request_error", "not_found"),
                 405: ("invalid_request_error", "method_not_allowed"), 413: ("invalid_request_error", "payload_too_large")}


def _from_validation(request: Request, exc: RequestValidationError) -> ServiceError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                        for e in errors[:_ECHO_ITEMS]) or "invalid request"
    if len(errors) > _ECHO_ITEMS:  # 900 bad list items are 900 problems: the first few say it
        message += f"; and {len(errors) - _ECHO_ITEMS} more"
    return InvalidParameter(message, param=param)


def _from_http(request: Request, exc: StarletteHTTPException) -> ServiceError:
    """Starlette's 404/405 and the upload limit's 413, with the status kept and a type and code to match."""
    type_, code = _STATUS_TYPES.get(exc.status_code, (
        "invalid_request_error" if exc.status_code < 500 else "server_error", f"http_{exc.status_code}"))
    return ServiceError(str(exc.detail), status=exc.status_code, type_=type_, code=code,
                        headers=dict(exc.headers or {}))


def _from_unexpected(request: Request, exc: Exception) -> ServiceError:
    # The details go to the log only: a traceback in a response would show internals to any caller.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ServiceError("internal server error")


_AS_SERVICE_ERROR: dict[type[Exception], Callable[[Request, Any], ServiceError]] = {
    ServiceError: lambda request, exc: exc,
    RequestValidationError: _from_validation,
    StarletteHTTPException: _from_http,
    Exception: _from_unexpected,
}


def install_handlers(app: FastAPI) -> None:
    """Route every exception through the envelope: each kind is turned into a :class:`ServiceError` first."""
    for exc_type, as_service_error in _AS_SERVICE_ERROR.items():
        app.add_exception_handler(exc_type, _envelope_handler(as_service_error))


def _envelope_handler(
    as_service_error: Callable[[Request, Any], ServiceError],
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return error_response(as_service_error(request, exc))

    return handle
