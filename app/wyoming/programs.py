"""What a ``describe`` is answered with: one asr program (the served recognizers, English) and one wake program
whose wake words are the keywords of the first served keyword model (``yes``, ``marvin``, ``sheila``, ...). A
``detect`` may also name any other word, searched for by the recognizer: there is no list of those to describe."""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, WakeModel, WakeProgram

from app import __version__
from ..engine import Engine

__all__ = ["ASR_PROGRAM", "WAKE_PROGRAM", "LANGUAGE", "served", "wake_words", "describe"]

ASR_PROGRAM, WAKE_PROGRAM = "centaurus-asr", "centaurus-wake"
LANGUAGE = "en"
ATTRIBUTION = Attribution(name="Centaurus Speech", url="")


def served(engine: Engine, task: str) -> list[str]:
    """The served models of ``task`` (``asr``, ``kws``), in the order of the configuration."""
    return [name for name, card in engine.cards.items() if card.task == task]


def wake_words(engine: Engine, model: str) -> list[str]:
    """The keywords of a keyword model (its labels but ``_unknown_`` and ``_silence_``)."""
    return [label for label in engine.cards[model].labels if not label.startswith("_")]


def describe(engine: Engine) -> Info:
    asr = [AsrProgram(
        name=ASR_PROGRAM, description="Centaurus Speech recognizer", attribution=ATTRIBUTION, installed=True,
        version=__version__, supports_transcript_streaming=True,
        models=[AsrModel(name=name, description=f"Centaurus {name} (English, CTC)", attribution=ATTRIBUTION,
                         installed=True, version=None, languages=[LANGUAGE]) for name in served(engine, "asr")],
    )] if served(engine, "asr") else []
    wake = []
    if kws := served(engine, "kws"):
        wake = [WakeProgram(
            name=WAKE_PROGRAM, description=f"Centaurus keyword spotter ({kws[0]})", attribution=ATTRIBUTION,
            installed=True, version=__version__,
            models=[WakeModel(name=word, description=word, phrase=word, attribution=ATTRIBUTION, installed=True,
                              version=None, languages=[LANGUAGE]) for word in wake_words(engine, kws[0])],
        )]
    return Info(asr=asr, wake=wake)
