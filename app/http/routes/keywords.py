"""``POST /keywords`` (also ``/v1/audio/keywords``): keyword detections in clips of any length."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form

from ..dependencies import AudioCall, AudioUpload, require_api_key
from ...errors import InvalidParameter, echo
from ..schemas import ClassScoreOut, DetectionOut, KeywordsForm, KeywordsOut
from . import AUDIO_ERRORS

router = APIRouter(tags=["keywords"], dependencies=[Depends(require_api_key)], responses=AUDIO_ERRORS)


@router.post("/keywords", response_model=KeywordsOut, response_model_exclude_none=True)
@router.post("/v1/audio/keywords", response_model=KeywordsOut, response_model_exclude_none=True,
             include_in_schema=False)
async def keywords(file: AudioUpload, form: Annotated[KeywordsForm, Form()], call: AudioCall) -> KeywordsOut:
    """Slides one-second windows by ``hop`` over the clip; for clips of about a second also ranks all classes."""
    model = call.model(form.model, "kws")
    wanted = None
    if form.keywords:
        unknown = call.engine.unknown_keywords(model, form.keywords)
        if unknown:
            raise InvalidParameter(f"unknown keywords {echo(unknown)}; the model knows "
                                   f"{sorted(call.engine.cards[model].labels or ())}", param="keywords[]")
        wanted = set(form.keywords)
    audio = await call.read(file, form)
    result = await call.engine.keywords(model, audio, hop=form.hop, threshold=form.threshold, keywords=wanted,
                                        deadline=call.deadline(audio), max_rows=call.settings.max_batch_size)
    call.observe("/keywords", audio)
    return KeywordsOut(
        model=model,
        duration=round(audio.duration, 3),
        detections=[DetectionOut(keyword=d.keyword, start=d.start, end=d.end, score=d.score) for d in result.detections],
        scores=[ClassScoreOut(label=label, score=score) for label, score in result.scores]
        if result.scores is not None else None,
    )
