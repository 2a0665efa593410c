"""The open-vocabulary keyword search, on posteriors built frame by frame (the recognizer is not needed): the
whole-clip search, and the same search fed in steps (a live stream), whose detections equal the whole clip's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_zoo.pipelines.asr import Recognizer
from model_zoo.pipelines.open_keywords import (DEFAULT_THRESHOLD, LOOKAHEAD_SECONDS, MAX_KEYWORD_CHARS, KeywordError,
                                               KeywordSearch, OpenKeyword, check_spelling, parse_spec, search)
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


# ---- the search in steps: final decisions, and a stream equals the whole clip --------------------------------------
LOOKAHEAD = math.ceil(LOOKAHEAD_SECONDS / FRAME)  # frames


def random_posteriors(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A made-up recognizer output: words of a small lexicon (the keywords below, parts and near misses of them)
    spelled with blanks, separators, held letters and pauses, each frame's token at a random probability with the
    blank or another letter as runner-up: many candidates, overlapping and half-heard, of every keyword."""
    lexicon = ["cat", "cat", "cats", "at", "the", "sat", "no", "no", "hey", "hey", "computer", "comp", "uter", "hello",
               "helo", "cacat"]
    text = []
    while len(text) < frames:
        word = lexicon[rng.integers(len(lexicon))]
        for letter in word:
            text += [letter] * int(rng.integers(1, 3)) + ["_"] * int(rng.integers(0, 3))
        text += [[" "], ["_"] * int(rng.integers(1, 4)) + [" "], ["_"] * int(rng.integers(0, 30))][rng.integers(3)]
    probs = np.full((frames, len(ASR_VOCAB)), 1e-3)
    for t, c in enumerate(text[:frames]):
        token = 0 if c == "_" else ASR_VOCAB.index(c)
        runner_up = 0 if rng.random() < 0.85 else int(rng.integers(1, len(ASR_VOCAB)))
        probs[t, token] += rng.uniform(0.3, 1.0)
        probs[t, runner_up] += rng.uniform(0.0, 0.4)
    return np.log(probs / probs.sum(axis=1, keepdims=True))


KEYWORDS = [OpenKeyword("cat", 0.2), OpenKeyword("at", 0.2), OpenKeyword("no no", 0.1),
            OpenKeyword("hey computer", 0.15, 0.05), OpenKeyword("hello", 0.1), OpenKeyword("computer", 0.2)]


def streamed(lp: np.ndarray, keywords, chunks: list[int], **options) -> tuple[list, list[int]]:
    """``lp (T, V)`` fed in steps of ``chunks`` frames -> every detection (sorted), and each one's frame count fed
    when it came out."""
    spotter, found, when, first = KeywordSearch(keywords, ASR_VOCAB, FRAME, **options), [], [], 0
    for size in chunks:
        step = spotter.feed(lp[first:first + size].T)  # (V, F), the recognizer's layout
        first += size
        found += step
        when += [first] * len(step)
    last = spotter.finish()
    return sorted(found + last, key=lambda d: (d.start, d.end, d.keyword)), when + [None] * len(last)


@pytest.mark.parametrize("seed", range(12))
def test_a_stream_in_random_steps_finds_exactly_what_the_whole_clip_search_finds(seed):
    rng = np.random.default_rng(seed)
    lp = random_posteriors(rng, int(rng.integers(200, 400)))
    whole = search(lp, KEYWORDS, ASR_VOCAB, FRAME)
    assert whole, "the made-up speech should hold some keywords"
    for _ in range(4):
        chunks = [int(n) for n in rng.integers(1, 40, size=len(lp))]
        found, when = streamed(lp, KEYWORDS, chunks)
        assert found == whole  # keywords, times and scores, exactly
        assert any(w is not None for w in when), "some detections are final before the end of the audio"
    assert streamed(lp, KEYWORDS, [1] * len(lp))[0] == whole  # frame by frame
    # Logits in float32, as the network gives them, are normalised frame by frame: the same either way.
    logits = torch.from_numpy(lp).float() + 2.0
    assert streamed(logits.numpy(), KEYWORDS, [7] * len(lp))[0] == search(logits, KEYWORDS, ASR_VOCAB, FRAME)


