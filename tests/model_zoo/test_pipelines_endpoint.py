"""The endpoint rules (Kaldi / sherpa-onnx style) over blank posteriors, frame by frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_zoo.pipelines.endpoint import (DEFAULT_BLANK_THRESHOLD, EndpointDetector, EndpointRules,
                                          blank_probabilities)

FRAME = 0.03
SILENT, SPEECH = 1.0, 0.1


def frames(*runs: tuple[float, float]) -> np.ndarray:
    """Runs of (P(blank), seconds) as frames of 30 ms."""
    return np.concatenate([np.full(int(round(seconds / FRAME)), p, np.float32) for p, seconds in runs])


def first_endpoint(detector: EndpointDetector, blank: np.ndarray, step: int = 3):
    """Push ``blank`` in steps as a stream does; the first endpoint and the frame count of its step's end."""
    for start in range(0, len(blank), step):
        if (endpoint := detector.push(blank[start:start + step])) is not None:
            return endpoint, start + len(blank[start:start + step])
    return None, None


def test_the_defaults_are_sherpa_onnx_s():
    rules = EndpointRules()
    assert (rules.silence_without_speech, rules.silence_after_speech, rules.max_utterance) == (2.4, 1.2, 20.0)


def test_rule_2_trailing_silence_after_speech():
    detector = EndpointDetector(EndpointRules(), FRAME)
    endpoint, _ = first_endpoint(detector, frames((SILENT, 0.3), (SPEECH, 1.0), (SILENT, 0.6), (SPEECH, 0.5),
                                                  (SILENT, 3.0)))
    # The 0.6 s pause inside the speech does not end it; 1.2 s after the last speech frame does.
    assert endpoint.rule == 2
    assert endpoint.speech_start == 10 and endpoint.speech_end == 10 + 33 + 20 + 17
    assert endpoint.frame == endpoint.speech_end + 40


def test_rule_1_silence_without_speech_and_rule_3_maximum_length():
    detector = EndpointDetector(EndpointRules(), FRAME)
    endpoint, _ = first_endpoint(detector, frames((SILENT, 5.0)))
    assert (endpoint.rule, endpoint.frame, endpoint.speech_start, endpoint.speech_end) == (1, 80, None, None)
    detector = EndpointDetector(EndpointRules(max_utterance=3.0), FRAME)
    endpoint, _ = first_endpoint(detector, frames((SPEECH, 5.0)))
    assert (endpoint.rule, endpoint.frame, endpoint.speech_start) == (3, 100, 0)


def test_reset_starts_the_next_utterance_and_rules_change_in_flight():
    detector = EndpointDetector(EndpointRules(), FRAME)
    assert detector.push(frames((SPEECH, 0.3), (SILENT, 1.2))).rule == 2
    detector.reset()
    assert detector.frames == 0 and detector.speech_start is None and detector.trailing_silence == 0
    assert detector.push(frames((SPEECH, 0.3), (SILENT, 0.6))) is None
    detector.rules = EndpointRules(silence_after_speech=0.3)
    assert detector.push(frames((SILENT, 0.03))).rule == 2


def test_the_blank_threshold_decides_silence():
    hesitant = frames((SPEECH, 0.3), (0.8, 2.0))
    assert EndpointDetector(EndpointRules(), FRAME, blank_threshold=0.9).push(hesitant) is None
    assert EndpointDetector(EndpointRules(), FRAME, blank_threshold=0.7).push(hesitant).rule == 2
    assert DEFAULT_BLANK_THRESHOLD == 0.7  # chosen by bench/endpointing.py
    assert EndpointDetector(EndpointRules(), FRAME).push(frames((SPEECH, 0.3), (0.65, 2.0))) is None


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), 1e9])
def test_rule_lengths_are_checked(bad):
    with pytest.raises(ValueError, match="silence_after_speech"):
        EndpointRules(silence_after_speech=bad)


def test_blank_probabilities_are_the_softmax_of_index_0():
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0], [0.0, 0.0]])
    expected = torch.softmax(logits, 0)[0].numpy()
    assert np.allclose(blank_probabilities(logits), expected)
    assert np.allclose(blank_probabilities(torch.log_softmax(logits, 0)), expected)
    assert blank_probabilities(torch.zeros(3, 0)).shape == (0,)
    # A batch of streams at once: each row's.
    batch = torch.stack([logits, 2 * logits])
    assert np.allclose(blank_probabilities(batch), [expected, torch.softmax(2 * logits, 0)[0].numpy()])
    assert blank_probabilities(torch.zeros(4, 3, 0)).shape == (4, 0)
