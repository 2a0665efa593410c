"""``POST /denoise`` (also ``/v1/audio/denoise``): enhanced audio of the same duration and sample rate.

The body is the audio itself (WAV by default, FLAC, or raw ``pcm_s16le``); ``X-Sample-Rate``, ``X-Channels``
and ``X-Duration`` headers describe it, which raw PCM needs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile

from ..audio import OUTPUT_FORMATS, encode
from ..dependencies import deadline_for, get_engine, get_metrics, get_settings, read_audio, require_api_key, resolve_model
from ..metrics import Metrics
from ..schemas import DenoiseForm
from ..service import Engine
from ..settings import Settings
from . import AUDIO_ERRORS

router = APIRouter(tags=["denoise"], dependencies=[Depends(require_api_key)], responses=AUDIO_ERRORS)

_AUDIO_RESPONSE = {200: {"content": {m: {} for m in OUTPUT_FORMATS.values()}, "description": "The enhanced audio"}}


@router.post("/denoise", response_class=Response, responses=_AUDIO_RESPONSE)
@router.post("/v1/audio/denoise", response_class=Response, responses=_AUDIO_RESPONSE, include_in_schema=False)
async def denoise(
    file: Annotated[UploadFile, File(description="Noisy audio in any common container, or raw PCM")],
    request: Request,
    form: Annotated[DenoiseForm, Form()],
    settings: Settings = Depends(get_settings),
    engine: Engine = Depends(get_engine),
    metrics: Metrics = Depends(get_metrics),
) -> Response:
    """Speech enhancement; mono output at the input's sample rate, sample for sample as long as the input."""
    started = time.perf_counter()
    model = resolve_model(engine, settings, form.model, "denoise")
    audio = await read_audio(file, form, settings, request)
    clean = await engine.denoise(model, audio, deadline=deadline_for(settings, audio.duration))
    body = await asyncio.to_thread(encode, clean, audio.sample_rate, form.response_format)
    metrics.observe_audio("/denoise", audio.duration, time.perf_counter() - started)
    headers = {"X-Sample-Rate": str(audio.sample_rate), "X-Channels": "1", "X-Duration": f"{audio.duration:.6f}",
               "X-Model": model}
    if form.response_format == "pcm":
        headers["X-Encoding"] = "pcm_s16le"
    return Response(body, media_type=OUTPUT_FORMATS[form.response_format], headers=headers)