def test_a_detection_is_final_the_look_ahead_after_its_end_or_at_the_end_of_the_audio():
    lp = posteriors("__the_ __cat_ " + "_" * 40)  # "cat" ends at frame 11
    found, when = streamed(lp, [OpenKeyword("cat")], [1] * len(lp))
    assert [(d.keyword, round(d.start / FRAME), round(d.end / FRAME)) for d in found] == [("cat", 9, 12)]
    assert when == [12 + LOOKAHEAD]  # frame 11 + LOOKAHEAD fed: decided then, never earlier
    assert LOOKAHEAD * FRAME == pytest.approx(LOOKAHEAD_SECONDS, abs=FRAME)
    # Audio that ends sooner decides it at the end.
    short = posteriors("__the_ __cat_ ___")
    assert streamed(short, [OpenKeyword("cat")], [len(short)]) == (found, [None])


def test_a_pause_is_a_word_boundary_like_the_clips_edge():
    # No separator after the pause (the recognizer does not always emit one): a pause of the look-ahead is enough,
    # a shorter one is not ("cat___dog" is one word to the rule).
    pause = "_" * (LOOKAHEAD + 1)
    assert [f[:3] for f in find(f"_cat{pause}dog_", "cat", "dog")] == [("cat", 1, 4), ("dog", 5 + len(pause) - 1, 8 + len(pause) - 1)]
    assert find("_cat___dog_", "cat", "dog") == []


def test_what_is_decided_stays_decided():
    """Where deciding with the whole clip in view would differ: a path that overtakes an occurrence more than the
    look-ahead after it ends. "cat" with a weak t, then, far later, a sure t: the weak one was final long before the
    better path through the later t could overlap it, so it stands; that later path is refused."""
    gap = "_" * (LOOKAHEAD + 5)
    lp = posteriors(f"_c_a_t{gap}t_", f5=0.5)
    lp[5, 0] = math.log(0.4)  # the blank is a close runner-up at the weak t: a path may wait there for the later t
    weak_t = 0.5 / np.exp(lp[5]).sum()
    [(keyword, first, end, score)] = find(lp, "cat")
    assert (keyword, first, end) == ("cat", 1, 6) and score == pytest.approx((0.9 * 0.9 * weak_t) ** (1 / 3), abs=1e-4)
    # With a look-ahead long enough to see the later t, the better path wins instead.
    [later] = search(lp, [OpenKeyword("cat")], ASR_VOCAB, FRAME, lookahead=2.0)
    assert (round(later.start / FRAME), round(later.end / FRAME)) == (1, 6 + len(gap) + 1) and later.score > score


def test_a_long_stream_keeps_little_state():
    spotter = KeywordSearch([OpenKeyword("cat")], ASR_VOCAB, FRAME)
    said = posteriors("_cat_ _the_ ")
    found = []
    for _ in range(300):
        found += spotter.feed(said.T)
    found += spotter.finish()
    assert len(found) == 300 and [round(d.start / FRAME) for d in found[:2]] == [1, 1 + len(said)]
    assert len(spotter._taken[0]) <= 2 and len(spotter._pending[0]) == 0  # decided occurrences are let go


def test_no_keywords_and_no_frames():
    spotter = KeywordSearch([], ASR_VOCAB, FRAME)
    assert spotter.feed(posteriors("_cat_").T) == [] and spotter.finish() == [] and spotter.frames == 5
    spotter = KeywordSearch([OpenKeyword("cat")], ASR_VOCAB, FRAME)
    assert spotter.feed(np.zeros((len(ASR_VOCAB), 0))) == [] and spotter.finish() == []
    with pytest.raises(RuntimeError):
        spotter.feed(posteriors("_").T)
