"""torch Datasets over a built corpus, augmenting the dry utterances on the fly.

``train`` items are augmented afresh for every (seed, epoch, index): call :meth:`set_epoch` at the start
of each epoch (before the DataLoader iterator is created, so worker processes see it). ``valid`` and
``test`` items get a *fixed* augmentation derived from the corpus's own seed (``corpus.json``), not from
the ``seed`` argument, so every run and every model is scored on exactly the same examples.

Items (all float32 at 16 kHz):

* :class:`KWSCorpus`: ``(waveform (16000,), label index into KWS_LABELS)``;
* :class:`ASRCorpus`: ``(waveform (L,), normalised transcript)``, batched by :func:`asr_collate`;
* :class:`DenoiseCorpus`: ``(noisy (L,), clean (L,))``, L a multiple of 256.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from model_zoo.vocab import KWS_LABELS, SILENCE

from .augment import ASR_AUGMENT, KWS_AUGMENT, augment_speech, denoise_pair, make_silence
from .noise import NoiseBank, noise_types_for_split
from .tts import SAMPLE_RATE, read_wav
from .voices import SPLITS

__all__ = ["KWSCorpus", "ASRCorpus", "DenoiseCorpus", "asr_collate", "CLIP_SAMPLES", "FRAME_MULTIPLE"]

CLIP_SAMPLES = SAMPLE_RATE
FRAME_MULTIPLE = 256
_TASK_SALT = {"kws": 1, "asr": 2, "denoise": 3}


class _Corpus(Dataset):
    """Shared part: reads ``corpus.json`` and the split's manifest rows, owns the noise bank and the
    per-item random generators."""

    task = ""
    corpora: tuple[str, ...] = ()  # the corpus tasks this dataset reads (its own by default)

    def __init__(self, root: str | Path, split: str, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.root = Path(root)
        meta_path = self.root / "corpus.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: build it with `python -m training corpus {self.task} --out {root}`")
        self.meta = json.loads(meta_path.read_text())
        if self.meta["task"] not in (self.corpora or (self.task,)):
            raise ValueError(f"{root} holds a {self.meta['task']!r} corpus, not {self.task!r}")
        with open(self.root / "manifest.jsonl") as handle:
            self.rows = [r for r in map(json.loads, handle) if r["split"] == split]
        self.split = split
        self.seed = seed
        self.epoch = 0
        self._origin = list(range(len(self.rows)))  # each row's index in the whole split (see select)
        bank, kinds = noise_types_for_split(split)
        self.noise = NoiseBank(self.root, bank, kinds)

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation of the coming train epoch (no effect on valid/test)."""
        self.epoch = epoch

    def select(self, keep: Callable[[dict], bool]) -> "_Corpus":
        """Keep only the items whose manifest row passes ``keep`` (e.g. ``lambda r: r["synth"] == "festival"``),
        in place; returns ``self``. Each kept item is exactly the item it is in the whole split (same
        augmentation), so a subset's scores are those of its items in the full evaluation."""
        kept = [i for i, row in enumerate(self.rows) if keep(row)]
        self._origin = [self._origin[i] for i in kept]
        self.rows = [self.rows[i] for i in kept]
        if hasattr(self, "labels"):
            self.labels = [self.labels[i] for i in kept]
        return self

    def rng(self, index: int) -> np.random.Generator:
        index = self._origin[index]
        if self.split == "train":
            return np.random.default_rng([self.seed, self.epoch, index, _TASK_SALT[self.task]])
        return np.random.default_rng([self.meta["seed"], 1000 + SPLITS.index(self.split), index, _TASK_SALT[self.task]])

    def dry(self, index: int) -> np.ndarray:
        """The stored, un-augmented utterance (empty for ``_silence_``)."""
        row = self.rows[index]
        return read_wav(self.root / row["path"])[0] if row["path"] else np.zeros(0, np.float32)

    def info(self, index: int) -> dict:
        """The manifest row of an item (voice, synthesizer, text, prosody ...)."""
        return dict(self.rows[index])


