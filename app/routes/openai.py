"""``POST /v1/audio/transcriptions``: OpenAI-compatible, so the official clients work pointed at this server.

``json`` -> ``{"text"}``; ``text``/``srt``/``vtt`` -> plain text; ``verbose_json`` -> task, language, duration,
text, ``segments`` (granularity ``segment``, the default) and ``words`` (granularity ``word``).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse

from .. import formats
from ..dependencies import deadline_for, get_engine, get_metrics, get_settings, read_audio, require_api_key, resolve_model
from ..errors import InvalidParameter
from ..metrics import Metrics
from ..schemas import (OpenAISegment, OpenAITranscriptionForm, OpenAITranscriptionOut, OpenAIVerboseTranscriptionOut,
                       OpenAIWord)
from ..service import Engine
from ..settings import Settings
from . import AUDIO_ERRORS

router = APIRouter(prefix="/v1/audio", tags=["openai"], dependencies=[Depends(require_api_key)],
                   responses=AUDIO_ERRORS)


@router.post(
    "/transcriptions",
    response_model=OpenAIVerboseTranscriptionOut | OpenAITranscriptionOut,
    response_model_exclude_none=True,
    responses={200: {"content": {"text/plain": {}}}},
)
async def create_transcription(
    file: Annotated[UploadFile, File(description="Audio in any common container, or raw PCM (see encoding)")],
    request: Request,
    form: Annotated[OpenAITranscriptionForm, Form()],
    settings: Settings = Depends(get_settings),
    engine: Engine = Depends(get_engine),
    metrics: Metrics = Depends(get_metrics),
):
    """OpenAI ``audio.transcriptions.create``."""
    started = time.perf_counter()
    if form.stream:
        raise InvalidParameter("stream=true is not supported yet; use the default", param="stream")
    model = resolve_model(engine, settings, form.model, "asr")
    audio = await read_audio(file, form, settings, request)
    transcript = await engine.transcribe(model, audio, beam_search=False, deadline=deadline_for(settings, audio.duration))
    metrics.observe_audio("/v1/audio/transcriptions", audio.duration, time.perf_counter() - started)

    fmt = form.response_format
    if fmt == "json":
        return OpenAITranscriptionOut(text=transcript.text)
    if fmt == "text":
        return PlainTextResponse(transcript.text + "\n")
    parts = formats.segments(transcript.words)
    if fmt == "srt":
        return PlainTextResponse(formats.srt(parts))
    if fmt == "vtt":
        return PlainTextResponse(formats.vtt(parts), media_type="text/vtt")
    granularities = set(form.timestamp_granularities)
    return OpenAIVerboseTranscriptionOut(
        language="english",
        duration=round(audio.duration, 3),
        text=transcript.text,
        segments=[OpenAISegment(id=i, start=p.start, end=p.end, text=p.text, avg_logprob=round(p.avg_logprob, 4))
                  for i, p in enumerate(parts)] if "segment" in granularities else None,
        words=[OpenAIWord(word=w.text, start=w.start, end=w.end) for w in transcript.words]
        if "word" in granularities else None,
    )
