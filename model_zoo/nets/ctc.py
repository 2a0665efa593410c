"""CTC decoding for the character recognizer: greedy and beam search, with word times from the alignment.

Beam search is torchaudio's CTC decoder (flashlight-text). Without a language model it is lexicon-free. With a
:class:`WordLanguageModel` (a word bigram estimated from the training transcripts, shipped next to the
checkpoint as ``NAME.lm.json``) it searches over the model's words only, scored by the bigram: on held-out
voices this turns many near-miss spellings into the right words. Word times: a character occupies the frames of its run in the alignment; a word starts at its
first character's first frame and ends after its last character's last frame. Word confidence is the mean
probability of the frames that emitted its characters.

With an :class:`NgramLanguageModel` (an ARPA file, ``.arpa`` or ``.arpa.gz``, read by the KenLM inside
flashlight-text; ``model_zoo/checkpoints/english.arpa.gz`` is a general-English 3-gram of about 73k words built
by ``python -m training.lm build``) it searches over that model's words. A checkpoint card names one with
``"beam_search": {"language_model": "english.arpa.gz", "lm_weight": ..., "word_score": ..., "beam_size": ...}``
(:attr:`model_zoo.card.ModelCard.beam_search`; see :func:`decoder_from_card`).
"""

from __future__ import annotations

import gzip
import json
import math
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from ..vocab import ASR_VOCAB

if TYPE_CHECKING:
    from ..card import ModelCard

__all__ = [
    "Word", "Transcript", "GreedyPath", "best_path", "greedy_decode", "BeamSearchDecoder", "WordLanguageModel",
    "NgramLanguageModel", "decoder_from_card", "arpa_unigrams",
]


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...]


def _word(chars: list[tuple[str, int, int, float]], frame_seconds: float, offset: float) -> Word:
    """One word from its ``(char, first_frame, last_frame, prob)``."""
    start = offset + chars[0][1] * frame_seconds
    end = offset + (chars[-1][2] + 1) * frame_seconds
    return Word("".join(c for c, *_ in chars), round(start, 3), round(end, 3),
                round(sum(p for *_, p in chars) / len(chars), 4))


def _words(chars: list[tuple[str, int, int, float]], frame_seconds: float, offset: float) -> Transcript:
    """Group ``(char, first_frame, last_frame, prob)`` into words at spaces."""
    words: list[Word] = []
    current: list[tuple[str, int, int, float]] = []
    for item in chars + [(" ", 0, 0, 0.0)]:
        if item[0] != " ":
            current.append(item)
            continue
        if current:
            words.append(_word(current, frame_seconds, offset))
            current = []
    return Transcript(" ".join(w.text for w in words), tuple(words))


def best_path(log_probs: Tensor) -> tuple[Tensor, Tensor]:
    """``log_probs (..., vocab, frames)`` (raw logits do as well) -> each frame's best token and its probability,
    both ``(..., frames)``."""
    probs, tokens = log_probs.detach().float().softmax(dim=-2).max(dim=-2)
    return tokens, probs


