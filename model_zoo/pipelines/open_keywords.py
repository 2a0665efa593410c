"""Open-vocabulary keyword search: keywords of the user's choosing, found in a CTC recognizer's posteriors.

The keyword classifier (:mod:`.kws`) knows 35 words. Any other word or phrase the recognizer can spell is searched
for here, in the frame log-probabilities ``(T, V)`` the recognizer computes anyway: no second network, no training.

**The search.** A keyword is a sequence of tokens of the recognizer's vocabulary (its characters; a space between
the words of a phrase). Its CTC graph is the usual extended label sequence: each letter, with a gap state between
consecutive letters that emits the blank (between two words of a phrase: the blank *or* the space token, so the
word separator is optional, as the recognizer does not always emit one). A path may stay in a state, step to the
next one, or skip a gap between two different letters; two equal letters in a row ("hello") need a gap frame
between them, the CTC rule. The Viterbi search runs over this graph with a **free start and a free end**: a path
may enter the first letter at any frame and leave the last one at any frame, so every segment of the clip is
tried in one pass over the frames (all keywords at once: their graphs are stacked into one state vector).

Each frame's cost is its *deficit*: the log-probability of the path's state minus the best log-probability of
that frame (0 where the path agrees with the recognizer's best guess). Within a fixed segment this is the
ordinary best CTC alignment (the frame maxima are a constant); across segments it does not favour short ones the
way raw log-probabilities would (a letter spread over several frames costs nothing more while the recognizer is
sure of it), so a path starts where its first letter's run starts. A path may not pass a frame where the
recognizer is more than ``1 / MIN_FRAME_RATIO`` times surer of another token than of the path's state
(:data:`MIN_FRAME_RATIO`): that frame emitted something else, so the keyword is not contiguous there (a blank
may not swallow another word's letters between the keyword's).

**The score** of a path is sherpa-onnx's keyword score: the mean over the keyword's letters of each letter's
best frame probability along the path, here the geometric mean (so one missing letter pulls it down hard), in
[0, 1]; blanks and word separators do not count, so they do not dilute it. A per-keyword ``boost`` (score units)
is added and the sum clipped to [0, 1]; a hit needs a boosted score of at least the keyword's ``threshold``
(:data:`DEFAULT_THRESHOLD` unless given).

**Occurrences.** Every end frame gives one candidate (its best path); the candidates of a keyword are taken best
score first (ties: the better path, then the later end, so a last letter lasting several frames ends with its
run), each one overlapping no occurrence taken before: a keyword said twice is found twice, and a detection is
never reported twice.

**Word boundaries.** A keyword is a whole word: "cat" is not found inside "concatenate". Read off the
recognizer's best path (the greedy tokens): from the frame where the keyword's first letter peaks, going back past
the rest of that frame's token run and any blank frames, the first token must be the word separator or there must
be none (the clip's start); likewise after the last letter's peak, to the clip's end. A vocabulary without a
space token has no word boundaries to check, and the rule is off.

A detection is :class:`model_zoo.pipelines.kws.Detection` (keyword, start and end in seconds, score), like the
classifier's: a path over frames ``s..e`` starts at ``s * frame_seconds`` and ends at ``(e + 1) * frame_seconds``
(the word times of :mod:`model_zoo.nets.ctc`). ``bench/open_keywords.py`` measures recall and false alarms per hour
on held-out real speech (``bench/README.md``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .kws import Detection

__all__ = ["BOOST_MARK", "DEFAULT_THRESHOLD", "MAX_BOOST", "MAX_KEYWORD_CHARS", "MAX_KEYWORDS", "MIN_FRAME_RATIO",
           "THRESHOLD_MARK", "WORD_SEPARATOR",
           "KeywordError", "OpenKeyword", "check_spelling", "parse_spec", "search"]

# ---- the rule's constants -----------------------------------------------------------------------------------------
# A hit needs a score (geometric mean of the letters' best probabilities) of at least this. Measured by
# bench/open_keywords.py on held-out real speech (484 Asterisk prompts, 24 keywords said in them, 23 never said;
# bench/README.md, "Open-vocabulary keywords") with the shipped recognizer: 0.3 is the knee. It finds 23.3% of the
# said keywords (more than searching the beam-search transcript, 21.0%) with 0.3 false alarms per keyword-hour for
# never-said keywords and 3.4 for said ones elsewhere; below it false alarms climb fast for little recall (0.2:
# 25.2%, 5.8 per keyword-hour), above it recall falls faster than false alarms (0.5: 15.8%, 1.0). The recognizer
# is weak on real speech, so re-measure when it is retrained: one surer of its letters may want a higher one.
DEFAULT_THRESHOLD = 0.3
# A path may not pass a frame where another token is more than 1 / MIN_FRAME_RATIO (20) times likelier than its
# own state: the recognizer heard something else there. Looser lets a blank swallow other letters between the
# keyword's (so letters of several words make up a keyword); stricter loses keywords the recognizer half-misspells.
# Measured with the threshold (bench/README.md): at equal false alarms 0.02, 0.05 and 0.1 find about as many
# keywords (0.02 at 0.4: 21.5%; 0.05 at 0.3: 23.3%; 0.1 at 0.3: 19.3%); 0.05 is the middle.
MIN_FRAME_RATIO = 0.05
# Request limits: the search costs (total letters of all keywords) state updates per frame of audio, and a word
# longer than 64 characters is no keyword.
MAX_KEYWORD_CHARS = 64
MAX_KEYWORDS = 32
# The most a boost may add or take away (score units): beyond it the threshold would mean nothing.
MAX_BOOST = 1.0
# The token between words, in the recognizer's vocabulary (model_zoo.vocab.ASR_VOCAB).
WORD_SEPARATOR = " "
# Marks of the per-keyword settings in a keyword's text, as in sherpa-onnx's keyword files: "#" the threshold,
# ":" the boost ("hey computer #0.4 :0.1").
THRESHOLD_MARK, BOOST_MARK = "#", ":"

_SPACES = re.compile(r"\s+")
_SETTING = re.compile(r"([#:])\s*([^\s#:]*)")


class KeywordError(ValueError):
    """A keyword that cannot be searched for (empty, too long, spelled outside the vocabulary, bad settings)."""


@dataclass(frozen=True)
class OpenKeyword:
    """A keyword or phrase (lower case, single spaces between words) with its threshold and boost."""

    keyword: str
    threshold: float = DEFAULT_THRESHOLD
    boost: float = 0.0


def parse_spec(spec: str) -> tuple[str, float | None, float | None]:
    """A keyword as a caller writes it -> ``(text, threshold or None, boost or None)``.

    ``"Hey  Computer #0.4 :0.1"`` -> ``("hey computer", 0.4, 0.1)``: the text is lower-cased with its spaces
    squeezed; ``#`` gives a threshold in [0, 1], ``:`` a boost in [-1, 1] (sherpa-onnx's marks). Raises
    :class:`KeywordError` for an empty or over-long text and for a malformed or repeated setting."""
    cut = min((i for i in (spec.find(THRESHOLD_MARK), spec.find(BOOST_MARK)) if i >= 0), default=len(spec))
    text = _SPACES.sub(" ", spec[:cut]).strip().lower()
    if not text:
        raise KeywordError("empty keyword")
    if len(text) > MAX_KEYWORD_CHARS:
        raise KeywordError(f"keyword longer than {MAX_KEYWORD_CHARS} characters")
    settings: dict[str, float] = {}
    rest = spec[cut:]
    if _SETTING.sub("", rest).strip():
        raise KeywordError(f"after a keyword only {THRESHOLD_MARK}threshold and {BOOST_MARK}boost may follow")
    for mark, value in _SETTING.findall(rest):
        what = "threshold" if mark == THRESHOLD_MARK else "boost"
        if mark in settings:
            raise KeywordError(f"the {what} ({mark}) is given twice")
        try:
            number = float(value)
        except ValueError:
            raise KeywordError(f"the {what} ({mark}) must be a number") from None
        low, high = (0.0, 1.0) if mark == THRESHOLD_MARK else (-MAX_BOOST, MAX_BOOST)
        if not (math.isfinite(number) and low <= number <= high):
            raise KeywordError(f"the {what} ({mark}) must be between {low:g} and {high:g}")
        settings[mark] = number
    return text, settings.get(THRESHOLD_MARK), settings.get(BOOST_MARK)


def check_spelling(text: str, vocab: Sequence[str]) -> None:
    """Raise :class:`KeywordError` unless every character of ``text`` is a token of ``vocab`` (its blank, the
    first token, excepted)."""
    spellable = set(vocab[1:])
    outside = sorted(set(text) - spellable)
    if outside:
        raise KeywordError(f"characters the recognizer cannot spell: {''.join(outside)!r} "
                           f"(it spells {''.join(sorted(c for c in spellable if len(c) == 1))!r})")


@dataclass(frozen=True)
class _Graph:
    """All keywords' CTC graphs stacked into one state vector of ``S`` states (arrays ``(S,)``)."""

    column: np.ndarray  # int: the emission column of each state (a token; ``V``: blank or space)
    letter: np.ndarray  # bool: a letter state (the others are gaps)
    first: np.ndarray  # bool: a keyword's first letter (where a path may start)
    has_prev: np.ndarray  # bool: the state before is the same keyword's
    skip: np.ndarray  # bool: the letter two states back may jump here over the gap (different letters)
    last: np.ndarray  # int (K,): each keyword's last letter state
    letters: np.ndarray  # int (K,): letters per keyword (the score's denominator)

    @classmethod
    def of(cls, keywords: Sequence[OpenKeyword], vocab: Sequence[str]) -> _Graph:
        index = {token: i for i, token in enumerate(vocab)}
        separator = len(vocab)  # the extra column: log(P(blank) + P(space))
        column, letter, first, has_prev, skip, last, letters = [], [], [], [], [], [], []
        for keyword in keywords:
            check_spelling(keyword.keyword, vocab)
            tokens = [index[c] for c in keyword.keyword.replace(WORD_SEPARATOR, "")]
            gaps = [False]  # gaps[i]: a word separator precedes letter i
            for previous, c in zip(keyword.keyword, keyword.keyword[1:]):
                if c != WORD_SEPARATOR:
                    gaps.append(previous == WORD_SEPARATOR)
            for i, token in enumerate(tokens):
                if i:
                    column.append(separator if gaps[i] else 0)
                    letter.append(False), first.append(False), has_prev.append(True), skip.append(False)
                column.append(token)
                letter.append(True), first.append(i == 0), has_prev.append(i > 0)
                skip.append(i > 0 and tokens[i - 1] != token)
            last.append(len(column) - 1)
            letters.append(len(tokens))
        return cls(np.array(column, np.int64), np.array(letter), np.array(first), np.array(has_prev),
                   np.array(skip), np.array(last, np.int64), np.array(letters, np.int64))


