"""Endpoint detection for streaming recognition: where an utterance ends, from the recognizer's blank posteriors.

The rules are Kaldi's and sherpa-onnx's (``OnlineEndpointConfig``): an utterance ends after

1. ``silence_without_speech`` seconds of trailing silence when it holds no speech yet (2.4 s),
2. ``silence_after_speech`` seconds of trailing silence after some speech (1.2 s),
3. ``max_utterance`` seconds in all, silence or not (20 s).

Silence is read off the CTC recognizer's own output, which a stream computes anyway: a frame is silent when its
blank posterior is at least ``blank_threshold``; any other frame is speech (the recognizer is about to emit a
token there). sherpa-onnx counts the trailing blanks of its greedy path the same way. No voice-activity network
has to be trained or run, and the rule does not depend on what the words are, only on whether the recognizer
hears any: a recognizer that gets words wrong still hears where they are. ``bench/endpointing.py`` measures it
on held-out speech with inserted pauses (numbers in ``bench/README.md``).

:class:`EndpointDetector` takes each step's blank posteriors (:func:`blank_probabilities` of the step's logits)
and returns the first :class:`Endpoint` it finds; the caller ends the utterance there and calls
:meth:`EndpointDetector.reset` for the next one. Pure numpy and torch: the service, the benchmark and the tests
run the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["EndpointRules", "Endpoint", "EndpointDetector", "RecognizerStep", "blank_probabilities",
           "DEFAULT_BLANK_THRESHOLD", "MAX_RULE_SECONDS"]

# A frame is silent when P(blank) >= this. Chosen by bench/endpointing.py on held-out speech with inserted 1.5 s
# pauses (bench/README.md): with the default rules every threshold from 0.5 to 0.9 cuts 100% of the pauses in
# silence and noise down to -30 dBFS; in loud noise (-20 dBFS) 0.9 keeps only 72% (noise makes the recognizer
# hesitate inside the pause) and 0.7 98%; with short silences (0.5 s, OpenAI's server_vad default) 0.5 splits
# sentences (1.3-2.7 cuts per minute of speech) and 0.7 rarely (0.2-0.4). 0.7 is the balance.
DEFAULT_BLANK_THRESHOLD = 0.7

# The longest any rule may be (seconds): a stream's whole session is bounded elsewhere; this keeps the options sane.
MAX_RULE_SECONDS = 3600.0


@dataclass(frozen=True)
class EndpointRules:
    """The lengths of the three rules, in seconds (sherpa-onnx's defaults)."""

    silence_without_speech: float = 2.4  # rule 1: trailing silence, no speech in the utterance yet
    silence_after_speech: float = 1.2  # rule 2: trailing silence after some speech
    max_utterance: float = 20.0  # rule 3: the utterance's whole length

    def __post_init__(self) -> None:
        for name in ("silence_without_speech", "silence_after_speech", "max_utterance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= MAX_RULE_SECONDS):
                raise ValueError(f"{name} must be a number of seconds in (0, {MAX_RULE_SECONDS:g}], not {value!r}")


@dataclass(frozen=True)
class Endpoint:
    """Where an utterance ended, in frames from its start.

    ``frame``: the frames the utterance had when the rule held; ``rule``: 1, 2 or 3 (see the module docstring);
    ``speech_start``: the utterance's first speech frame (None: it held no speech); ``speech_end``: the frame
    after its last speech frame (None likewise).
    """

    frame: int
    rule: int
    speech_start: int | None
    speech_end: int | None


@dataclass(frozen=True)
class RecognizerStep:
    """What one live step of a recognizer returns when endpointing is asked for: the greedy text of the segment so
    far when this step changed it (None: unchanged, or partials off) and the step's blank posteriors, one per
    frame."""

    partial: str | None
    blank: np.ndarray


def blank_probabilities(logits: Tensor) -> np.ndarray:
    """``logits (..., vocab, frames)`` (or log-probabilities) of a CTC recognizer -> ``P(blank)`` per frame
    ``(..., frames)``, float32 (a batch of streams at once). Blank is index 0 of every vocabulary here."""
    if logits.shape[-1] == 0:
        return np.zeros((*logits.shape[:-2], 0), np.float32)
    return torch.softmax(logits.float(), dim=-2)[..., 0, :].cpu().numpy().astype(np.float32)


class EndpointDetector:
    """The three rules over a stream of blank posteriors (frames in, endpoint decisions out).

    ``frame_seconds`` is the recognizer's frame; ``blank_threshold`` decides silence (module docstring). The
    rules may change at any time (:attr:`rules`); they apply from the next frame.
    """

    def __init__(self, rules: EndpointRules, frame_seconds: float,
                 blank_threshold: float = DEFAULT_BLANK_THRESHOLD) -> None:
        if not 0.0 < blank_threshold <= 1.0:
            raise ValueError(f"blank_threshold must be in (0, 1], not {blank_threshold!r}")
        self.rules, self.frame_seconds, self.blank_threshold = rules, float(frame_seconds), float(blank_threshold)
        self.reset()

    def reset(self) -> None:
        """A new utterance starts with the next frame."""
        self.frames = 0  # frames of the current utterance
        self.speech_start: int | None = None  # its first speech frame
        self.speech_end: int | None = None  # the frame after its last speech frame

    @property
    def trailing_silence(self) -> float:
        """Seconds of silence at the end of the utterance so far (all of it when it holds no speech)."""
        return (self.frames - (self.speech_end or 0)) * self.frame_seconds

    def _rule(self) -> int:
        """The rule that holds now (0: none)."""
        seconds = self.frames * self.frame_seconds
        silence = self.trailing_silence
        # A small tolerance, so that a length that is a whole number of frames fires on that frame despite
        # float rounding (1.2 s = 40 frames of 30 ms).
        eps = 1e-6
        if self.speech_start is None and silence + eps >= self.rules.silence_without_speech:
            return 1
        if self.speech_start is not None and silence + eps >= self.rules.silence_after_speech:
            return 2
        if seconds + eps >= self.rules.max_utterance:
            return 3
        return 0

    def push(self, blank: np.ndarray) -> Endpoint | None:
        """The next frames' ``P(blank)``; the first endpoint among them, if any.

        Frames after the endpoint in the same call still count towards the utterance (a stream cuts at the end of
        the step that held the endpoint); the caller resets before the next utterance's frames.
        """
        found: Endpoint | None = None
        for p in np.asarray(blank, np.float32).reshape(-1):
            if p < self.blank_threshold:  # speech
                if self.speech_start is None:
                    self.speech_start = self.frames
                self.speech_end = self.frames + 1
            self.frames += 1
            if found is None and (rule := self._rule()):
                found = Endpoint(self.frames, rule, self.speech_start, self.speech_end)
        return found