class GreedyPath:
    """The best path of a stream read frame by frame: :meth:`transcript` is :func:`greedy_decode` of every frame
    pushed so far, and each frame is read once (a live stream's partial after each step costs its new frames, not
    the whole utterance again). Blank is index 0."""

    def __init__(self, frame_seconds: float, vocab: tuple[str, ...] = ASR_VOCAB, offset: float = 0.0) -> None:
        self.frame_seconds, self.vocab, self.offset = frame_seconds, vocab, offset
        self.chars: list[tuple[str, int, int, float]] = []  # (char, first frame, last frame, best probability)
        self.frames = 0
        self._previous = 0  # the last frame's token: a repeat of it extends its run instead of a new character
        # Words followed by a space never change again (a frame changes at most the last character), so they
        # are grouped once: the partial after each step costs its new characters, not the whole utterance.
        self._closed: list[Word] = []
        self._closed_text = ""  # their text
        self._open = 0  # index in chars of the first character after the closed words

    def push(self, log_probs: Tensor) -> bool:
        """The next frames' ``log_probs (vocab, frames)`` (raw logits do as well); whether the text grew."""
        tokens, probs = best_path(log_probs)
        return self.push_best(tokens.tolist(), probs.tolist())

    def push_best(self, tokens: list[int], probs: list[float]) -> bool:
        """The next frames' best tokens and their probabilities (:func:`best_path`, read for a whole batch of
        streams at once); whether the text grew: a new character, which only a non-blank token that does not
        repeat the previous frame's adds (a repeat lengthens its character's run: same text, later end)."""
        chars, previous, grew = self.chars, self._previous, False
        for frame, (token, prob) in enumerate(zip(tokens, probs), start=self.frames):
            if token != 0 and token == previous and chars:
                c, first, _, p = chars[-1]
                chars[-1] = (c, first, frame, max(p, prob))
            elif token != 0:
                chars.append((self.vocab[token], frame, frame, prob))
                grew = True
            previous = token
        self._previous, self.frames = previous, self.frames + len(tokens)
        return grew

    def _close_words(self) -> None:
        chars = self.chars
        for k in range(self._open, len(chars)):  # the open word's characters and the new ones
            if chars[k][0] == " ":
                if k > self._open:
                    word = _word(chars[self._open:k], self.frame_seconds, self.offset)
                    self._closed.append(word)
                    self._closed_text = f"{self._closed_text} {word.text}" if self._closed_text else word.text
                self._open = k + 1

    def transcript(self) -> Transcript:
        self._close_words()
        words = self._closed
        if self._open < len(self.chars):
            words = words + [_word(self.chars[self._open:], self.frame_seconds, self.offset)]
        return Transcript(" ".join(w.text for w in words), tuple(words))

    def text(self) -> str:
        """:meth:`transcript`'s text without its words, what a live partial shows: it costs the characters added
        since the last call, not the utterance (a partial of every word cost more at every step of a long one)."""
        self._close_words()
        tail = "".join(c for c, *_ in self.chars[self._open:])
        return f"{self._closed_text} {tail}" if self._closed_text and tail else self._closed_text or tail


def greedy_decode(
    log_probs: Tensor, frame_seconds: float, vocab: tuple[str, ...] = ASR_VOCAB, offset: float = 0.0
) -> Transcript:
    """Best path: ``log_probs (vocab, frames)`` of one clip -> transcript with word times (blank is index 0)."""
    path = GreedyPath(frame_seconds, vocab, offset)
    path.push(log_probs)
    return path.transcript()


SENTENCE_START, SENTENCE_END = "<s>", "</s>"


