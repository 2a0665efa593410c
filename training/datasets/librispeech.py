"""LibriSpeech read from its extracted folder layout through torchaudio, for speech recognition.

Layout::

    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

Transcripts go through :func:`model_zoo.vocab.normalize_transcript` so they match the CTC vocabulary.
Nothing is ever downloaded (``download=False``).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset
from torchaudio.datasets import LIBRISPEECH

from model_zoo.vocab import normalize_transcript

__all__ = ["SUBSETS", "LibriSpeech"]

SUBSETS: tuple[str, ...] = (
    "dev-clean", "dev-other", "test-clean", "test-other",
    "train-clean-100", "train-clean-360", "train-other-500",
)
_FOLDER = "LibriSpeech"


class LibriSpeech(Dataset[tuple[Tensor, str]]):
    """One or more LibriSpeech subsets as ``(waveform (L,) float32 at 16 kHz, normalised transcript)``.

    ``subsets`` may be one name or several (e.g. the three train subsets for the 960 h set), which are
    concatenated in the given order. ``root`` is the folder that holds ``LibriSpeech/``; the
    ``LibriSpeech`` folder itself is accepted too.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        subsets: str | Sequence[str] = "train-clean-100",
        folder_in_archive: str = _FOLDER,
    ) -> None:
        names = (subsets,) if isinstance(subsets, str) else tuple(subsets)
        if not names:
            raise ValueError("subsets is empty")
        for name in names:
            if name not in SUBSETS:
                raise ValueError(f"unknown LibriSpeech subset {name!r}; expected one of {SUBSETS}")
        root = Path(root)
        if root.name == folder_in_archive and not (root / folder_in_archive).is_dir():
            root = root.parent
        self.root = root
        self.subsets = names
        self._parts: list[LIBRISPEECH] = []
        for name in names:
            path = root / folder_in_archive / name
            # torchaudio reports a missing folder as a RuntimeError suggesting a download; say what is expected.
            if not path.is_dir():
                raise FileNotFoundError(
                    f"LibriSpeech subset {name!r} not found: expected the folder {path} "
                    "(<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac with a .trans.txt per chapter)"
                )
            part = LIBRISPEECH(root, url=name, folder_in_archive=folder_in_archive, download=False)
            if len(part) == 0:
                raise FileNotFoundError(f"no utterances found: expected {path}/<speaker>/<chapter>/*.flac")
            self._parts.append(part)
        self._ends: list[int] = []
        total = 0
        for part in self._parts:
            total += len(part)
            self._ends.append(total)

    def __len__(self) -> int:
        return self._ends[-1]

    def _locate(self, index: int) -> tuple[LIBRISPEECH, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        part = bisect.bisect_right(self._ends, index)
        start = self._ends[part - 1] if part else 0
        return self._parts[part], index - start

    def utterance_id(self, index: int) -> str:
        """``<speaker>-<chapter>-<utt>`` of item ``index``, without decoding audio."""
        part, local = self._locate(index)
        _, _, _, speaker, chapter, utterance = part.get_metadata(local)
        return f"{speaker}-{chapter}-{utterance:04d}"

    def transcript(self, index: int) -> str:
        """Normalised transcript of item ``index``, without decoding audio."""
        part, local = self._locate(index)
        return normalize_transcript(part.get_metadata(local)[2])

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        part, local = self._locate(index)
        # torchaudio checks the file's rate against LibriSpeech's 16 kHz and raises on a mismatch.
        waveform, _, transcript, *_ = part[local]
        return waveform.mean(dim=0).contiguous(), normalize_transcript(transcript)
