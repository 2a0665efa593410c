"""Which keywords a request asks for, and who spots each: one rule for ``POST /keywords``, the keyword stream
(``/v1/stream/keywords``) and Wyoming's wake words.

A keyword is written as a caller writes it (``"Hey Computer #0.4 :0.1"``, parsed by
:func:`model_zoo.pipelines.open_keywords.parse_spec`). A word the keyword classifier knows (its 35) is the
classifier's; any other word or phrase is searched for in the served recognizer's CTC posteriors
(:mod:`model_zoo.pipelines.open_keywords`), with its own threshold and boost. :func:`choose_keywords` splits a
request's keywords between the two and refuses what neither can spot, with the same messages everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_zoo.pipelines.kws import keyword_indices
from model_zoo.pipelines.open_keywords import DEFAULT_THRESHOLD as OPEN_THRESHOLD
from model_zoo.pipelines.open_keywords import MAX_KEYWORDS, KeywordError, OpenKeyword, check_spelling, parse_spec

from .errors import InvalidParameter, NotFound, echo

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["KeywordChoice", "choose_keywords", "first_served", "split_specs"]


@dataclass(frozen=True)
class KeywordChoice:
    """A request's keywords, split: ``classifier``, the classifier's words asked for (None: none of them was);
    ``open``, the others, for the served recognizer ``recognizer`` (None: none is served)."""

    classifier: frozenset[str] | None = None
    open: tuple[OpenKeyword, ...] = ()
    recognizer: str | None = None

    @property
    def watched(self) -> list[str]:
        """The classifier's words to report (:class:`model_zoo.pipelines.kws.DetectionRuns`): none may be."""
        return sorted(self.classifier or ())


def split_specs(values: Iterable[str] | None, param: str) -> list[tuple[str, str]]:
    """Keywords as given (each value may hold several, comma-separated) -> ``(param, text)`` each, stripped."""
    return [(param, part.strip()) for value in values or () for part in value.split(",")]


def first_served(engine: Engine, task: str) -> str | None:
    """The first served model of ``task`` (the configuration's order), or None."""
    return next((name for name, card in engine.cards.items() if card.task == task), None)


def choose_keywords(engine: Engine, classifier: str | None, specs: Iterable[tuple[str, str]],
                    recognizer: str | None) -> KeywordChoice:
    """``specs`` ``[(param, text)]`` split between the keyword model ``classifier`` and the recognizer
    ``recognizer`` (either may be None: not served).

    Raises :class:`InvalidParameter` (``param`` naming the field) for an empty or over-long keyword, one the
    recognizer cannot spell, a malformed threshold (``#``) or boost (``:``), a mark on one of the classifier's
    words, the same keyword with two settings, more than ``MAX_KEYWORDS`` for the recognizer, and a word the
    classifier does not know when no recognizer is served; :class:`NotFound` when neither model is served."""
    labels = (engine.cards[classifier].labels or ()) if classifier is not None else ()
    classifier_words = {labels[i] for i in keyword_indices(labels)}  # never _unknown_ or _silence_
    vocab = (engine.cards[recognizer].vocab or ()) if recognizer is not None else ()
    wanted: set[str] | None = None
    searched: dict[str, OpenKeyword] = {}
    for param, spec in specs:
        try:
            text, threshold, boost = parse_spec(spec)
            if text not in classifier_words and recognizer is not None:
                check_spelling(text, vocab)
        except KeywordError as err:
            raise InvalidParameter(f"keyword {echo(spec)}: {err}", param=param) from None
        if text in classifier_words:
            if threshold is not None or boost is not None:
                raise InvalidParameter(f"keyword {echo(spec)}: a threshold (#) or boost (:) is for words the keyword "
                                       "model does not know; its own words use threshold", param=param)
            wanted = (wanted or set()) | {text}
            continue
        if recognizer is None:
            if classifier is None:
                raise NotFound("no kws model is served", code="model_not_found", param="model")
            raise InvalidParameter(f"unknown keywords {echo([text])}; the model knows {sorted(classifier_words)} "
                                   "and no recognizer is served for other words", param=param)
        keyword = OpenKeyword(text, OPEN_THRESHOLD if threshold is None else threshold, boost or 0.0)
        if searched.setdefault(text, keyword) != keyword:
            raise InvalidParameter(f"keyword {echo(text)} is given twice with different settings", param=param)
        if len(searched) > MAX_KEYWORDS:
            raise InvalidParameter(f"at most {MAX_KEYWORDS} keywords the keyword model does not know may be "
                                   "searched for at once", param=param)
    return KeywordChoice(frozenset(wanted) if wanted is not None else None, tuple(searched.values()), recognizer)
