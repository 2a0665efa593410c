"""Keyword spotting rules: one-second windows, the detection rule and runs of detections.

The classifier is trained on one-second clips, so audio of any length is scored in windows of one second
every ``hop`` seconds (:func:`window_starts`). A window *detects* a keyword when that keyword is the top
class of all classes (``_unknown_`` and ``_silence_`` included) and its probability is at least the threshold
(:func:`detected_keywords`). A detection is a run of consecutive windows that detect the same keyword: it
spans those windows and scores their maximum (:class:`DetectionRuns`, which consumes windows in order and
hands back each detection as soon as its run ends, so a file and a live stream give the same detections).

The service's ``POST /keywords`` and keyword stream, and ``training``'s metrics and evaluation, use these
functions, so an evaluated false-alarm rate is the service's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["DEFAULT_HOP_SECONDS", "DEFAULT_THRESHOLD", "Detection", "DetectionRuns", "detected_keywords",
           "keyword_indices", "scan", "window_starts"]

DEFAULT_HOP_SECONDS = 0.25
DEFAULT_THRESHOLD = 0.5


def keyword_indices(labels: Sequence[str], wanted: Iterable[str] | None = None) -> list[int]:
    """The classes that can be detected: every label not starting with ``_`` (``_unknown_`` and
    ``_silence_`` never are), restricted to ``wanted`` when given."""
    chosen = None if wanted is None else set(wanted)
    return [i for i, label in enumerate(labels) if not label.startswith("_") and (chosen is None or label in chosen)]


def detected_keywords(probs: Tensor | np.ndarray, candidates: Sequence[int], threshold: float) -> Tensor:
    """The detection rule. ``probs`` ``(B, C)`` class probabilities -> ``(B,)`` int64: the class index of the
    keyword each row detects, or -1: the top class must be one of ``candidates`` with probability >= ``threshold``."""
    probs = torch.as_tensor(probs)
    confidence, top = probs.max(-1)
    allowed = torch.zeros(probs.shape[-1], dtype=torch.bool)
    allowed[list(candidates)] = True
    return torch.where(allowed[top] & (confidence >= threshold), top, torch.full_like(top, -1))


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """First samples of the windows over a clip of ``length`` samples: every ``hop`` samples, plus one window
    flush with the end when the hops stop short of it. A clip shorter than a window has one window at 0 (the
    caller pads it)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


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
        self.candidates = keyword_indices(self.labels, keywords)
        self._open: list | None = None  # [label, start, end, score]

    def update(self, *, keywords: Iterable[str] | None = None, threshold: float | None = None) -> None:
        """New settings from the next window on (``session.update``)."""
        if threshold is not None:
            self.threshold = threshold
        if keywords is not None:
            self.candidates = keyword_indices(self.labels, keywords)

    def push(self, start: int, probs: np.ndarray, length: int | None = None) -> list[Detection]:
        """The window starting at sample ``start``; ``length`` (the clip's, when known) crops its end.
        Returns the detections this window closed."""
        best = int(detected_keywords(np.asarray(probs)[None], self.candidates, self.threshold)[0])
        hit = best >= 0
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


def scan(classify: Callable[[np.ndarray], np.ndarray], wave: np.ndarray, labels: Sequence[str], *, rate: int,
         hop_seconds: float = DEFAULT_HOP_SECONDS, threshold: float = DEFAULT_THRESHOLD,
         keywords: Iterable[str] | None = None) -> list[Detection]:
    """The detections in a clip, offline: ``classify`` maps windows ``(W, rate)`` to probabilities ``(W, C)``.
    The same windows and runs as ``POST /keywords``."""
    window = rate
    starts = window_starts(len(wave), window, max(1, int(round(hop_seconds * rate))))
    padded = np.pad(wave, (0, max(0, window - len(wave))))
    probs = classify(np.stack([padded[s: s + window] for s in starts]))
    runs = DetectionRuns(list(labels), rate=rate, window=window, threshold=threshold, keywords=keywords)
    return [d for start, p in zip(starts, probs) for d in runs.push(start, p, len(wave))] + runs.close()
