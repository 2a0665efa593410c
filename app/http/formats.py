"""Transcript presentation: segments from timed words, and SRT / WebVTT subtitles.

A CTC recognizer has no segments of its own; a segment here ends at a pause of ``pause`` seconds or once it
is ``max_seconds`` long, which reads well as a subtitle cue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model_zoo.nets.ctc import Word

__all__ = ["Segment", "segments", "srt", "vtt"]


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...]

    @property
    def avg_logprob(self) -> float:
        return sum(math.log(max(w.confidence, 1e-6)) for w in self.words) / max(1, len(self.words))


def segments(words: tuple[Word, ...] | list[Word], pause: float = 0.8, max_seconds: float = 10.0) -> list[Segment]:
    groups: list[list[Word]] = []
    for word in words:
        if groups and word.start - groups[-1][-1].end < pause and word.end - groups[-1][0].start <= max_seconds:
            groups[-1].append(word)
        else:
            groups.append([word])
    return [Segment(g[0].start, g[-1].end, " ".join(w.text for w in g), tuple(g)) for g in groups]


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def srt(parts: list[Segment]) -> str:
    cues = [f"{i}\n{_clock(p.start, ',')} --> {_clock(p.end, ',')}\n{p.text}\n" for i, p in enumerate(parts, 1)]
    return "\n".join(cues)


def vtt(parts: list[Segment]) -> str:
    cues = [f"{_clock(p.start, '.')} --> {_clock(p.end, '.')}\n{p.text}\n" for p in parts]
    return "WEBVTT\n\n" + "\n".join(cues)
