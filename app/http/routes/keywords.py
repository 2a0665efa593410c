"""``POST /keywords`` (also ``/v1/audio/keywords``): keyword detections in clips of any length.

The keyword model's own words are spotted by the classifier; any other word or phrase asked for (open vocabulary)
is searched for in the served recognizer's CTC posteriors, in the worker (:mod:`model_zoo.pipelines.open_keywords`);
which is which, and what is refused, is :func:`app.keywords.choose_keywords` (the keyword stream's and Wyoming's
rule too). Both kinds come back as one list of detections, by start time.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Form

from model_zoo.pipelines.kws import Detection

from ..dependencies import AudioCall, AudioUpload, require_api_key
from ...keywords import choose_keywords, first_served
from ..schemas import ClassScoreOut, DetectionOut, KeywordsForm, KeywordsOut
from . import AUDIO_ERRORS

router = APIRouter(tags=["keywords"], dependencies=[Depends(require_api_key)], responses=AUDIO_ERRORS)


@router.post("/keywords", response_model=KeywordsOut, response_model_exclude_none=True)
@router.post("/v1/audio/keywords", response_model=KeywordsOut, response_model_exclude_none=True,
             include_in_schema=False)
async def keywords(file: AudioUpload, form: Annotated[KeywordsForm, Form()], call: AudioCall) -> KeywordsOut:
    """Slides one-second windows by ``hop`` over the clip; for clips of about a second also ranks all classes.
    Words the keyword model does not know are searched for in the recognizer's output (``keywords``)."""
    specs = form.keyword_specs()
    engine = call.engine
    model = call.model(form.model, "kws") if form.model is not None or specs is None else first_served(engine, "kws")
    choice = choose_keywords(engine, model, specs or (), first_served(engine, "asr"))
    wanted, open_keywords, recognizer = choice.classifier, choice.open, choice.recognizer
    classify = specs is None or wanted is not None
    audio = await call.read(file, form)
    deadline = call.deadline(audio)
    jobs = []
    if classify:
        jobs.append(call.engine.keywords(model, audio, hop=form.hop, threshold=form.threshold, keywords=wanted,
                                         deadline=deadline, max_rows=call.settings.max_batch_size))
    if open_keywords:
        jobs.append(call.engine.open_keywords(recognizer, audio, open_keywords, deadline=deadline))
    results = await asyncio.gather(*jobs)
    call.observe("/keywords", audio)
    found: list[Detection] = list(results[-1]) if open_keywords else []
    scores = None
    if classify:
        found += results[0].detections
        scores = results[0].scores
    return KeywordsOut(
        model=model if classify else recognizer,
        recognizer=recognizer if open_keywords else None,
        duration=round(audio.duration, 3),
        detections=[DetectionOut(keyword=d.keyword, start=d.start, end=d.end, score=d.score)
                    for d in sorted(found, key=lambda d: (d.start, d.end, d.keyword))],
        scores=[ClassScoreOut(label=label, score=score) for label, score in scores] if scores is not None else None,
    )