def _log_posteriors(log_probs: Tensor | np.ndarray) -> np.ndarray:
    """``(T, V)`` log-probabilities or logits -> ``(T, V)`` float64 log-probabilities (normalised here)."""
    return torch.as_tensor(log_probs).detach().double().log_softmax(dim=-1).cpu().numpy()


def _shift(values: np.ndarray, by: int, fill) -> np.ndarray:
    """``values`` moved ``by`` states to the right: ``out[s] = values[s - by]``."""
    out = np.empty_like(values)
    out[:by] = fill
    out[by:] = values[:-by]
    return out


def _bounded(greedy: np.ndarray, frame: int, step: int, blank: int, space: int) -> bool:
    """The word-boundary rule on one side (``step`` -1: before, +1: after) of ``frame``, a letter's peak."""
    token, t, end = greedy[frame], frame + step, len(greedy)
    if token == space:
        return True
    while 0 <= t < end and greedy[t] == token:  # the rest of the peak's own token run
        t += step
    while 0 <= t < end and greedy[t] == blank:
        t += step
    return not 0 <= t < end or greedy[t] == space


def search(log_probs: Tensor | np.ndarray, keywords: Sequence[OpenKeyword], vocab: Sequence[str],
           frame_seconds: float, *, offset: float = 0.0, min_frame_ratio: float = MIN_FRAME_RATIO,
           word_boundaries: bool = True) -> list[Detection]:
    """The occurrences of ``keywords`` in one clip, sorted by start (see the module docstring).

    ``log_probs (T, V)``: the recognizer's frame log-probabilities (logits are normalised here) over ``vocab``,
    the blank first; ``frame_seconds``: seconds per frame; ``offset``: seconds added to every time.
    ``min_frame_ratio`` and ``word_boundaries`` (the rule on or off) are for measurements
    (``bench/open_keywords.py``). Raises :class:`KeywordError` for a keyword ``vocab`` cannot spell."""
    lp = _log_posteriors(log_probs)
    frames = lp.shape[0]
    if not keywords or frames == 0:
        return []
    blank = 0
    space = vocab.index(WORD_SEPARATOR) if WORD_SEPARATOR in vocab else None
    bounded = word_boundaries and space is not None
    graph = _Graph.of(keywords, vocab)
    gap = np.logaddexp(lp[:, blank], lp[:, space]) if space is not None else lp[:, blank]
    columns = np.concatenate([lp, gap[:, None]], axis=1)  # (T, V + 1): each token, then the separator gap
    frame_best = lp.max(axis=1)  # (T,)
    floor = math.log(min_frame_ratio)

    states = len(graph.column)
    here = np.arange(states)
    back = np.array([0, 1, 2, 0])  # stay, from the state before, skip over a gap, fresh start
    can = np.stack([np.ones(states, bool), graph.has_prev, graph.skip, graph.first])
    cost = np.full(states, -np.inf)  # best path's summed deficit, ending in each state at this frame
    start = np.zeros(states, np.int64)  # its first frame
    done = np.zeros(states)  # the summed log of the best probabilities of the letters it has left behind
    best = np.full(states, -np.inf)  # the current letter's best log-probability so far
    peak = np.zeros(states, np.int64)  # the frame of it
    first_peak = np.zeros(states, np.int64)  # the first letter's peak (once left)
    thresholds = np.array([k.threshold for k in keywords])
    boosts = np.array([k.boost for k in keywords])
    found: list[tuple[int, int, int, float, float, int, int]] = []  # keyword, start, end, score, cost, peaks
    for t in range(frames):
        options = np.where(can, np.stack([cost, _shift(cost, 1, -np.inf), _shift(cost, 2, -np.inf),
                                          np.zeros(states)]), -np.inf)
        choice = options.argmax(axis=0)  # ties: staying wins (a path starts as early as it costs nothing)
        fresh = choice == 3
        source = here - back[choice]
        left = graph.letter[source] & (source != here)  # the path leaves a letter behind this frame
        entered = graph.letter & (left | fresh | ~graph.letter[source])
        raw = columns[t, graph.column]  # (S,) log P(state) at this frame
        deficit = np.minimum(raw - frame_best[t], 0.0)
        deficit[deficit < floor] = -np.inf
        better = graph.letter & ~entered & (raw > best[source])
        new_done = np.where(fresh, 0.0, done[source] + np.where(left, best[source], 0.0))
        new_first_peak = np.where(left & graph.first[source], peak[source], first_peak[source])
        best = np.where(entered | better, raw, best[source])
        peak = np.where(entered | better, t, peak[source])
        first_peak = np.where(fresh, t, new_first_peak)
        start = np.where(fresh, t, start[source])
        done = new_done
        cost = options[choice, here] + deficit
        ends = cost[graph.last]
        if not np.isfinite(ends).any():
            continue
        scores = np.exp((done[graph.last] + best[graph.last]) / graph.letters)
        boosted = np.round(np.clip(scores + boosts, 0.0, 1.0), 4)  # as reported: 0.3 ** 3 ** (1/3) passes 0.3
        for k in np.flatnonzero(np.isfinite(ends) & (boosted >= thresholds)):
            s = graph.last[k]
            left_peak = peak[s] if graph.first[s] else first_peak[s]
            found.append((int(k), int(start[s]), t, float(boosted[k]), float(ends[k]), int(left_peak), int(peak[s])))

    greedy = lp.argmax(axis=1)
    by_keyword: dict[int, list[tuple[int, int, int, float, float, int, int]]] = {}
    for candidate in found:
        by_keyword.setdefault(candidate[0], []).append(candidate)
    detections: list[Detection] = []
    for k, candidates in by_keyword.items():
        keyword, taken = keywords[k], []  # taken: (first, last) frames of the occurrences so far
        for _, first, last, score, _, left_peak, right_peak in sorted(candidates, key=lambda c: (-c[3], -c[4], -c[2])):
            if any(first <= b and a <= last for a, b in taken):
                continue
            if bounded and not (_bounded(greedy, left_peak, -1, blank, space)
                                          and _bounded(greedy, right_peak, 1, blank, space)):
                continue
            taken.append((first, last))
            detections.append(Detection(keyword.keyword, round(offset + first * frame_seconds, 3),
                                        round(offset + (last + 1) * frame_seconds, 3), round(score, 4)))
    return sorted(detections, key=lambda d: (d.start, d.end, d.keyword))
