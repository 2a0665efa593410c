"""FastAPI dependencies: the app's settings, engine, metrics and streams; the API-key check, model lookup, uploads.

One rule each, for HTTP and websockets alike: :func:`check_key` (websockets also take ``?api_key=``, because
browsers cannot set headers on a websocket) and :func:`resolve_model`. Audio endpoints take
``file: AudioUpload`` and ``call: AudioCall``: the second bundles what each of them does around its model
call (model lookup, decode, deadline, timing), so a route holds only its own logic.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, File, Request, UploadFile
from pydantic import ValidationError
from starlette.requests import HTTPConnection

from ..audio.decode import Audio, decode
from ..audio.wav import split_pcm_wav
from ..engine import Engine
from ..errors import InvalidParameter, NotFound, NotReady, Unauthorized, echo
from ..settings import Settings
from ..streaming.live import StreamRegistry
from .metrics import Metrics
from .schemas import AudioForm

__all__ = ["get_settings", "get_engine", "get_metrics", "get_streams", "check_key", "require_api_key",
           "require_ops_key", "stream_key_problem", "served_name", "resolve_model", "read_audio", "deadline_for",
           "AudioRequest", "audio_request", "AudioCall", "AudioUpload"]


async def get_settings(connection: HTTPConnection) -> Settings:
    # Every dependency here is async although none awaits: FastAPI runs a plain def dependency in the thread
    # pool, one hop per dependency per request for what is an attribute lookup.
    return connection.app.state.settings


async def get_metrics(connection: HTTPConnection) -> Metrics:
    return connection.app.state.metrics


async def get_engine(connection: HTTPConnection) -> Engine:
    engine = connection.app.state.engine
    if engine is None:
        raise NotReady("the service is starting", headers={"Retry-After": "1"})
    return engine


async def get_streams(connection: HTTPConnection) -> StreamRegistry:
    return connection.app.state.streams


# ---- API keys ------------------------------------------------------------------------------------------------
def _presented_key(connection: HTTPConnection, query: bool) -> str | None:
    auth = connection.headers.get("authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else connection.headers.get("x-api-key")
    if not key and query:
        key = connection.query_params.get("api_key")
    return key


def check_key(connection: HTTPConnection, settings: Settings, *, query: bool = False) -> None:
    """Raise :class:`Unauthorized` unless the connection presents one of the keys (or none are set).

    ``Authorization: Bearer KEY`` wins over ``X-API-Key: KEY``; ``query`` also accepts ``?api_key=KEY`` when the
    headers carry no key (websockets only: in a URL a key ends up in logs and histories).
    """
    if not settings.api_keys:
        return
    key = _presented_key(connection, query)
    if not key:
        ways = ["Authorization: Bearer KEY", "X-API-Key: KEY"] + (["?api_key=KEY"] if query else [])
        raise Unauthorized(f"missing API key: send {', '.join(ways[:-1])} or {ways[-1]}",
                           headers={"WWW-Authenticate": "Bearer"})
    # Compare against every key in constant time, so timing does not reveal a matching prefix.
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys):
        raise Unauthorized("invalid API key", headers={"WWW-Authenticate": "Bearer"})


async def require_api_key(request: Request, settings: Settings = Depends(get_settings)) -> None:
    check_key(request, settings)


async def require_ops_key(request: Request, settings: Settings = Depends(get_settings)) -> None:
    if settings.ops_require_key:
        check_key(request, settings)


async def stream_key_problem(connection: HTTPConnection, settings: Settings = Depends(get_settings)) -> str | None:
    """Why a websocket's key is refused (None: accepted). Not raised: the socket is accepted first and told,
    since a browser sees the close code and reason, never the status of a refused handshake."""
    try:
        check_key(connection, settings, query=True)
    except Unauthorized as err:
        return err.message
    return None


# ---- models --------------------------------------------------------------------------------------------------
def served_name(engine: Engine, settings: Settings, requested: str) -> str | None:
    """The served model ``requested`` names, itself or as an alias (``whisper-1``); None if neither."""
    name = requested if requested in engine.cards else settings.model_aliases.get(requested)
    return name if name in engine.cards else None


def resolve_model(engine: Engine, settings: Settings, requested: str | None, task: str, param: str = "model") -> str:
    """A served model id of ``task``: the one asked for (or its alias target), else the first served.

    An alias whose target is not served falls back to the first served model of the task, as if none was asked.
    Raises :class:`NotFound` (``model_not_found``) or :class:`InvalidParameter` (``wrong_model_task``).
    """
    name = served_name(engine, settings, requested) if requested is not None else None
    if name is None:
        if requested is not None and requested not in settings.model_aliases:
            raise NotFound(f"model {echo(requested)} is not served; GET /v1/models lists the models",
                           code="model_not_found", param=param)
        served = [name for name, card in engine.cards.items() if card.task == task]
        if not served:
            raise NotFound(f"no {task} model is served", code="model_not_found", param=param)
        return served[0]
    if engine.cards[name].task != task:
        raise InvalidParameter(f"model {echo(requested)} is a {engine.cards[name].task} model, not {task}",
                               code="wrong_model_task", param=param)
    return name


# ---- uploads -------------------------------------------------------------------------------------------------
# Raw PCM up to this size (2 s of 16 kHz 16-bit mono) is decoded on the event loop: ~0.1 ms of numpy work on a
# one-second clip, against ~0.17 ms of CPU (and a wake-up) for the hop to a thread and back.
INLINE_PCM_BYTES = 64_000


async def read_audio(file: UploadFile, form: AudioForm, settings: Settings, request: Request) -> Audio:
    """The upload decoded (in a thread: FFmpeg work must not stall the event loop; small raw PCM inline).

    A raw-PCM description may also come in the query string (``?encoding=pcm_s16le&sample_rate=16000``),
    which is handier with curl than extra form fields.
    """
    raw = form.raw_format()
    if raw is None and "encoding" in request.query_params:
        try:
            raw = AudioForm.model_validate(dict(request.query_params)).raw_format()
        except ValidationError as err:
            problem = err.errors()[0]
            raise InvalidParameter(f"{'.'.join(map(str, problem['loc'])) or 'query'}: {problem['msg']}",
                                   param=".".join(map(str, problem["loc"])) or None) from None
    data = await file.read()
    if raw is None and (wav := split_pcm_wav(data)) is not None:
        raw, data = wav  # plain PCM WAV: decoded without FFmpeg (see app.audio.wav)
    if raw is not None and len(data) <= INLINE_PCM_BYTES:
        return decode(data, raw=raw, max_seconds=settings.max_audio_seconds)
    return await asyncio.to_thread(decode, data, raw=raw, max_seconds=settings.max_audio_seconds)


def deadline_for(settings: Settings, audio_seconds: float = 0.0) -> float:
    """The monotonic time by which a request on ``audio_seconds`` of audio must be answered."""
    return time.monotonic() + settings.request_timeout_seconds + settings.timeout_per_audio_second * audio_seconds


AudioUpload = Annotated[UploadFile, File(description="Audio in any common container, or raw PCM (see encoding)")]


@dataclass
class AudioRequest:
    """One audio request's view of the app, with the steps every audio endpoint shares."""

    request: Request
    settings: Settings
    engine: Engine
    metrics: Metrics
    started: float = field(default_factory=time.perf_counter)

    def model(self, requested: str | None, task: str, param: str = "model") -> str:
        return resolve_model(self.engine, self.settings, requested, task, param)

    async def read(self, file: UploadFile, form: AudioForm) -> Audio:
        return await read_audio(file, form, self.settings, self.request)

    def deadline(self, audio: Audio) -> float:
        return deadline_for(self.settings, audio.duration)

    def observe(self, endpoint: str, audio: Audio) -> None:
        """Audio seconds and real-time factor of the request, under ``endpoint`` (one label for aliased paths)."""
        self.metrics.observe_audio(endpoint, audio.duration, time.perf_counter() - self.started)


async def audio_request(request: Request, settings: Settings = Depends(get_settings),
                        engine: Engine = Depends(get_engine), metrics: Metrics = Depends(get_metrics)) -> AudioRequest:
    return AudioRequest(request, settings, engine, metrics)


AudioCall = Annotated[AudioRequest, Depends(audio_request)]
