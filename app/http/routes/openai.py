"""``POST /v1/audio/transcriptions``: OpenAI-compatible, so the official clients work pointed at this server.

``json`` -> ``{"text"}``; ``text``/``srt``/``vtt`` -> plain text; ``verbose_json`` -> task, language, duration,
text, ``segments`` (granularity ``segment``, the default) and ``words`` (granularity ``word``).
``stream=true`` -> server-sent ``transcript.text.delta`` events and one ``transcript.text.done`` (:mod:`app.http.sse`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import PlainTextResponse, StreamingResponse

from .. import formats, sse
from ..dependencies import AudioCall, AudioUpload, require_api_key
from ...errors import InvalidParameter, echo
from ..schemas import (OpenAISegment, OpenAITranscriptionForm, OpenAITranscriptionOut, OpenAIVerboseTranscriptionOut,
                       OpenAIWord)
from . import AUDIO_ERRORS

# ISO-639-1 codes OpenAI clients send; the one recognizer is English.
SUPPORTED_LANGUAGES = ("en",)

router = APIRouter(prefix="/v1/audio", tags=["openai"], dependencies=[Depends(require_api_key)],
                   responses=AUDIO_ERRORS)


@router.post(
    "/transcriptions",
    response_model=OpenAIVerboseTranscriptionOut | OpenAITranscriptionOut,
    response_model_exclude_none=True,
    responses={200: {"content": {"text/plain": {}, "text/event-stream": {}}}},
)
async def create_transcription(file: AudioUpload, form: Annotated[OpenAITranscriptionForm, Form()], call: AudioCall):
    """OpenAI ``audio.transcriptions.create``."""
    if form.stream and form.response_format not in ("json", "text"):
        raise InvalidParameter("stream=true sends transcript.text events: response_format must be json or text",
                               param="response_format")
    if form.language is not None and form.language.lower() not in SUPPORTED_LANGUAGES:
        raise InvalidParameter(f"language {echo(form.language)} is not supported; the recognizer is English only "
                               f"(language=en)", code="unsupported_language", param="language")
    model = call.model(form.model, "asr")
    audio = await call.read(file, form)
    if form.stream:
        events = sse.transcript_events(call.engine, model, audio, beam_search=form.beam_search,
                                       deadline=call.deadline(audio),
                                       on_done=lambda: call.observe("/v1/audio/transcriptions", audio))
        return StreamingResponse(await sse.sse_stream(events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    transcript = await call.engine.transcribe(model, audio, beam_search=form.beam_search, deadline=call.deadline(audio))
    call.observe("/v1/audio/transcriptions", audio)

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

