"""``POST /transcribe``: the native transcription endpoint (words with times and confidence, denoise first)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form

from ..dependencies import AudioCall, AudioUpload, require_api_key
from ..schemas import TranscribeForm, TranscriptionOut, WordOut
from . import AUDIO_ERRORS

router = APIRouter(tags=["transcription"], dependencies=[Depends(require_api_key)], responses=AUDIO_ERRORS)


@router.post("/transcribe", response_model=TranscriptionOut, response_model_exclude_none=True)
async def transcribe(file: AudioUpload, form: Annotated[TranscribeForm, Form()], call: AudioCall) -> TranscriptionOut:
    """Speech to text with per-word start, end and confidence."""
    model = call.model(form.model, "asr")
    denoiser = call.model(form.denoise_model, "denoise", "denoise_model") if form.denoise else None
    audio = await call.read(file, form)
    transcript = await call.engine.transcribe(model, audio, beam_search=form.beam_search, deadline=call.deadline(audio),
                                              denoise_model=denoiser)
    call.observe("/transcribe", audio)
    words = [WordOut(word=w.text, start=w.start, end=w.end, confidence=w.confidence) for w in transcript.words]
    return TranscriptionOut(text=transcript.text, duration=round(audio.duration, 3),
                            words=words if form.word_timestamps else None, model=model)