@dataclass
class WordLanguageModel:
    """A word bigram with interpolated absolute discounting, backing off to an add-``smoothing`` unigram.

    ``unigrams[w]`` counts ``w`` (and ``</s>``) in the transcripts; ``bigrams[v][w]`` counts ``v w`` with ``<s>``
    before each transcript. Its words are the decoder's lexicon. ``lm_weight`` and ``word_score`` are the beam
    search's weights for this model, tuned with the acoustic model it ships with (training picks them on the
    validation split).
    """

    unigrams: dict[str, int]
    bigrams: dict[str, dict[str, int]]
    discount: float = 0.75
    smoothing: float = 0.1
    lm_weight: float = 0.5
    word_score: float = 0.0
    _context_totals: dict[str, int] = field(init=False, repr=False)
    _unigram_total: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._context_totals = {v: sum(follow.values()) for v, follow in self.bigrams.items()}
        self._unigram_total = sum(self.unigrams.values()) + self.smoothing * (len(self.unigrams) + 1)

    @classmethod
    def from_transcripts(cls, transcripts: Iterable[str]) -> "WordLanguageModel":
        unigrams: Counter[str] = Counter()
        bigrams: dict[str, Counter[str]] = {}
        for text in transcripts:
            words = [SENTENCE_START, *text.split(), SENTENCE_END]
            unigrams.update(words[1:])
            for previous, word in zip(words[:-1], words[1:]):
                bigrams.setdefault(previous, Counter())[word] += 1
        return cls(dict(unigrams), {v: dict(follow) for v, follow in bigrams.items()})

    @property
    def words(self) -> list[str]:
        return sorted(w for w in self.unigrams if w != SENTENCE_END)

    def log_prob(self, previous: str, word: str) -> float:
        """``log P(word | previous)``; unknown words get the unigram floor."""
        unigram = (self.unigrams.get(word, 0) + self.smoothing) / self._unigram_total
        total = self._context_totals.get(previous, 0)
        if total == 0:
            return math.log(unigram)
        follow = self.bigrams[previous]
        backoff = self.discount * len(follow) / total
        return math.log(max(follow.get(word, 0) - self.discount, 0.0) / total + backoff * unigram)

    def to_dict(self) -> dict:
        return {"kind": "word-bigram", "discount": self.discount, "smoothing": self.smoothing,
                "lm_weight": self.lm_weight, "word_score": self.word_score,
                "unigrams": self.unigrams, "bigrams": self.bigrams}

    @classmethod
    def from_dict(cls, data: dict) -> "WordLanguageModel":
        if data.get("kind") != "word-bigram":
            raise ValueError(f"not a word-bigram language model (kind: {data.get('kind')!r})")
        # Files written before the weights were tuned per model carry none: the field defaults.
        return cls(data["unigrams"], data["bigrams"], data["discount"], data["smoothing"],
                   data.get("lm_weight", cls.lm_weight), data.get("word_score", cls.word_score))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "WordLanguageModel":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class NgramLanguageModel:
    """A word n-gram file the decoder's KenLM reads (ARPA, gzip-compressed or not, or a KenLM binary) and the
    beam-search weights tuned for it. The decoder's lexicon is ``lexicon`` (a file, one word a line) when
    given, else the ARPA file's unigrams; only words the character vocabulary spells are kept."""

    path: Path
    # The best pair for the shipped ``asr`` with ``english.arpa.gz`` on its validation split (beam 32); a
    # card's ``beam_search`` entry overrides them.
    lm_weight: float = 1.5
    word_score: float = 0.0
    lexicon: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.lexicon is not None:
            object.__setattr__(self, "lexicon", Path(self.lexicon))
        if not self.path.is_file():
            raise FileNotFoundError(f"language model file not found: {self.path}")

    @property
    def words(self) -> list[str]:
        """The lexicon: ``lexicon``'s lines, else the ARPA unigrams (without ``<s>``, ``</s>``, ``<unk>``)."""
        if self.lexicon is not None:
            return [w for w in self.lexicon.read_text().split() if w]
        return arpa_unigrams(self.path)


_SPECIAL_WORDS = frozenset({SENTENCE_START, SENTENCE_END, "<unk>"})


def arpa_unigrams(path: str | Path) -> list[str]:
    """The words of an ARPA file's ``\\1-grams:`` section (``.gz`` read through gzip), specials left out."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    words: list[str] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("\\1-grams:"):
                break
        else:
            raise ValueError(f"{path}: no \\1-grams: section (not an ARPA file?)")
        for line in handle:
            line = line.strip()
            if not line:
                continue
            if line.startswith("\\"):
                break
            fields = line.split()
            if len(fields) >= 2 and fields[1] not in _SPECIAL_WORDS:
                words.append(fields[1])
    return words


def _flashlight_lm(model: WordLanguageModel, words: list[str]):
    """``model`` behind flashlight's LM interface; word indices are positions in ``words`` (then ``<unk>``)."""
    from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

    class BigramLM(CTCDecoderLM):
        def __init__(self) -> None:
            CTCDecoderLM.__init__(self)
            self.previous: dict = {}

        def start(self, start_with_nothing: bool = False):
            # A fresh map per utterance: states of earlier utterances are dropped with their tree.
            state = CTCDecoderLMState()
            self.previous = {state: SENTENCE_START}
            return state

        def score(self, state, word_index: int):
            child = state.child(word_index)
            word = words[word_index] if 0 <= word_index < len(words) else "<unk>"
            self.previous[child] = word
            return child, model.log_prob(self.previous[state], word)

        def finish(self, state):
            return state.child(-1), model.log_prob(self.previous[state], SENTENCE_END)

    return BigramLM()


