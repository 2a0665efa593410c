"""The open-vocabulary keyword search, on posteriors built frame by frame (the recognizer is not needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_zoo.pipelines.asr import Recognizer
from model_zoo.pipelines.open_keywords import (DEFAULT_THRESHOLD, MAX_KEYWORD_CHARS, KeywordError, OpenKeyword,
                                               check_spelling, parse_spec, search)
from model_zoo.vocab import ASR_VOCAB

FRAME = 0.03
SURE = 0.9


def posteriors(frames: str, sure: float = SURE, **weak: float) -> np.ndarray:
    """Log-probabilities ``(T, V)``: one frame per character of ``frames`` (``_`` the blank, `` `` the space), that
    token at probability ``sure`` (or ``weak[name]`` for the frame ``name`` = ``"f<index>"``), the rest spread."""
    probs = np.empty((len(frames), len(ASR_VOCAB)))
    for t, c in enumerate(frames):
        p = weak.get(f"f{t}", sure)
        probs[t] = (1 - p) / (len(ASR_VOCAB) - 1)
        probs[t, 0 if c == "_" else ASR_VOCAB.index(c)] = p
    return np.log(probs)


def find(frames: str | np.ndarray, *keywords: str | OpenKeyword, vocab=ASR_VOCAB) -> list[tuple[str, int, int, float]]:
    """``(keyword, first frame, frame after the last, score)`` of each detection."""
    lp = posteriors(frames) if isinstance(frames, str) else frames
    found = search(lp, [k if isinstance(k, OpenKeyword) else OpenKeyword(k) for k in keywords], vocab, FRAME)
    return [(d.keyword, round(d.start / FRAME), round(d.end / FRAME), d.score) for d in found]


def test_a_keyword_is_found_at_its_frames_and_nowhere_else():
    assert find("__the_ __cat_ _sat___", "cat") == [("cat", 9, 12, SURE)]
    assert find("__the_ __cat_ _sat___", "sat") == [("sat", 15, 18, SURE)]
    # Times are frames times the frame length, plus an offset.
    found = search(posteriors("__the_ __cat_"), [OpenKeyword("cat")], ASR_VOCAB, FRAME, offset=2.0)
    assert (found[0].start, found[0].end) == (pytest.approx(2.0 + 9 * FRAME), pytest.approx(2.0 + 12 * FRAME))


def test_an_absent_keyword_is_not_found():
    for absent in ("dog", "zebra", "cats", "the sat", "at"):
        assert find("__the_ __cat_ _sat___", absent) == [], absent
    assert find("_" * 40, "cat") == []


def test_a_repeated_letter_needs_a_blank_between():
    assert find("__h_e_l_l_o__", "hello") == [("hello", 2, 11, SURE)]
    # One run of l's is one l: the recognizer said "helo".
    assert find("__h_e_lll_o__", "hello") == []
    assert find("__h_e_lll_o__", "helo") == [("helo", 2, 11, SURE)]
    # Different letters may follow each other with no blank; a letter may last several frames.
    assert find("catt", "cat") == [("cat", 0, 4, SURE)]


def test_start_and_end_are_free_from_the_clip_edge_to_the_clip_edge():
    assert find("cat", "cat") == [("cat", 0, 3, SURE)]  # the whole clip, no blank around it
    assert find("cat___ ___dog", "cat", "dog") == [("cat", 0, 3, SURE), ("dog", 10, 13, SURE)]
    assert find("___ __c____a___t__ ___", "cat") == [("cat", 6, 16, SURE)]  # a slow keyword: long blanks inside


def test_a_keyword_said_twice_is_found_twice():
    assert find("_cat_ _the_ _cat_", "cat") == [("cat", 1, 4, SURE), ("cat", 13, 16, SURE)]
    # Back to back, separated by a space only.
    assert find("cat cat", "cat") == [("cat", 0, 3, SURE), ("cat", 4, 7, SURE)]
    # Where the recognizer fades out of a letter slowly, paths ending a frame or two later score the same; each
    # occurrence is still reported once, ending with its letter.
    lp = posteriors("_cat___ _cat___")
    for t in (4, 5, 12, 13):
        lp[t, ASR_VOCAB.index("t")], lp[t, 0] = math.log(0.3), math.log(0.6)
    assert find(lp, "cat") == [("cat", 1, 4, SURE), ("cat", 9, 12, SURE)]


def test_a_keyword_is_a_whole_word():
    assert find("_con_cat_e_nate_", "cat") == []  # inside a word
    assert find("_cat_s_ _", "cat") == []  # its start is a word's start, but the word goes on
    assert find("_bob_cat_", "cat") == []  # its end is a word's end, but the word started before
    assert find("_cat_cat_", "cat") == []  # "catcat" is one word
    assert find("_bob_ _cat_s_ _cat_", "cat") == [("cat", 15, 18, SURE)]  # the whole word, later in the clip
    # A vocabulary without a word separator has no word boundaries: the rule is off.
    no_space = tuple(t for t in ASR_VOCAB if t != " ")
    lp = np.delete(posteriors("_con_cat_e_nate_"), ASR_VOCAB.index(" "), axis=1)
    assert [f[:3] for f in find(lp, "cat", vocab=no_space)] == [("cat", 5, 8)]


def test_a_phrase_may_or_may_not_have_the_space_between_its_words():
    assert find("_hey_ _com_puter_", "hey computer") == [("hey computer", 1, 16, SURE)]
    assert find("_hey_com_puter_", "hey computer") == [("hey computer", 1, 14, SURE)]
    # Equal letters across the separator still need a frame between them ("bus stop": s s).
    assert find("_bus_stop_", "bus stop") == [("bus stop", 1, 9, SURE)]
    assert find("_busstop_", "bus stop") == []


def test_another_letter_the_recognizer_is_sure_of_breaks_the_keyword():
    # A blank may not swallow a confident "x" between the keyword's letters ...
    assert find("_c_x_a_t_", "cat") == []
    # ... but a frame where the recognizer only hesitates between a letter and another does not break it.
    lp = posteriors("_c_x_a_t_")
    lp[3] = np.log(np.full(len(ASR_VOCAB), 0.01))
    lp[3, ASR_VOCAB.index("x")], lp[3, 0] = math.log(0.5), math.log(0.5 - 0.01 * (len(ASR_VOCAB) - 2))
    assert [f[0] for f in find(lp, "cat")] == ["cat"]


def test_the_score_is_the_geometric_mean_of_each_letters_best_frame():
    # c peaks at 0.6 (its other frame 0.3), a at 0.9, t at 0.5; the blanks between count for nothing.
    lp = posteriors("_cc_____a_____t_", f1=0.3, f2=0.6, f15=0.9, f14=0.5)
    [(_, first, end, score)] = find(lp, "cat")
    assert (first, end) == (1, 15)
    assert score == pytest.approx((0.6 * 0.9 * 0.5) ** (1 / 3), abs=1e-4)
    # Longer blanks inside do not dilute it.
    assert find(posteriors("_c" + "_" * 30 + "a_t_"), "cat")[0][3] == pytest.approx(SURE, abs=1e-4)


def test_threshold_per_keyword():
    lp = posteriors("_d_o_g_", f1=0.2, f3=0.2, f5=0.2)  # a weakly heard "dog": score 0.2
    assert find(lp, "dog") == []  # under the default threshold
    assert DEFAULT_THRESHOLD > 0.2
    assert [f[3] for f in find(lp, OpenKeyword("dog", threshold=0.2))] == [pytest.approx(0.2, abs=1e-4)]
    assert find(lp, OpenKeyword("dog", threshold=0.21)) == []
    assert find(posteriors("_d_o_g_", f1=0.6, f3=0.6, f5=0.6), "dog")[0][3] == pytest.approx(0.6, abs=1e-4)


def test_boost_is_added_to_the_score_and_clipped():
    lp = posteriors("_d_o_g_", f1=0.2, f3=0.2, f5=0.2)
    [(_, _, _, score)] = find(lp, OpenKeyword("dog", threshold=0.5, boost=0.35))
    assert score == pytest.approx(0.55, abs=1e-4)
    assert find(lp, OpenKeyword("dog", threshold=0.5, boost=0.25)) == []
    assert find("_dog_", OpenKeyword("dog", boost=0.5))[0][3] == 1.0  # clipped to 1
    assert find("_dog_", OpenKeyword("dog", boost=-0.7)) == []  # a negative boost makes a keyword harder


def test_keywords_searched_together_are_found_as_each_alone():
    frames = "_the_ _cat_ _sat_ _on_ _the_ _mat_"
    alone = sorted(d for k in ("the", "cat", "mat", "dog", "on the") for d in find(frames, k))
    assert find(frames, "the", "cat", "mat", "dog", "on the") == sorted(alone, key=lambda d: (d[1], d[2], d[0]))
    assert len(alone) == 5


def test_logits_or_log_probabilities_give_the_same_detections():
    lp = posteriors("_the_ _cat_")
    logits = torch.from_numpy(lp).float() * 1.0 + 3.0  # a constant per frame: the same distribution
    assert find(lp, "cat") == find(logits.numpy(), "cat")


def test_the_recognizer_searches_its_own_logits():
    class Frames(torch.nn.Module):
        frame_seconds = FRAME

    recognizer = Recognizer(Frames())
    logits = torch.from_numpy(posteriors("_the_ _cat_")).T  # (vocab, frames), as the network gives them
    [hit] = recognizer.spot(logits, [OpenKeyword("cat")], offset=1.0)
    assert (hit.keyword, hit.start, hit.end) == ("cat", pytest.approx(1.0 + 7 * FRAME), pytest.approx(1.0 + 10 * FRAME))


def test_a_keyword_as_a_caller_writes_it():
    assert parse_spec("Hey  Computer") == ("hey computer", None, None)
    assert parse_spec(" hey computer #0.4 :0.1 ") == ("hey computer", 0.4, 0.1)
    assert parse_spec("marvin:-0.2") == ("marvin", None, -0.2)
    assert parse_spec("don't #1") == ("don't", 1.0, None)
    for bad in ("", "   ", "#0.4", "x" * (MAX_KEYWORD_CHARS + 1), "cat #", "cat #high", "cat #1.5", "cat :2",
                "cat #0.3 #0.4", "cat #nan", "cat #0.4 junk"):
        with pytest.raises(KeywordError):
            parse_spec(bad)
    check_spelling("don't stop", ASR_VOCAB)
    for bad in ("k9", "café", "<blank>", "a-b"):
        with pytest.raises(KeywordError):
            check_spelling(bad, ASR_VOCAB)
    with pytest.raises(KeywordError):
        search(posteriors("_"), [OpenKeyword("k9")], ASR_VOCAB, FRAME)
