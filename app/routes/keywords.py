"""``POST /keywords`` (also ``/v1/audio/keywords``): keyword detections in clips of any length."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from ..dependencies import deadline_for, get_engine, get_metrics, get_settings, read_audio, require_api_key, resolve_model
from ..errors import InvalidParameter
from ..metrics import Metrics
from ..schemas import ClassScoreOut, DetectionOut, KeywordsForm, KeywordsOut
from ..service import Engine
from ..settings import Settings
from . import AUDIO_ERRORS

router = APIRouter(tags=["keywords"], dependencies=[Depends(require_api_key)], responses=AUDIO_ERRORS)


@router.post("/keywords", response_model=KeywordsOut, response_model_exclude_none=True)
@router.post("/v1/audio/keywords", response_model=KeywordsOut, response_model_exclude_none=True,
             include_in_schema=False)
async def keywords(
    file: Annotated[UploadFile, File(description="Audio in any common container, or raw PCM")],
    request: Request,
    form: Annotated[KeywordsForm, Form()],
    settings: Settings = Depends(get_settings),
    engine: Engine = Depends(get_engine),
    metrics: Metrics = Depends(get_metrics),
) -> KeywordsOut:
    """Slides one-second windows by ``hop`` over the clip; for clips of about a second also ranks all classes."""
    started = time.perf_counter()
    model = resolve_model(engine, settings, form.model, "kws")
    wanted = None
    if form.keywords:
        labels = set(engine.cards[model]["labels"])
        unknown = sorted(set(form.keywords) - labels)
        if unknown:
            raise InvalidParameter(f"unknown keywords {unknown}; the model knows {sorted(labels)}", param="keywords[]")
        wanted = set(form.keywords)
    audio = await read_audio(file, form, settings, request)
    result = await engine.keywords(model, audio, hop=form.hop, threshold=form.threshold, keywords=wanted,
                                   deadline=deadline_for(settings, audio.duration), max_rows=settings.max_batch_size)
    metrics.observe_audio("/keywords", audio.duration, time.perf_counter() - started)
    return KeywordsOut(
        model=model,
        duration=round(audio.duration, 3),
        detections=[DetectionOut(keyword=d.keyword, start=d.start, end=d.end, score=d.score) for d in result.detections],
        scores=[ClassScoreOut(label=label, score=score) for label, score in result.scores]
        if result.scores is not None else None,
    )
