"""Keyword spotting rules: one-second windows, the tail rule, the detection rule and runs of detections.

The classifier is trained on one-second clips, so audio of any length is scored in windows of one second
(:func:`window_length`) every ``hop`` seconds (:func:`hop_length`). The *tail rule* (:func:`tail_start`) adds
one window at the end: a clip shorter than a window is one window at 0, zero-padded; a clip whose hops stop
short of its end gets one more window flush with the end. A whole clip's windows are :class:`ClipWindows`; a
live stream's, as its audio arrives, :class:`LiveWindows`: both give the same windows for the same audio.

A window *detects* a keyword when that keyword is the top class of all classes (``_unknown_`` and ``_silence_``
included) and its probability is at least the threshold (:func:`detected_keywords`). A detection is a run of
consecutive windows that detect the same keyword: it spans those windows and scores their maximum
(:class:`DetectionRuns`, which consumes windows in order and hands back each detection as soon as its run ends,
so a file and a live stream give the same detections).

The service's ``POST /keywords`` and keyword stream, and ``training``'s metrics and evaluation, use these
functions, so an evaluated false-alarm rate is the service's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["DEFAULT_HOP_SECONDS", "DEFAULT_THRESHOLD", "HOP_LIMITS", "LIVE_HOP_LIMITS", "ClipWindows", "Detection", "DetectionRuns", "LiveWindows",
           "detected_keywords", "hop_length", "keyword_indices", "scan", "tail_start", "window_length",
           "window_starts"]

DEFAULT_HOP_SECONDS = 0.25
DEFAULT_THRESHOLD = 0.5
# The hops a caller may ask for, (lowest, highest) in seconds. A clip's cost is bounded by its length, so uploads
# may slide by 10 ms; a live stream classifies a window per hop for as long as it lasts, beside every other
# stream, so it may not go below 50 ms (20 windows a second).
HOP_LIMITS = (0.01, 1.0)
LIVE_HOP_LIMITS = (0.05, 1.0)


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


def window_length(rate: int) -> int:
    """Samples per window: one second, the length of the classifier's training clips."""
    return rate


def hop_length(hop_seconds: float, rate: int) -> int:
    """Samples between window starts: ``hop_seconds`` rounded to a sample, at least one."""
    return max(1, int(round(hop_seconds * rate)))


def tail_start(length: int, window: int, last_start: int | None) -> int | None:
    """The tail rule: the start of the window added at the end of a clip of ``length`` samples whose last full
    window started at ``last_start`` (None: no full window). A clip shorter than a window gets one window at 0
    (the caller pads it); one whose hops stop short of its end, one flush with the end; others none."""
    if last_start is None:
        return 0
    return length - window if last_start + window < length else None


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """First samples of the windows over a clip of ``length`` samples: every ``hop`` samples while a whole
    window fits, then the tail rule's window (:func:`tail_start`)."""
    starts = list(range(0, length - window + 1, hop))
    tail = tail_start(length, window, starts[-1] if starts else None)
    return starts if tail is None else [*starts, tail]


@dataclass(frozen=True)
class Detection:
    keyword: str
    start: float
    end: float
    score: float


class DetectionRuns:
    """Window scores in, detections out; ``keywords=None`` watches every keyword of the model. ``window``
    defaults to :func:`window_length` (tests pass a short one)."""

    def __init__(self, labels: Sequence[str], *, rate: int, threshold: float, window: int | None = None,
                 keywords: Iterable[str] | None = None) -> None:
        self.labels, self.rate, self.threshold = list(labels), rate, threshold
        self.window = window_length(rate) if window is None else window
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


