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
the rest of that frame's token run and any blank frames, the first token must be the word separator, or there must
be none within :data:`LOOKAHEAD_SECONDS` of the peak (the clip's start, or a pause: the recognizer does not always
emit a separator after a silence); likewise after the last letter's peak. A vocabulary without a space token has
no word boundaries to check, and the rule is off.

**Final decisions, and streams** (:class:`KeywordSearch`). The search runs frame by frame, so a stream can be
searched as it arrives: feed each step's frames, get the detections that became final. The rule that makes a
detection final is written once, here: *a candidate is decided* :data:`LOOKAHEAD_SECONDS` *after its end frame
(or at the end of the audio, if that comes first), from the frames up to then, as if the audio ended there.* Its
word-boundary check after the peak has seen all it may look at by then (the look-ahead is the boundary rule's
reach); it is taken or not as the occurrence rule above would decide on the candidates known by then, those
already decided kept as they were (a taken one blocks what overlaps it; a refused one blocks nothing), and a later
candidate's boundary check still under way counts as passed, as at the clip's end. Nothing decided is ever
revised. :func:`search`, the whole clip, is this same search fed once and finished, so a stream's detections equal
the whole clip's *exactly*, however the frames are cut into steps (tested for random chunkings). Without the
look-ahead no rule could be both exact and prompt: a path may start at any frame and wait in a blank for ever (a
phrase's first word said, then silence), so with unbounded look-ahead a candidate could be overtaken by a better
overlapping one arbitrarily late. What the bound changes against deciding with the whole clip in view, precisely:
a candidate that a better overlapping one would have displaced, where that one ends more than the look-ahead later
(the first stands, the later is refused), or ends sooner but fails its boundary check only after the first was
refused for it (neither is reported); and keywords next to a pause of the look-ahead, which the pause now
word-bounds. On the real-speech benchmark the detections are the same as with unbounded look-ahead, for all 47
keywords (``bench/README.md``). A stream's latency is the look-ahead: a detection comes ``LOOKAHEAD_SECONDS``
after the keyword's last frame (sooner when the audio ends), plus the recognizer's step.

A detection is :class:`model_zoo.pipelines.kws.Detection` (keyword, start and end in seconds, score), like the
classifier's: a path over frames ``s..e`` starts at ``s * frame_seconds`` and ends at ``(e + 1) * frame_seconds``
(the word times of :mod:`model_zoo.nets.ctc`). ``bench/open_keywords.py`` measures recall and false alarms per hour
on held-out real speech (``bench/README.md``).

One module of about 470 lines, half of it this explanation, on purpose: the graph, the score, the occurrence
rule, the word boundaries and the final decisions are one search, and each rule only makes sense beside the others.
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

__all__ = ["BOOST_MARK", "DEFAULT_THRESHOLD", "LOOKAHEAD_SECONDS", "MAX_BOOST", "MAX_KEYWORD_CHARS", "MAX_KEYWORDS",
           "MIN_FRAME_RATIO", "THRESHOLD_MARK", "WORD_SEPARATOR",
           "KeywordError", "KeywordSearch", "OpenKeyword", "check_spelling", "parse_spec", "search"]

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
# How long after a candidate's end it is decided, and how far the word-boundary rule looks from a peak (module
# docstring, "Final decisions"): the latency of a live stream's detections. Long enough for the fade of a last
# letter (candidates a frame or two later that score as well), the separator after a word (a few frames) and a
# pause that ends a sentence with no separator; short enough for a wake word. Measured on the real-speech benchmark
# (bench/README.md, "Open-vocabulary keywords"): 0.5 s gives the detections of deciding with the whole clip in view.
LOOKAHEAD_SECONDS = 0.5
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
    """``(T, V)`` log-probabilities or logits -> ``(T, V)`` float64 log-probabilities (normalised here, frame by
    frame: a frame's values do not depend on the frames around it, so steps and whole clips agree)."""
    return torch.as_tensor(log_probs).detach().double().contiguous().log_softmax(dim=-1).cpu().numpy()


def _shift(values: np.ndarray, by: int, fill) -> np.ndarray:
    """``values`` moved ``by`` states to the right: ``out[s] = values[s - by]``."""
    out = np.empty_like(values)
    out[:by] = fill
    out[by:] = values[:-by]
    return out


# The word-boundary check after a peak, as it reads the greedy tokens that follow: still in the peak's own token
# run, past it in blank frames, or decided (the separator or nothing within reach: a boundary; another token: none).
_RUN, _BLANKS, _BOUNDED, _UNBOUNDED = 0, 1, 2, 3
_OPEN = (_RUN, _BLANKS)


def _scan(states: np.ndarray, tokens: np.ndarray, peaks: np.ndarray, frame: int, greedy: int, blank: int, space: int,
          reach: int) -> np.ndarray:
    """Boundary checks after peaks at frames ``peaks`` (greedy ``tokens`` there), in ``states``, moved on by the
    greedy token of ``frame``. A check looks at ``reach`` frames after its peak at most: past them it is a
    boundary (a pause)."""
    still = (states == _RUN) | (states == _BLANKS)
    if greedy == blank:
        moved = np.where((states == _RUN) & (tokens != blank), _BLANKS, states)
    else:
        decided = _BOUNDED if greedy == space else _UNBOUNDED
        moved = np.where(still & ~((states == _RUN) & (tokens == greedy)), decided, states)
    return np.where(still & (frame - peaks > reach), _BOUNDED, moved)


@dataclass
class _Candidate:
    """A keyword's best path ending at frame ``end``: not yet decided (module docstring, "Final decisions")."""

    start: int
    end: int
    score: float  # boosted and rounded, as reported
    cost: float  # the path's summed deficit (ties of the score: the better path first)
    peak: int  # the last letter's peak, where the word-boundary check after the keyword starts
    token: int  # the greedy token at that peak
    state: int  # the check's state (_RUN, _BLANKS, _BOUNDED; _UNBOUNDED candidates are dropped)

    @property
    def rank(self) -> tuple[float, float, int]:
        return -self.score, -self.cost, -self.end

    def overlaps(self, first: int, last: int) -> bool:
        return self.start <= last and first <= self.end


def _in_order(detections: list[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: (d.start, d.end, d.keyword))


class KeywordSearch:
    """The search of the module docstring over audio that arrives in steps: :meth:`feed` each step's frames,
    get the detections that became final; :meth:`finish` at the end of the audio decides the rest.

    ``frame_seconds``: seconds per frame; ``offset``: seconds added to every time (where frame 0 is);
    ``min_frame_ratio``, ``word_boundaries`` (the rule on or off) and ``lookahead`` (seconds) are for measurements
    (``bench/open_keywords.py``). All keywords are searched at once: their graphs are stacked into one state
    vector. Raises :class:`KeywordError` for a keyword ``vocab`` cannot spell.
    """

    def __init__(self, keywords: Sequence[OpenKeyword], vocab: Sequence[str], frame_seconds: float, *,
                 offset: float = 0.0, min_frame_ratio: float = MIN_FRAME_RATIO, word_boundaries: bool = True,
                 lookahead: float = LOOKAHEAD_SECONDS) -> None:
        self.keywords, self.vocab = tuple(keywords), tuple(vocab)
        self.frame_seconds, self.offset = float(frame_seconds), float(offset)
        self.lookahead = max(1, math.ceil(lookahead / self.frame_seconds - 1e-9))  # in frames
        self.graph = graph = _Graph.of(self.keywords, self.vocab)
        self.blank = 0
        self.space = self.vocab.index(WORD_SEPARATOR) if WORD_SEPARATOR in self.vocab else -1
        self.bounded = word_boundaries and self.space >= 0
        self.floor = math.log(min_frame_ratio)
        self.frames = 0  # frames fed so far: the index of the next one
        self.finished = False
        states = len(graph.column)
        self._here = np.arange(states)
        self._back = np.array([0, 1, 2, 0])  # stay, from the state before, skip over a gap, fresh start
        self._can = np.stack([np.ones(states, bool), graph.has_prev, graph.skip, graph.first])
        self._owner = np.repeat(np.arange(len(self.keywords)), np.diff(np.concatenate([[-1], graph.last])))
        self._thresholds = np.array([k.threshold for k in self.keywords])
        self._boosts = np.array([k.boost for k in self.keywords])
        # Per state, the best path ending there at the last frame:
        self._cost = np.full(states, -np.inf)  # its summed deficit
        self._start = np.zeros(states, np.int64)  # its first frame
        self._done = np.zeros(states)  # the summed log of the best probabilities of the letters it has left behind
        self._best = np.full(states, -np.inf)  # the current letter's best log-probability so far
        self._peak = np.zeros(states, np.int64)  # the frame of it
        self._peak_bounded = np.ones(states, bool)  # the boundary check before that peak (passed or not)
        self._first_bounded = np.ones(states, bool)  # ... before the first letter's peak, once left
        self._after_token = np.zeros(states, np.int64)  # the check after the peak: the greedy token at the peak
        self._after = np.full(states, _BOUNDED, np.int64)  # ... and its state
        # The greedy tokens, as far as the check before a peak needs them: the previous frame's token, the last
        # token other than the blank (token, frame), and the one before the current run of equal tokens.
        self._previous = -1
        self._last_token: tuple[int, int] | None = None
        self._before_run: tuple[int, int] | None = None
        self._pending: list[list[_Candidate]] = [[] for _ in self.keywords]
        self._taken: list[list[tuple[int, int]]] = [[] for _ in self.keywords]  # (first, last) frames, decided

    # ---- input ------------------------------------------------------------------------------------------------
    def feed(self, log_probs: Tensor | np.ndarray) -> list[Detection]:
        """The next frames ``(V, F)`` (log-probabilities or logits over ``vocab``, the recognizer's layout) ->
        the detections that became final with them, sorted by start."""
        if self.finished:
            raise RuntimeError("feed after finish")
        lp = _log_posteriors(torch.as_tensor(log_probs).T)
        if not self.keywords:
            self.frames += lp.shape[0]
            return []
        blank, space = self.blank, self.space
        gap = np.logaddexp(lp[:, blank], lp[:, space]) if space >= 0 else lp[:, blank]
        columns = np.concatenate([lp, gap[:, None]], axis=1)  # (F, V + 1): each token, then the separator gap
        frame_best = lp.max(axis=1)
        greedy = lp.argmax(axis=1)
        found: list[Detection] = []
        for i in range(lp.shape[0]):
            t, token = self.frames, int(greedy[i])
            self.frames += 1
            self._follow(t, token)
            self._step(t, columns[i], frame_best[i], token, self._bounded_before(t, token))
            found += self._decide(t - self.lookahead)
        return _in_order(found)

    def finish(self) -> list[Detection]:
        """The end of the audio: every candidate still undecided is decided now (the checks still under way
        pass, at the clip's end). The search is over; returns its last detections, sorted by start."""
        self.finished = True
        return _in_order(self._decide(None))

    # ---- one frame --------------------------------------------------------------------------------------------
    def _bounded_before(self, t: int, token: int) -> bool:
        """The word-boundary check before a peak at frame ``t`` (greedy ``token``), from the tokens so far."""
        if token != self._previous:  # a run starts here: remember the token before it
            self._before_run, self._previous = self._last_token, token
        before = self._before_run
        if token != self.blank:
            self._last_token = (token, t)
        if not self.bounded:
            return True
        return (token == self.space or before is None or before[0] == self.space
                or t - before[1] > self.lookahead)

    def _follow(self, t: int, token: int) -> None:
        """The undecided candidates' boundary checks after their peaks, moved on by frame ``t``."""
        if not self.bounded:
            return
        for pending in self._pending:
            if any(c.state in _OPEN for c in pending):
                states = _scan(np.array([c.state for c in pending]), np.array([c.token for c in pending]),
                               np.array([c.peak for c in pending]), t, token, self.blank, self.space, self.lookahead)
                for c, state in zip(pending, states):
                    c.state = int(state)
                pending[:] = [c for c in pending if c.state != _UNBOUNDED]  # refused: it blocks nothing

    def _step(self, t: int, column: np.ndarray, frame_best: float, token: int, bounded_here: bool) -> None:
        """One Viterbi step over frame ``t`` (``column``: its log-probabilities, then the separator gap), and the
        candidates it ends."""
        graph, cost, here = self.graph, self._cost, self._here
        options = np.where(self._can, np.stack([cost, _shift(cost, 1, -np.inf), _shift(cost, 2, -np.inf),
                                                np.zeros_like(cost)]), -np.inf)
        choice = options.argmax(axis=0)  # ties: staying wins (a path starts as early as it costs nothing)
        fresh = choice == 3
        source = here - self._back[choice]
        left = graph.letter[source] & (source != here)  # the path leaves a letter behind this frame
        entered = graph.letter & (left | fresh | ~graph.letter[source])
        raw = column[graph.column]  # (S,) log P(state) at this frame
        deficit = np.minimum(raw - frame_best, 0.0)
        deficit[deficit < self.floor] = -np.inf
        best, peak, peak_bounded = self._best[source], self._peak[source], self._peak_bounded[source]
        renew = entered | (graph.letter & ~entered & (raw > best))  # the letter's peak is this frame
        leaves_first = left & graph.first[source]
        self._done = np.where(fresh, 0.0, self._done[source] + np.where(left, best, 0.0))
        self._first_bounded = np.where(fresh, bounded_here,
                                       np.where(leaves_first, peak_bounded, self._first_bounded[source]))
        self._start = np.where(fresh, t, self._start[source])
        self._best = np.where(renew, raw, best)
        self._peak_bounded = np.where(renew, bounded_here, peak_bounded)
        if self.bounded:
            after_token = self._after_token[source]
            moved = _scan(self._after[source], after_token, peak, t, token, self.blank, self.space, self.lookahead)
            self._after = np.where(renew, _BOUNDED if token == self.space else _RUN, moved)
            self._after_token = np.where(renew, token, after_token)
        self._peak = np.where(renew, t, peak)
        self._cost = cost = options[choice, here] + deficit

        ends = cost[graph.last]
        if not np.isfinite(ends).any():
            return
        last = graph.last
        scores = np.exp((self._done[last] + self._best[last]) / graph.letters)
        boosted = np.round(np.clip(scores + self._boosts, 0.0, 1.0), 4)  # as reported: 0.3 ** 3 ** (1/3) passes 0.3
        for k in np.flatnonzero(np.isfinite(ends) & (boosted >= self._thresholds)):
            s = last[k]
            before = self._peak_bounded[s] if graph.first[s] else self._first_bounded[s]
            if not before or self._after[s] == _UNBOUNDED:
                continue  # never taken, and a refused candidate blocks nothing: no need to keep it
            self._pending[k].append(_Candidate(int(self._start[s]), t, float(boosted[k]), float(ends[k]),
                                               int(self._peak[s]), int(self._after_token[s]), int(self._after[s])))

    # ---- decisions --------------------------------------------------------------------------------------------
    def _decide(self, until: int | None) -> list[Detection]:
        """Decide the candidates ending at frame ``until`` or before (None: all, at the end of the audio)."""
        found = []
        for k, pending in enumerate(self._pending):
            decided = False
            while pending and (until is None or pending[0].end <= until):
                candidate, decided = pending.pop(0), True
                if self._taken_now(k, candidate, pending):
                    self._taken[k].append((candidate.start, candidate.end))
                    found.append(self._detection(k, candidate))
            if decided and self._taken[k] and until is not None:
                self._forget(k)
        return found

    def _taken_now(self, k: int, candidate: _Candidate, others: list[_Candidate]) -> bool:
        """The occurrence rule on what is known now: best first, each overlapping none taken before it (the
        decided ones stay as they were)."""
        taken = list(self._taken[k])
        for c in sorted([candidate, *others], key=lambda c: c.rank):
            if any(c.overlaps(first, last) for first, last in taken):
                if c is candidate:
                    return False
                continue
            if c is candidate:
                return True
            taken.append((c.start, c.end))
        raise AssertionError("unreachable")

    def _forget(self, k: int) -> None:
        """Drop the decided occurrences of keyword ``k`` that nothing can overlap any more: every path still
        alive, and so every later candidate, starts after them."""
        alive = self._start[(self._owner == k) & np.isfinite(self._cost)]
        horizon = min([self.frames, *(c.start for c in self._pending[k])] + ([int(alive.min())] if len(alive) else []))
        self._taken[k] = [(first, last) for first, last in self._taken[k] if last >= horizon]

    def _detection(self, k: int, c: _Candidate) -> Detection:
        return Detection(self.keywords[k].keyword, round(self.offset + c.start * self.frame_seconds, 3),
                         round(self.offset + (c.end + 1) * self.frame_seconds, 3), round(c.score, 4))


def search(log_probs: Tensor | np.ndarray, keywords: Sequence[OpenKeyword], vocab: Sequence[str],
           frame_seconds: float, *, offset: float = 0.0, min_frame_ratio: float = MIN_FRAME_RATIO,
           word_boundaries: bool = True, lookahead: float = LOOKAHEAD_SECONDS) -> list[Detection]:
    """The occurrences of ``keywords`` in one clip, sorted by start: :class:`KeywordSearch` fed the whole clip
    and finished (see the module docstring).

    ``log_probs (T, V)``: the recognizer's frame log-probabilities (logits are normalised here) over ``vocab``,
    the blank first; ``frame_seconds``: seconds per frame; ``offset``: seconds added to every time. The other
    options are :class:`KeywordSearch`'s. Raises :class:`KeywordError` for a keyword ``vocab`` cannot spell."""
    spotter = KeywordSearch(keywords, vocab, frame_seconds, offset=offset, min_frame_ratio=min_frame_ratio,
                            word_boundaries=word_boundaries, lookahead=lookahead)
    return _in_order(spotter.feed(torch.as_tensor(log_probs).T) + spotter.finish())
