"""VoiceBank+DEMAND (Valentini et al.) read from its folder layout, for speech denoising.

Layout (as extracted from the DataShare archives; 48 kHz WAVs, one clean file per noisy file of the
same name)::

    <root>/clean_trainset_28spk_wav/p226_001.wav    <root>/noisy_trainset_28spk_wav/p226_001.wav
    <root>/clean_testset_wav/p232_001.wav           <root>/noisy_testset_wav/p232_001.wav

The 56-speaker and unnumbered train folders (``*_trainset_56spk_wav``, ``*_trainset_wav``) and
pre-resampled ``*_16k`` copies are accepted too. Audio is resampled to 16 kHz on load. Nothing is ever
downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .speech_commands import SAMPLE_RATE, load_mono

__all__ = ["SEGMENT_MULTIPLE", "VoiceBankDemand"]

# STFT-based denoisers hop by 256 at most; segments on that grid avoid ragged frames.
SEGMENT_MULTIPLE = 256

Split = Literal["train", "valid", "test"]
_SPLITS: tuple[str, ...] = ("train", "valid", "test")
_SET_DIRS: dict[str, tuple[str, ...]] = {
    "trainset": ("{kind}_trainset_28spk_wav", "{kind}_trainset_56spk_wav", "{kind}_trainset_wav"),
    "testset": ("{kind}_testset_wav",),
}


def _find_pair(root: Path, subset: str) -> tuple[Path, Path]:
    names = [n + suffix for n in _SET_DIRS[subset] for suffix in ("", "_16k")]
    for name in names:
        noisy, clean = root / name.format(kind="noisy"), root / name.format(kind="clean")
        if noisy.is_dir() and clean.is_dir():
            return noisy, clean
    expected = ", ".join(str(root / n.format(kind=k)) for n in names[:1] for k in ("noisy", "clean"))
    raise FileNotFoundError(
        f"VoiceBank+DEMAND {subset} not found under {root}: expected the folders {expected} "
        f"(or another of: {', '.join(n.format(kind='{noisy,clean}') for n in names[1:])})"
    )


class VoiceBankDemand(Dataset[tuple[Tensor, Tensor]]):
    """Pairs ``(noisy (L,), clean (L,))``, float32 at 16 kHz, aligned sample for sample.

    ``train`` and ``valid`` come from the train folders, ``valid`` being the utterances of
    ``valid_speakers`` (e.g. ``("p226", "p287")``) and ``train`` the rest; with no ``valid_speakers``
    ``train`` is the whole train set, as in most papers. ``test`` is the official test set.

    With ``segment_length`` (train only, a multiple of 256) every item is a random crop of that length,
    the same crop for noisy and clean, zero-padded when the utterance is shorter. The crop depends only on
    ``(seed, epoch, index)``: call :meth:`set_epoch` to draw new crops each epoch, reproducibly.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Split = "train",
        segment_length: int | None = None,
        seed: int = 0,
        valid_speakers: tuple[str, ...] = (),
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if segment_length is not None:
            if split != "train":
                raise ValueError("segment_length applies to the train split only; evaluation uses whole clips")
            if segment_length <= 0 or segment_length % SEGMENT_MULTIPLE:
                raise ValueError(
                    f"segment_length must be a positive multiple of {SEGMENT_MULTIPLE}, got {segment_length}"
                )
        if split == "valid" and not valid_speakers:
            raise ValueError("the valid split needs valid_speakers, e.g. ('p226', 'p287')")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VoiceBank+DEMAND root folder not found: {self.root}")
        self.split = split
        self.segment_length = segment_length
        self.seed = seed
        self.epoch = 0

        self.noisy_dir, self.clean_dir = _find_pair(self.root, "testset" if split == "test" else "trainset")
        names = sorted(p.name for p in self.noisy_dir.glob("*.wav"))
        if not names:
            raise FileNotFoundError(f"no utterances found: expected {self.noisy_dir}/*.wav")
        missing = [n for n in names if not (self.clean_dir / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"clean reference missing for {len(missing)} noisy files, e.g. {self.clean_dir / missing[0]}"
            )
        if split != "test" and valid_speakers:
            held_out = set(valid_speakers)
            names = [n for n in names if (n.split("_", 1)[0] in held_out) == (split == "valid")]
        self.names = names

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (train segments only)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        name = self.names[index]
        noisy = load_mono(self.noisy_dir / name, SAMPLE_RATE)
        clean = load_mono(self.clean_dir / name, SAMPLE_RATE)
        # Both files of a pair have the same length; guard against off-by-one from separate resampling.
        length = min(noisy.shape[0], clean.shape[0])
        noisy, clean = noisy[:length], clean[:length]
        if self.segment_length is None:
            return noisy, clean
        return self._segment(noisy, clean, index)

    def _segment(self, noisy: Tensor, clean: Tensor, index: int) -> tuple[Tensor, Tensor]:
        seg = self.segment_length
        assert seg is not None
        length = noisy.shape[0]
        if length <= seg:
            pad = (0, seg - length)
            return torch.nn.functional.pad(noisy, pad), torch.nn.functional.pad(clean, pad)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(0, length - seg + 1))
        return noisy[start : start + seg].contiguous(), clean[start : start + seg].contiguous()
