"""Google Speech Commands v2 read from the official archive's folder layout, for keyword spotting.

Layout (as extracted from ``speech_commands_v0.02.tar.gz``)::

    <root>/<word>/<speaker>_nohash_<n>.wav
    <root>/validation_list.txt
    <root>/testing_list.txt
    <root>/_background_noise_/*.wav

The official lists decide the split; ``train`` is every clip in neither list. Items are 1-second 16 kHz
clips labelled with an index into :data:`model_zoo.vocab.KWS_LABELS`. ``_silence_`` items are crops of the
background-noise recordings, drawn once at construction from a seeded generator, so a split always holds
the same silence clips. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchaudio
import torchaudio.functional as AF
from torch import Tensor
from torch.utils.data import Dataset

from model_zoo.samples import fit_length
from model_zoo.vocab import KWS_LABELS, SILENCE, SPEECH_COMMANDS_WORDS, UNKNOWN

__all__ = [
    "SAMPLE_RATE",
    "CLIP_SAMPLES",
    "NOISE_DIR",
    "VALID_LIST",
    "TEST_LIST",
    "SpeechCommands",
    "load_mono",
]

SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE
NOISE_DIR = "_background_noise_"
VALID_LIST = "validation_list.txt"
TEST_LIST = "testing_list.txt"

Split = Literal["train", "valid", "test"]
_SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Each noise recording is cut into disjoint time regions, one per split, so that no stretch of noise
# heard as training silence reappears as test silence.
_NOISE_REGIONS: dict[str, tuple[float, float]] = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}
_WORD_INDEX: dict[str, int] = {word: KWS_LABELS.index(word) for word in SPEECH_COMMANDS_WORDS}


def load_mono(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> Tensor:
    """Decode an audio file to a mono float32 waveform ``(L,)`` at ``sample_rate``.

    Channels are averaged; any other rate is resampled with :func:`torchaudio.functional.resample`.
    """
    waveform, file_rate = torchaudio.load(os.fspath(path))
    waveform = waveform.to(torch.float32).mean(dim=0)
    if file_rate != sample_rate:
        waveform = AF.resample(waveform, file_rate, sample_rate)
    return waveform.contiguous()


def _resolve_root(root: Path) -> Path:
    # Also accept the parent folders that torchaudio's SPEECHCOMMANDS and the bare archive name use.
    candidates = (root, root / "SpeechCommands" / "speech_commands_v0.02", root / "speech_commands_v0.02")
    for candidate in candidates:
        if (candidate / VALID_LIST).is_file() and (candidate / TEST_LIST).is_file():
            return candidate
    raise FileNotFoundError(
        f"Speech Commands v2 not found under {root}: expected the files {root / VALID_LIST} and "
        f"{root / TEST_LIST} next to the word folders (<root>/<word>/<speaker>_nohash_<n>.wav)"
    )


def _read_list(path: Path) -> set[str]:
    with open(path, encoding="utf-8") as handle:
        return {line.strip().replace("\\", "/") for line in handle if line.strip()}


def _word_label(word: str) -> int:
    # Word folders outside the 35 (none in v2, several in v1) all become the unknown class.
    return _WORD_INDEX.get(word, KWS_LABELS.index(UNKNOWN))


class SpeechCommands(Dataset[tuple[Tensor, int]]):
    """One split of Speech Commands v2 as ``(waveform (16000,) float32, label index into KWS_LABELS)``.

    Word clips come first, sorted by relative path, then ``round(silence_fraction * n_word_clips)``
    silence crops. ``labels`` gives every item's class without decoding audio (for samplers).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Split = "train",
        silence_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if silence_fraction < 0:
            raise ValueError(f"silence_fraction must be >= 0, got {silence_fraction}")
        self.root = _resolve_root(Path(root))
        self.split = split

        word_dirs = sorted(
            d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
        )
        all_files = sorted(p.relative_to(self.root).as_posix() for d in word_dirs for p in d.glob("*.wav"))
        if not all_files:
            raise FileNotFoundError(f"no word clips found: expected {self.root}/<word>/*.wav")
        valid = _read_list(self.root / VALID_LIST)
        test = _read_list(self.root / TEST_LIST)
        if split == "valid":
            self.files = [f for f in all_files if f in valid]
        elif split == "test":
            self.files = [f for f in all_files if f in test]
        else:
            self.files = [f for f in all_files if f not in valid and f not in test]
        self._file_labels = [_word_label(f.split("/", 1)[0]) for f in self.files]

        n_silence = int(round(silence_fraction * len(self.files)))
        self._noise: list[Tensor] = []
        self._silence_crops: list[tuple[int, int]] = []
        if n_silence > 0:
            self._noise = self._load_noise()
            self._silence_crops = self._draw_silence_crops(n_silence, seed)

    def _load_noise(self) -> list[Tensor]:
        noise_dir = self.root / NOISE_DIR
        paths = sorted(noise_dir.glob("*.wav")) if noise_dir.is_dir() else []
        if not paths:
            raise FileNotFoundError(
                f"no background noise found: expected {noise_dir}/*.wav (or pass silence_fraction=0)"
            )
        return [load_mono(p) for p in paths]

    def _draw_silence_crops(self, count: int, seed: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([seed, _SPLITS.index(self.split)])
        lo_frac, hi_frac = _NOISE_REGIONS[self.split]
        crops = []
        for _ in range(count):
            index = int(rng.integers(len(self._noise)))
            length = self._noise[index].shape[0]
            lo, hi = int(lo_frac * length), int(hi_frac * length) - CLIP_SAMPLES
            if hi < lo:  # region shorter than a clip: one crop as close to the region as the file allows
                lo = hi = max(0, min(lo, length - CLIP_SAMPLES))
            crops.append((index, int(rng.integers(lo, hi + 1))))
        return crops

    @property
    def labels(self) -> list[int]:
        """Class index of every item, in item order."""
        return self._file_labels + [KWS_LABELS.index(SILENCE)] * len(self._silence_crops)

    def __len__(self) -> int:
        return len(self.files) + len(self._silence_crops)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if index < len(self.files):
            waveform = load_mono(self.root / self.files[index])
            return fit_length(waveform, CLIP_SAMPLES), self._file_labels[index]
        noise_index, start = self._silence_crops[index - len(self.files)]
        crop = self._noise[noise_index][start : start + CLIP_SAMPLES]
        return fit_length(crop.clone(), CLIP_SAMPLES), KWS_LABELS.index(SILENCE)
