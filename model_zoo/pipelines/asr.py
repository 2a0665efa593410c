"""Speech recognition rules: which beam search a recognizer decodes with.

A checkpoint card's ``beam_search`` entry names a general-English n-gram file beside the card with its tuned
weights and beam (:func:`model_zoo.nets.ctc.decoder_from_card`); without one, the checkpoint's own word bigram
(``NAME.lm.json``) is used; without either, the search is lexicon-free. The service, the evaluation and the
benchmarks all decode through :func:`beam_decoder`, so they measure what users get.
"""

from __future__ import annotations

from torch import nn

from ..card import ModelCard
from ..checkpoint import CHECKPOINT_DIR
from ..nets.ctc import BeamSearchDecoder, decoder_from_card

__all__ = ["DEFAULT_BEAM_SEARCH", "beam_decoder", "ships_language_model"]

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