_KENLM: dict[tuple[str, int], object] = {}


def _kenlm(path: Path, words: tuple[str, ...], lexicon_file: Path):
    """flashlight's KenLM over ``path`` with the word indices of ``lexicon_file``, kept for the next decoder
    over the same file and words: reading a large ARPA file takes seconds, and tuning builds many decoders that
    differ only in their weights. The decoder derives the same word indices from the same lexicon."""
    key = (str(path), hash(words))
    if key not in _KENLM:
        try:
            from flashlight.lib.text.decoder.kenlm import KenLM
        except ImportError:
            from flashlight.lib.text.decoder import KenLM
        from flashlight.lib.text.dictionary import create_word_dict, load_words

        _KENLM.clear()  # one model at a time: each holds its whole n-gram table in memory
        _KENLM[key] = KenLM(str(path), create_word_dict(load_words(str(lexicon_file))))
    return _KENLM[key]


# Frames the beam search reads between two chances for other threads to run: ~1 ms with the shipped recognizer
# (a thread beside it then waited at most 3 ms, against 13 ms for one search of 7 s of audio; 15% slower).
SEARCH_SLICE_FRAMES = 16


class BeamSearchDecoder:
    """CTC beam search (torchaudio / flashlight-text) over the character vocabulary: lexicon-free, or over the
    words of ``language_model`` scored by it (``lm_weight`` times its log probability plus ``word_score`` per
    word; by default the weights the language model carries, tuned for its acoustic model).

    ``language_model``: a :class:`WordLanguageModel` (the checkpoint's bigram), an :class:`NgramLanguageModel`
    (an ARPA file with its lexicon), a path to an ARPA file, or ``None``. ``lexicon`` (words, or a file of
    one word a line) overrides the n-gram model's lexicon. ``beam_size_token`` and ``beam_threshold`` prune
    the search further (per frame: the best tokens tried, the score gap to the best hypothesis kept).
    """

    def __init__(
        self, beam_size: int = 32, vocab: tuple[str, ...] = ASR_VOCAB,
        language_model: WordLanguageModel | NgramLanguageModel | str | Path | None = None,
        lm_weight: float | None = None, word_score: float | None = None,
        lexicon: Iterable[str] | str | Path | None = None, beam_size_token: int = 10, beam_threshold: float = 25.0,
    ) -> None:
        from torchaudio.models.decoder import ctc_decoder

        # flashlight-text wants named blank and word-separator tokens.
        tokens = ["-" if i == 0 else ("|" if t == " " else t) for i, t in enumerate(vocab)]
        self.vocab = vocab
        self._searching = threading.Lock()  # a worker decodes uploads and live finals on two threads
        if isinstance(language_model, (str, Path)):
            language_model = NgramLanguageModel(Path(language_model))
        self.language_model = language_model
        if language_model is None:
            self.decoder = ctc_decoder(
                lexicon=None, tokens=tokens, lm=None, beam_size=beam_size, blank_token="-", sil_token="|",
            )
            return
        lm_weight = language_model.lm_weight if lm_weight is None else lm_weight
        word_score = language_model.word_score if word_score is None else word_score
        if isinstance(lexicon, (str, Path)):
            lexicon = Path(lexicon).read_text().split()
        spellable = set(vocab[1:]) - {" "}
        candidates = language_model.words if lexicon is None else list(lexicon)
        # Sorted and deduplicated: the decoder's word indices do not depend on the order given.
        words = sorted({w for w in candidates if w and set(w) <= spellable})
        if not words:
            raise ValueError("the lexicon has no word the vocabulary can spell")
        self.words = words
        # flashlight reads the lexicon and word list from files, once, here.
        with tempfile.TemporaryDirectory() as folder:
            lexicon_file, word_list = Path(folder, "lexicon.txt"), Path(folder, "words.txt")
            lexicon_file.write_text("".join(f"{w} {' '.join(w)} |\n" for w in words))
            if isinstance(language_model, NgramLanguageModel):
                lm, lm_dict = _kenlm(language_model.path, tuple(words), lexicon_file), None
            else:
                word_list.write_text("".join(f"{w}\n" for w in words) + "<unk>\n")
                lm, lm_dict = _flashlight_lm(language_model, words), str(word_list)
            self.decoder = ctc_decoder(
                lexicon=str(lexicon_file), tokens=tokens, lm=lm, lm_dict=lm_dict,
                beam_size=beam_size, beam_size_token=beam_size_token, beam_threshold=beam_threshold,
                lm_weight=lm_weight, word_score=word_score, blank_token="-", sil_token="|",
            )

    def _search(self, emissions: Tensor) -> list:
        """flashlight's hypotheses for ``emissions (frames, tokens)``, searched :data:`SEARCH_SLICE_FRAMES` at a
        time: its binding holds the GIL while it searches, so a whole utterance at once stopped every other thread
        of the process for 10-35 ms (a worker's live streams, whose steps run beside the finals). Between slices
        the GIL goes to whoever waits for it; the hypotheses are the same (the search is frame by frame)."""
        decoder = self.decoder
        decoder.decode_begin()
        for start in range(0, emissions.shape[0], SEARCH_SLICE_FRAMES):
            decoder.decode_step(emissions[start:start + SEARCH_SLICE_FRAMES])
            time.sleep(0)  # releases the GIL
        decoder.decode_end()
        return decoder.get_final_hypothesis()

    def __call__(self, log_probs: Tensor, frame_seconds: float, offset: float = 0.0) -> Transcript:
        """``log_probs (vocab, frames)`` of one clip -> transcript with word times."""
        emissions = log_probs.detach().float().log_softmax(dim=0).T.contiguous().cpu()
        with self._searching:  # flashlight's decoder keeps the search in itself: one search at a time
            hypotheses = self._search(emissions)
        if not hypotheses:  # nothing in the lexicon fits
            return Transcript("", ())
        hypothesis = hypotheses[0]
        probs = emissions.exp()
        chars = []
        for token, step in zip(hypothesis.tokens.tolist(), hypothesis.timesteps.tolist()):
            frame = step - 1  # flashlight counts from a virtual frame before the first (measured in the tests)
            if token == 0 or not 0 <= frame < probs.shape[0]:  # blank, or a separator it adds at either end
                continue
            chars.append((self.vocab[token], frame, frame, float(probs[frame, token])))
        # flashlight adds word separators at both ends; _words drops empty words.
        return _words(chars, frame_seconds, offset)