@dataclass(frozen=True)
class ClipWindows:
    """The windows over one whole clip (``POST /keywords``, the evaluation's scans): :func:`window_starts`, and
    the clip zero-padded to one window when it is shorter."""

    padded: np.ndarray  # (max(L, window),) the clip, padded at the end to at least one window
    length: int  # L, the clip's own length: the last detection ends there
    rate: int
    starts: list[int]  # first sample of each window

    @classmethod
    def of(cls, wave: np.ndarray, rate: int, hop_seconds: float = DEFAULT_HOP_SECONDS) -> ClipWindows:
        """The windows over ``wave (L,)`` at ``rate`` Hz, every ``hop_seconds``."""
        window = window_length(rate)
        starts = window_starts(len(wave), window, hop_length(hop_seconds, rate))
        return cls(np.pad(wave, (0, max(0, window - len(wave)))), len(wave), rate, starts)

    @property
    def window(self) -> int:
        return window_length(self.rate)

    def rows(self, first: int = 0, stop: int | None = None) -> np.ndarray:
        """Windows ``first`` to ``stop`` (all by default) as rows ``(W, window)``: callers batch them."""
        return np.stack([self.padded[s: s + self.window] for s in self.starts[first:stop]])

    def detections(self, probs: np.ndarray, labels: Sequence[str], *, threshold: float = DEFAULT_THRESHOLD,
                   keywords: Iterable[str] | None = None) -> list[Detection]:
        """The detections, given every window's class probabilities ``probs (W, C)``."""
        runs = DetectionRuns(labels, rate=self.rate, threshold=threshold, keywords=keywords)
        return [d for start, p in zip(self.starts, probs) for d in runs.push(start, p, self.length)] + runs.close()

    def ranking(self, probs: np.ndarray, labels: Sequence[str]) -> list[tuple[str, float]] | None:
        """Every class with its mean probability ``probs (W, C)`` over the windows, best first; only for a clip
        of about one window (at most 1.5), where one ranking of the whole clip means something."""
        if self.length > 1.5 * self.window:
            return None
        mean = probs.mean(axis=0)
        return sorted(((labels[i], round(float(mean[i]), 4)) for i in range(len(labels))), key=lambda pair: -pair[1])


class LiveWindows:
    """The windows of a stream as its audio arrives: the same as :class:`ClipWindows` of the whole audio.

    Holds only the audio of the current window, so a stream's memory stays bounded however long it runs.
    """

    def __init__(self, rate: int, hop_seconds: float = DEFAULT_HOP_SECONDS) -> None:
        self.window, self.hop = window_length(rate), hop_length(hop_seconds, rate)
        self.history = np.zeros(0, np.float32)  # the last ``window`` samples (fewer at the start)
        self.samples = 0  # samples received so far
        self.next_start = 0  # first sample of the next window
        self.last_start: int | None = None  # first sample of the last full window

    def _window_at(self, start: int) -> np.ndarray:
        """The ``(window,)`` samples from ``start`` (still in the history), zero-padded past the audio's end."""
        offset = start - (self.samples - len(self.history))
        audio = self.history[offset: offset + self.window]
        return np.pad(audio, (0, self.window - len(audio)))

    def push(self, chunk: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """``chunk (T,)`` -> the windows it completes, as ``[(start sample, (window,) audio)]``."""
        self.history = np.concatenate([self.history, np.asarray(chunk, np.float32)])
        self.samples += len(chunk)
        complete = []
        while self.next_start + self.window <= self.samples:
            complete.append((self.next_start, self._window_at(self.next_start)))
            self.last_start = self.next_start
            self.next_start += self.hop
        self.history = self.history[-self.window:]
        return complete

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The tail rule's window at the end of the stream (none for a stream that sent no audio)."""
        start = tail_start(self.samples, self.window, self.last_start) if self.samples else None
        return [] if start is None else [(start, self._window_at(start))]


def scan(classify: Callable[[np.ndarray], np.ndarray], wave: np.ndarray, labels: Sequence[str], *, rate: int,
         hop_seconds: float = DEFAULT_HOP_SECONDS, threshold: float = DEFAULT_THRESHOLD,
         keywords: Iterable[str] | None = None) -> list[Detection]:
    """The detections in a clip, offline: ``classify`` maps windows ``(W, window)`` to probabilities ``(W, C)``.
    The same windows and runs as ``POST /keywords``."""
    clip = ClipWindows.of(wave, rate, hop_seconds)
    return clip.detections(classify(clip.rows()), labels, threshold=threshold, keywords=keywords)