class KWSCorpus(_Corpus):
    """Keyword spotting: one-second clips, the word at a random offset, label index into ``KWS_LABELS``.

    ``augment=False`` gives the dry word centred in silence (for listening or clean baselines).
    """

    task = "kws"

    def __init__(self, root: str | Path, split: str, seed: int = 0, augment: bool = True) -> None:
        super().__init__(root, split, seed)
        self.augment = augment
        self.labels = [KWS_LABELS.index(r["label"]) for r in self.rows]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        rng = self.rng(index)
        label = self.labels[index]
        if self.rows[index]["label"] == SILENCE:
            wave = make_silence(rng, self.noise, CLIP_SAMPLES) if self.augment else np.zeros(CLIP_SAMPLES, np.float32)
        elif self.augment:
            wave = augment_speech(self.dry(index), rng, self.noise, KWS_AUGMENT, length=CLIP_SAMPLES)
        else:
            word = self.dry(index)[:CLIP_SAMPLES]
            wave = np.zeros(CLIP_SAMPLES, np.float32)
            start = (CLIP_SAMPLES - len(word)) // 2
            wave[start: start + len(word)] = word
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), label


class ASRCorpus(_Corpus):
    """Speech recognition: ``(waveform (L,), transcript)``; transcripts are already normalised to the
    CTC vocabulary. ``augment=False`` gives the dry utterance."""

    task = "asr"

    def __init__(self, root: str | Path, split: str, seed: int = 0, augment: bool = True) -> None:
        super().__init__(root, split, seed)
        self.augment = augment

    def transcript(self, index: int) -> str:
        """Item ``index``'s transcript, without reading audio."""
        return self.rows[index]["transcript"]

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        wave = self.dry(index)
        if self.augment:
            wave = augment_speech(wave, self.rng(index), self.noise, ASR_AUGMENT, pad_s=(0.0, 0.3))
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), self.rows[index]["transcript"]


class DenoiseCorpus(_Corpus):
    """Speech enhancement pairs ``(noisy (L,), clean (L,))``, SNR uniform over -5..20 dB.

    ``segment_seconds`` is rounded to a multiple of 256 samples; train items are random crops. With
    ``segment_seconds=None`` each item is the whole utterance padded to a multiple of 256 (lengths then
    differ, so use batch size 1 or your own collate). :meth:`pair_info` tells an item's SNR and noise kind.
    """

    task = "denoise"
    corpora = ("denoise", "asr")  # the recognizer's sentences serve as clean speech too

    def __init__(self, root: str | Path, split: str, seed: int = 0, segment_seconds: float | None = 2.0) -> None:
        super().__init__(root, split, seed)
        if segment_seconds is None:
            self.segment = None
        else:
            self.segment = max(1, round(segment_seconds * SAMPLE_RATE / FRAME_MULTIPLE)) * FRAME_MULTIPLE

    def _make(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        clean = self.dry(index)
        length = self.segment or -(-len(clean) // FRAME_MULTIPLE) * FRAME_MULTIPLE
        return denoise_pair(clean, self.rng(index), self.noise, length)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        noisy, clean, _ = self._make(index)
        return torch.from_numpy(noisy), torch.from_numpy(clean)

    def pair_info(self, index: int) -> dict:
        """The manifest row plus the ``snr`` (dB) and ``noise`` kind the item was mixed with."""
        return {**self.info(index), **self._make(index)[2]}


def asr_collate(batch: list[tuple[Tensor, str]]) -> tuple[Tensor, Tensor, list[str]]:
    """Zero-pad to the longest waveform: ``(waves (B, T), lengths (B,) int64, transcripts)``."""
    lengths = torch.tensor([len(w) for w, _ in batch], dtype=torch.int64)
    waves = torch.zeros(len(batch), int(lengths.max()) if len(batch) else 0)
    for i, (w, _) in enumerate(batch):
        waves[i, : len(w)] = w
    return waves, lengths, [t for _, t in batch]
