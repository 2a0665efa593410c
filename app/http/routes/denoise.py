"""``POST /denoise`` (also ``/v1/audio/denoise``): enhanced audio of the same duration and sample rate.

The body is the audio itself (WAV by default, FLAC, or raw ``pcm_s16le``); ``X-Sample-Rate``, ``X-Channels``
and ``X-Duration`` headers describe it, which raw PCM needs.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Response

from ...audio.encode import OUTPUT_FORMATS, encode
from ..dependencies import AudioCall, AudioUpload, require_api_key
from ..schemas import DenoiseForm
from . import AUDIO_ERRORS

router = APIRouter(tags=["denoise"], dependencies=[Depends(require_api_key)], responses=AUDIO_ERRORS)

_AUDIO_RESPONSE = {200: {"content": {m: {} for m in OUTPUT_FORMATS.values()}, "description": "The enhanced audio"}}


@router.post("/denoise", response_class=Response, responses=_AUDIO_RESPONSE)
@router.post("/v1/audio/denoise", response_class=Response, responses=_AUDIO_RESPONSE, include_in_schema=False)
async def denoise(file: AudioUpload, form: Annotated[DenoiseForm, Form()], call: AudioCall) -> Response:
    """Speech enhancement; mono output at the input's sample rate, sample for sample as long as the input."""
    model = call.model(form.model, "denoise")
    audio = await call.read(file, form)
    clean = await call.engine.denoise(model, audio, deadline=call.deadline(audio))
    body = await asyncio.to_thread(encode, clean, audio.sample_rate, form.response_format)
    call.observe("/denoise", audio)
    headers = {"X-Sample-Rate": str(audio.sample_rate), "X-Channels": "1", "X-Duration": f"{audio.duration:.6f}",
               "X-Model": model}
    if form.response_format == "pcm":
        headers["X-Encoding"] = "pcm_s16le"
    return Response(body, media_type=OUTPUT_FORMATS[form.response_format], headers=headers)
