"""Keyword detections from window scores, shared by ``POST /keywords`` and the keyword stream.

Windows of one second (the classifier's training length) are scored every hop. A detection is a run of
consecutive windows whose best class is the same keyword with a score of at least ``threshold``: it spans
those windows and scores their maximum. :class:`DetectionRuns` consumes windows in order and hands back each
detection as soon as its run ends, so a file and a live stream give the same detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["Detection", "DetectionRuns"]


@dataclass(frozen=True)
class Detection:
    keyword: str
    start: float
    end: float
    score: float


class DetectionRuns:
    """Window scores in, detections out; ``keywords=None`` watches every keyword of the model."""

    def __init__(self, labels: list[str], *, rate: int, window: int, threshold: float,
                 keywords: Iterable[str] | None = None) -> None:
        self.labels, self.rate, self.window, self.threshold = list(labels), rate, window, threshold
        wanted = None if keywords is None else set(keywords)
        # Classes starting with "_" (_unknown_, _silence_) are never detections.
        self.candidates = [i for i, label in enumerate(self.labels)
                           if not label.startswith("_") and (wanted is None or label in wanted)]
        self._open: list | None = None  # [label, start, end, score]

    def update(self, *, keywords: Iterable[str] | None = None, threshold: float | None = None) -> None:
        """New settings from the next window on (``session.update``)."""
        if threshold is not None:
            self.threshold = threshold
        if keywords is not None:
            wanted = set(keywords)
            self.candidates = [i for i, label in enumerate(self.labels) if not label.startswith("_") and label in wanted]

    def push(self, start: int, probs: np.ndarray, length: int | None = None) -> list[Detection]:
        """The window starting at sample ``start``; ``length`` (the clip's, when known) crops its end.
        Returns the detections this window closed."""
        best = max(self.candidates, key=lambda i: probs[i]) if self.candidates else None
        hit = best is not None and probs[best] >= self.threshold and int(np.argmax(probs)) == best
        end = start + self.window if length is None else min(start + self.window, length)
        t0, t1 = start / self.rate, end / self.rate
        run = self._open
        if hit and run is not None and run[0] == self.labels[best] and t0 <= run[2]:
            run[2], run[3] = t1, max(run[3], float(probs[best]))
            return []
        closed = self.close()
        if hit:
            self._open = [self.labels[best], t0, t1, float(probs[best])]
        return closed

    def close(self) -> list[Detection]:
        """End the open run, if any (end of the audio, or a flush)."""
        if self._open is None:
            return []
        label, t0, t1, score = self._open
        self._open = None
        return [Detection(label, round(t0, 3), round(t1, 3), round(score, 4))]
