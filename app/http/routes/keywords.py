"""``POST /keywords`` (also ``/v1/audio/keywords``): keyword detections in clips of any length.

The keyword model's own words are spotted by the classifier; any other word or phrase asked for (open vocabulary)
is searched for in the served recognizer's CTC posteriors, in the worker (:mod:`model_zoo.pipelines.open_keywords`).
Both kinds come back as one list of detections, by start time.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Form

from model_zoo.pipelines.kws import Detection, keyword_indices
from model_zoo.pipelines.open_keywords import DEFAULT_THRESHOLD as OPEN_THRESHOLD
from model_zoo.pipelines.open_keywords import MAX_KEYWORDS, KeywordError, OpenKeyword, check_spelling, parse_spec

from ..dependencies import AudioCall, AudioUpload, require_api_key
from ...errors import InvalidParameter, NotFound, echo
from ..schemas import ClassScoreOut, DetectionOut, KeywordsForm, KeywordsOut
from . import AUDIO_ERRORS

router = APIRouter(tags=["keywords"], dependencies=[Depends(require_api_key)], responses=AUDIO_ERRORS)


def _served(call: AudioCall, task: str) -> str | None:
    """The first served model of ``task``, or None."""
    try:
        return call.model(None, task)
    except NotFound:
        return None


@router.post("/keywords", response_model=KeywordsOut, response_model_exclude_none=True)
@router.post("/v1/audio/keywords", response_model=KeywordsOut, response_model_exclude_none=True,
             include_in_schema=False)
async def keywords(file: AudioUpload, form: Annotated[KeywordsForm, Form()], call: AudioCall) -> KeywordsOut:
    """Slides one-second windows by ``hop`` over the clip; for clips of about a second also ranks all classes.
    Words the keyword model does not know are searched for in the recognizer's output (``keywords``)."""
    specs = form.keyword_specs()
    model = call.model(form.model, "kws") if form.model is not None or specs is None else _served(call, "kws")
    labels = (call.engine.cards[model].labels or ()) if model is not None else ()
    classifier_words = {labels[i] for i in keyword_indices(labels)}  # never _unknown_ or _silence_
    recognizer = _served(call, "asr")
    wanted: set[str] | None = None
    open_keywords: dict[str, OpenKeyword] = {}
    for param, spec in specs or ():
        try:
            text, threshold, boost = parse_spec(spec)
            if text not in classifier_words and recognizer is not None:
                check_spelling(text, call.engine.cards[recognizer].vocab or ())
        except KeywordError as err:
            raise InvalidParameter(f"keyword {echo(spec)}: {err}", param=param) from None
        if text in classifier_words:
            if threshold is not None or boost is not None:
                raise InvalidParameter(f"keyword {echo(spec)}: a threshold (#) or boost (:) is for words the keyword "
                                       "model does not know; its own words use threshold", param=param)
            wanted = (wanted or set()) | {text}
            continue
        if recognizer is None:
            if model is None:
                raise NotFound("no kws model is served", code="model_not_found", param="model")
            raise InvalidParameter(f"unknown keywords {echo([text])}; the model knows {sorted(classifier_words)} "
                                   "and no recognizer is served for other words", param=param)
        keyword = OpenKeyword(text, OPEN_THRESHOLD if threshold is None else threshold, boost or 0.0)
        if open_keywords.setdefault(text, keyword) != keyword:
            raise InvalidParameter(f"keyword {echo(text)} is given twice with different settings", param=param)
        if len(open_keywords) > MAX_KEYWORDS:
            raise InvalidParameter(f"at most {MAX_KEYWORDS} keywords the keyword model does not know may be "
                                   "searched for at once", param=param)
    classify = specs is None or wanted is not None
    audio = await call.read(file, form)
    deadline = call.deadline(audio)
    jobs = []
    if classify:
        jobs.append(call.engine.keywords(model, audio, hop=form.hop, threshold=form.threshold, keywords=wanted,
                                         deadline=deadline, max_rows=call.settings.max_batch_size))
    if open_keywords:
        jobs.append(call.engine.open_keywords(recognizer, audio, open_keywords.values(), deadline=deadline))
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
