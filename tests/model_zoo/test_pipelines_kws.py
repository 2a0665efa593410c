"""The keyword spotting rules shared by the service and the evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from model_zoo.pipelines.kws import (ClipWindows, DetectionRuns, LiveWindows, detected_keywords, hop_length,
                                      keyword_indices, scan, tail_start, window_starts)

LABELS = ["yes", "no", "_unknown_", "_silence_"]


@pytest.mark.parametrize("length,expected", [
    (8000, [0]),  # shorter than a window: one window, padded by the caller
    (16000, [0]),
    (24000, [0, 4000, 8000]),  # the last hop ends exactly at the clip's end
    (25000, [0, 4000, 8000, 9000]),  # hops stop short: one more window flush with the end
])
def test_window_starts_cover_the_clip(length: int, expected: list[int]) -> None:
    assert window_starts(length, 16000, 4000) == expected


def test_keyword_indices_never_include_unknown_or_silence() -> None:
    assert keyword_indices(LABELS) == [0, 1]
    assert keyword_indices(LABELS, {"no", "_unknown_"}) == [1]


def test_a_keyword_is_detected_only_as_the_top_class_at_or_above_the_threshold() -> None:
    probs = np.array([
        [0.70, 0.10, 0.10, 0.10],  # yes, sure
        [0.40, 0.10, 0.45, 0.05],  # _unknown_ on top: nothing, though yes passes 0.3
        [0.45, 0.30, 0.20, 0.05],  # yes on top but under 0.5
        [0.10, 0.60, 0.20, 0.10],  # no, but only yes is watched
    ])
    assert detected_keywords(probs, [0, 1], 0.5).tolist() == [0, -1, -1, 1]
    assert detected_keywords(probs, [0, 1], 0.3).tolist() == [0, -1, 0, 1]
    assert detected_keywords(probs, [0], 0.5).tolist() == [0, -1, -1, -1]


def test_runs_of_windows_make_one_detection_each() -> None:
    runs = DetectionRuns(LABELS, rate=10, window=10, threshold=0.5)
    yes, no, unknown = np.array([0.9, 0, 0.1, 0]), np.array([0, 0.8, 0.2, 0]), np.array([0.1, 0, 0.9, 0])
    out = []
    for start, probs in [(0, yes), (5, yes), (10, unknown), (15, no), (20, yes)]:
        out += runs.push(start, probs)
    out += runs.close()
    assert [(d.keyword, d.start, d.end) for d in out] == [("yes", 0.0, 1.5), ("no", 1.5, 2.5), ("yes", 2.0, 3.0)]
    assert out[0].score == 0.9


def test_scan_finds_a_keyword_where_the_classifier_hears_it() -> None:
    wave = np.zeros(30, np.float32)
    wave[12:18] = 1.0  # "yes" lives in samples 12-17

    def classify(windows: np.ndarray) -> np.ndarray:
        heard = windows.sum(axis=1) >= 6  # the whole word inside the window
        return np.where(heard[:, None], [[0.9, 0.0, 0.1, 0.0]], [[0.0, 0.0, 0.2, 0.8]])

    found = scan(classify, wave, LABELS, rate=10, hop_seconds=0.5)
    assert [(d.keyword, d.start, d.end) for d in found] == [("yes", 1.0, 2.0)]
    assert scan(classify, wave, LABELS, rate=10, hop_seconds=0.5, keywords=["no"]) == []


@pytest.mark.parametrize("length,last,expected", [
    (5, None, 0),  # shorter than a window: one window at 0, padded
    (10, 0, None),  # exactly one window
    (24, 10, 14),  # the hops stopped short of the end: one flush with it
    (20, 10, None),  # the last hop ends at the end
])
def test_the_tail_rule(length: int, last: int | None, expected: int | None) -> None:
    assert tail_start(length, 10, last) == expected


@pytest.mark.parametrize("length", [0, 1, 7, 16, 17, 23, 24, 40, 61])
@pytest.mark.parametrize("hop_seconds", [0.25, 0.3, 1.0, 1.7])
def test_a_stream_gets_the_windows_of_the_whole_clip(length: int, hop_seconds: float) -> None:
    """LiveWindows (a keyword stream) and ClipWindows (POST /keywords): the same starts and audio, however the
    stream is cut into chunks; only a stream that sent nothing has no window."""
    rate = 16
    wave = np.arange(1, length + 1, dtype=np.float32)
    clip = ClipWindows.of(wave, rate, hop_seconds)
    assert clip.starts == window_starts(length, rate, hop_length(hop_seconds, rate))
    rng = np.random.default_rng(length)
    live, got, position = LiveWindows(rate, hop_seconds), [], 0
    while position < length:
        size = int(rng.integers(1, 9))
        got += live.push(wave[position:position + size])
        position += size
    got += live.finish()
    if length == 0:
        assert got == [] and clip.starts == [0]
        return
    assert [start for start, _ in got] == clip.starts
    assert np.array_equal(np.stack([audio for _, audio in got]), clip.rows())


def test_the_ranking_is_for_clips_of_about_one_window() -> None:
    probs = np.array([[0.1, 0.6, 0.2, 0.1], [0.3, 0.4, 0.2, 0.1]])
    assert ClipWindows.of(np.zeros(15, np.float32), 10).ranking(probs, LABELS) == [
        ("no", 0.5), ("yes", 0.2), ("_unknown_", 0.2), ("_silence_", 0.1)]
    assert ClipWindows.of(np.zeros(16, np.float32), 10).ranking(probs, LABELS) is None