def decoder_from_card(card: ModelCard | None, directory: str | Path, word_model: WordLanguageModel | None = None,
                      **overrides) -> BeamSearchDecoder:
    """The beam search a recognizer's card asks for. ``card.beam_search`` may name an n-gram file
    (``"language_model"``, relative to ``directory``, the card's folder) with its ``lm_weight``,
    ``word_score``, ``beam_size``, ``beam_size_token``, ``beam_threshold`` and ``lexicon`` (a file there);
    without one, the checkpoint's word bigram ``word_model`` when it has one, else lexicon-free search. No card
    (a network not loaded from a checkpoint): the default vocabulary and no n-gram file.
    ``overrides`` (the constructor's keywords) win over the card."""
    settings = dict((card.beam_search if card is not None else None) or {})
    vocab = tuple(card.vocab if card is not None and card.vocab is not None else ASR_VOCAB)
    options = {k: settings[k] for k in ("beam_size", "beam_size_token", "beam_threshold") if k in settings}
    name = settings.get("language_model")
    if name:
        lexicon = settings.get("lexicon")
        language_model: WordLanguageModel | NgramLanguageModel | None = NgramLanguageModel(
            Path(directory) / name, float(settings.get("lm_weight", NgramLanguageModel.lm_weight)),
            float(settings.get("word_score", NgramLanguageModel.word_score)),
            Path(directory) / lexicon if lexicon else None)
    else:
        language_model = word_model
    return BeamSearchDecoder(vocab=vocab, language_model=language_model, **{**options, **overrides})
