"""``POST /transcribe``: the native transcription endpoint (words with times and confidence, denoise first)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from ..dependencies import deadline_for, get_engine, get_metrics, get_settings, read_audio, require_api_key, resolve_model
from ..metrics import Metrics
from ..schemas import TranscribeForm, TranscriptionOut, WordOut
from ..service import Engine
from ..settings import Settings
from . import AUDIO_ERRORS

router = APIRouter(tags=["transcription"], dependencies=[Depends(require_api_key)], responses=AUDIO_ERRORS)


@router.post("/transcribe", response_model=TranscriptionOut, response_model_exclude_none=True)
async def transcribe(
    file: Annotated[UploadFile, File(description="Audio in any common container, or raw PCM (see encoding)")],
    request: Request,
    form: Annotated[TranscribeForm, Form()],
    settings: Settings = Depends(get_settings),
    engine: Engine = Depends(get_engine),
    metrics: Metrics = Depends(get_metrics),
) -> TranscriptionOut:
    """Speech to text with per-word start, end and confidence."""
    started = time.perf_counter()
    model = resolve_model(engine, settings, form.model, "asr")
    denoiser = resolve_model(engine, settings, form.denoise_model, "denoise", "denoise_model") if form.denoise else None
    audio = await read_audio(file, form, settings, request)
    transcript = await engine.transcribe(model, audio, beam_search=form.beam_search, deadline=deadline_for(settings, audio.duration),
                                         denoise_model=denoiser)
    metrics.observe_audio("/transcribe", audio.duration, time.perf_counter() - started)
    words = [WordOut(word=w.text, start=w.start, end=w.end, confidence=w.confidence) for w in transcript.words]
    return TranscriptionOut(text=transcript.text, duration=round(audio.duration, 3),
                            words=words if form.word_timestamps else None, model=model)
