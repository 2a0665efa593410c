"""CTC decoding for the character recognizer: greedy and beam search, with word times from the alignment.

Beam search is torchaudio's CTC decoder (flashlight-text), lexicon-free and without a language model, so it
needs no files. Word times: a character occupies the frames of its run in the alignment; a word starts at its
first character's first frame and ends after its last character's last frame. Word confidence is the mean
probability of the frames that emitted its characters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..vocab import ASR_VOCAB

__all__ = ["Word", "Transcript", "greedy_decode", "BeamSearchDecoder"]


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


def _words(chars: list[tuple[str, int, int, float]], frame_seconds: float, offset: float) -> Transcript:
    """Group ``(char, first_frame, last_frame, prob)`` into words at spaces."""
    words: list[Word] = []
    current: list[tuple[str, int, int, float]] = []
    for item in chars + [(" ", 0, 0, 0.0)]:
        if item[0] != " ":
            current.append(item)
            continue
        if current:
            text = "".join(c for c, *_ in current)
            start = offset + current[0][1] * frame_seconds
            end = offset + (current[-1][2] + 1) * frame_seconds
            words.append(Word(text, round(start, 3), round(end, 3), round(sum(p for *_, p in current) / len(current), 4)))
            current = []
    return Transcript(" ".join(w.text for w in words), tuple(words))


def greedy_decode(
    log_probs: Tensor, frame_seconds: float, vocab: tuple[str, ...] = ASR_VOCAB, offset: float = 0.0
) -> Transcript:
    """Best path: ``log_probs (vocab, frames)`` of one clip -> transcript with word times (blank is index 0)."""
    probs = log_probs.detach().float().softmax(dim=0)  # also right for raw logits
    best_prob, best = probs.max(dim=0)
    chars: list[tuple[str, int, int, float]] = []
    previous = 0
    for frame, (token, prob) in enumerate(zip(best.tolist(), best_prob.tolist())):
        if token != 0 and token == previous and chars:
            c, first, _, p = chars[-1]
            chars[-1] = (c, first, frame, max(p, prob))
        elif token != 0:
            chars.append((vocab[token], frame, frame, prob))
        previous = token
    return _words(chars, frame_seconds, offset)


class BeamSearchDecoder:
    """Lexicon-free CTC beam search (torchaudio / flashlight-text) over the character vocabulary."""

    def __init__(self, beam_size: int = 32, vocab: tuple[str, ...] = ASR_VOCAB) -> None:
        from torchaudio.models.decoder import ctc_decoder

        # flashlight-text wants named blank and word-separator tokens.
        tokens = ["-" if i == 0 else ("|" if t == " " else t) for i, t in enumerate(vocab)]
        self.vocab = vocab
        self.decoder = ctc_decoder(
            lexicon=None, tokens=tokens, lm=None, beam_size=beam_size, blank_token="-", sil_token="|",
        )

    def __call__(self, log_probs: Tensor, frame_seconds: float, offset: float = 0.0) -> Transcript:
        """``log_probs (vocab, frames)`` of one clip -> transcript with word times."""
        emissions = log_probs.detach().float().log_softmax(dim=0).T.contiguous()[None].cpu()
        hypothesis = self.decoder(emissions)[0][0]
        probs = emissions[0].exp()
        chars = []
        for token, step in zip(hypothesis.tokens.tolist(), hypothesis.timesteps.tolist()):
            frame = step - 1  # flashlight counts from a virtual frame before the first (measured in the tests)
            if token == 0 or not 0 <= frame < probs.shape[0]:  # blank, or a separator it adds at either end
                continue
            chars.append((self.vocab[token], frame, frame, float(probs[frame, token])))
        # flashlight adds word separators at both ends; _words drops empty words.
        return _words(chars, frame_seconds, offset)
