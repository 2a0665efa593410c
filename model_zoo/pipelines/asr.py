"""Speech recognition rules: run the recognizer, cut each clip's frames, decode greedy or with its beam search.

:class:`Recognizer` is the one way from a recognizer's output to a :class:`~model_zoo.nets.ctc.Transcript` with
word times: the service's workers, the evaluation and the benchmarks all decode through it, so they measure
what users get. A batch of clips zero-padded at the end is cut back to each clip's own frames
(:func:`clip_logits`); decoding is greedy, or the beam search the checkpoint ships with (:func:`beam_decoder`).
The same logits also answer keyword searches of the user's choosing (:meth:`Recognizer.spot` on a clip,
:meth:`Recognizer.keyword_search` on a stream; the rules of :mod:`model_zoo.pipelines.open_keywords`).

A checkpoint card's ``beam_search`` entry names a general-English n-gram file beside the card with its tuned
weights and beam (:func:`model_zoo.nets.ctc.decoder_from_card`); without one, the checkpoint's own word bigram
(``NAME.lm.json``) is used; without either, the search is lexicon-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..card import ModelCard
from ..checkpoint import CHECKPOINT_DIR
from ..nets.ctc import BeamSearchDecoder, GreedyPath, Transcript, decoder_from_card, greedy_decode
from ..vocab import ASR_VOCAB
from .kws import Detection
from .open_keywords import KeywordSearch, OpenKeyword, search

__all__ = ["DEFAULT_BEAM_SEARCH", "Recognizer", "beam_decoder", "clip_logits", "ships_language_model"]

# Beam search is the default decoding everywhere (uploads, OpenAI's endpoint, streams' finals): with a language
# model it is the most accurate, and the search costs a few thousandths of the audio's duration on one core (decode
# RTF 0.0016 with the bigram, 0.0027 with english.arpa.gz at beam 64, on the real set), so the whole recognizer
# stays within RTF 0.05. Greedy decoding remains an option (``beam_search=false``).
DEFAULT_BEAM_SEARCH = True


def _card(model: nn.Module) -> ModelCard | None:
    """The card a loaded checkpoint carries (:func:`model_zoo.checkpoint.load`); None for a network built here."""
    return getattr(model, "card", None)


def ships_language_model(model: nn.Module) -> bool:
    """Whether the recognizer's beam search has a language model (an n-gram file or its word bigram)."""
    card = _card(model)
    names_ngram = card is not None and bool((card.beam_search or {}).get("language_model"))
    return names_ngram or getattr(model, "language_model", None) is not None


def beam_decoder(model: nn.Module, **overrides) -> BeamSearchDecoder:
    """The beam search ``model`` ships with (see the module docstring); ``overrides`` go to the decoder."""
    return decoder_from_card(_card(model), getattr(model, "card_dir", CHECKPOINT_DIR),
                             getattr(model, "language_model", None), **overrides)


def clip_logits(model: nn.Module, logits: Tensor, lengths: Sequence[int] | Tensor) -> list[Tensor]:
    """``logits (B, vocab, frames)`` of a batch of clips zero-padded at the end -> each clip's ``(vocab,
    frames_b)``, cut to the frames of its own ``lengths[b]`` samples (the networks are causal, so the padding
    after a clip never changes its frames)."""
    frames = model.output_lengths(torch.as_tensor(lengths))
    return [logits[b, :, : int(frames[b])] for b in range(len(frames))]


class Recognizer:
    """A recognizer and its decoding: logits -> transcript, greedy or with the beam search it ships with.

    The beam search is built on first use (flashlight's decoder is not free to construct) and then kept.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        card = _card(model)
        # The tokens the beam search uses too (decoder_from_card): the card's, else the default vocabulary.
        self.vocab: tuple[str, ...] = tuple(card.vocab if card is not None and card.vocab is not None else ASR_VOCAB)
        self._beam: BeamSearchDecoder | None = None

    @property
    def frame_seconds(self) -> float:
        return float(self.model.frame_seconds)

    @property
    def beam(self) -> BeamSearchDecoder:
        """The beam search the recognizer ships with (:func:`beam_decoder`)."""
        if self._beam is None:
            self._beam = beam_decoder(self.model)
        return self._beam

    def decode(self, logits: Tensor, *, beam_search: bool, offset: float = 0.0) -> Transcript:
        """``logits (vocab, frames)`` of one clip -> its transcript; ``offset`` seconds are added to word times."""
        if beam_search:
            return self.beam(logits, self.frame_seconds, offset=offset)
        return greedy_decode(logits, self.frame_seconds, vocab=self.vocab, offset=offset)

    def greedy_path(self, offset: float = 0.0) -> GreedyPath:
        """A stream's greedy decoding frame by frame: its transcript is ``decode(all frames, beam_search=False)``."""
        return GreedyPath(self.frame_seconds, self.vocab, offset)

    def spot(self, logits: Tensor, keywords: Sequence[OpenKeyword], *, offset: float = 0.0) -> list[Detection]:
        """``logits (vocab, frames)`` of one clip -> the occurrences of ``keywords`` in it
        (:func:`model_zoo.pipelines.open_keywords.search`); ``offset`` seconds are added to their times."""
        return search(logits.T, keywords, self.vocab, self.frame_seconds, offset=offset)

    def keyword_search(self, keywords: Sequence[OpenKeyword], *, offset: float = 0.0) -> KeywordSearch:
        """The same search over a stream: feed it each step's ``logits (vocab, frames)``, get the detections that
        became final (:class:`model_zoo.pipelines.open_keywords.KeywordSearch`); ``offset``: seconds at frame 0."""
        return KeywordSearch(keywords, self.vocab, self.frame_seconds, offset=offset)

    def __call__(self, waveform: Tensor, *, beam_search: bool) -> Transcript:
        """One clip ``waveform (L,)`` at the recognizer's rate -> its transcript."""
        with torch.inference_mode():
            logits = self.model(waveform[None])
        return self.decode(clip_logits(self.model, logits, [waveform.shape[-1]])[0], beam_search=beam_search)
