"""Label sets shared by the networks, the training data and the service.

KWS classes are the 35 words of Google Speech Commands v2 plus ``_unknown_`` (any other word) and
``_silence_`` (no speech). The ASR vocabulary is lower-case letters, apostrophe and space, with the CTC
blank at index 0.
"""

from __future__ import annotations

import re

__all__ = [
    "SPEECH_COMMANDS_WORDS",
    "UNKNOWN",
    "SILENCE",
    "KWS_LABELS",
    "CTC_BLANK",
    "ASR_VOCAB",
    "normalize_transcript",
]

SPEECH_COMMANDS_WORDS: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward",
    "four", "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off",
    "on", "one", "right", "seven", "sheila", "six", "stop", "three", "tree", "two",
    "up", "visual", "wow", "yes", "zero",
)
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
KWS_LABELS: tuple[str, ...] = SPEECH_COMMANDS_WORDS + (UNKNOWN, SILENCE)

CTC_BLANK = "<blank>"
ASR_VOCAB: tuple[str, ...] = (CTC_BLANK, " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")

_OUTSIDE_VOCAB = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r" +")


def normalize_transcript(text: str) -> str:
    """Lower-case, map every character outside ``a-z``, apostrophe and space to a space, squeeze spaces.

    Digits are not spelled out here: corpora drop sentences with digits instead of guessing a reading.
    """
    text = text.lower().replace("\u2019", "'")
    text = _OUTSIDE_VOCAB.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
