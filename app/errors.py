"""One error envelope for every failure: ``{"error": {"message", "type", "code", "param"}}`` (OpenAI's shape).

Routes and the pool raise :class:`ServiceError` subclasses; the handlers installed by :func:`install_handlers`
also turn FastAPI's validation errors, Starlette's 404/405 and unexpected exceptions into the same shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "ServiceError", "BadRequest", "InvalidParameter", "AudioDecodeError", "PayloadTooLarge", "Unauthorized", "NotFound",
    "Overloaded", "NotReady", "DeadlineExceeded", "WorkerLost", "install_handlers", "error_body",
]

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error with an HTTP status, an envelope ``type`` and a stable machine-readable ``code``."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
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


def error_body(message: str, type_: str, code: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


_STATUS_TYPES = {401: ("authentication_error", "invalid_api_key"), 404: ("invalid_request_error", "not_found"),
                 405: ("invalid_request_error", "method_not_allowed"), 413: ("invalid_request_error", "payload_too_large")}


def install_handlers(app: FastAPI) -> None:
    """Route every exception through the envelope."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.type, exc.code, exc.param), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                            for e in errors) or "invalid request"
        return JSONResponse(error_body(message, "invalid_request_error", "invalid_parameter", param), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_, code = _STATUS_TYPES.get(exc.status_code, ("invalid_request_error" if exc.status_code < 500
                                                          else "server_error", f"http_{exc.status_code}"))
        return JSONResponse(error_body(str(exc.detail), type_, code), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal server error", "server_error", "internal_error"), 500)
