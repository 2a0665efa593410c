"""Background noise cut from real recordings: five recorded kinds (:data:`REAL_NOISE_TYPES`) taken from
freely licensed recordings that Debian game data packages install (``megaglest-data``: nature ambience,
rain and wind, music; ``lincity-ng-data``: street and crowd, machines, music; see ``SOURCES.md``), listed in
:data:`REAL_SOURCES`. Their source files are split once, by file (:func:`real_split`): about a quarter of
each kind's recordings, together with every file that shares content or a recording name with them, feed
only the ``eval`` bank, so valid and test hear recordings never trained on. :func:`decode` reads any audio
file with ffmpeg and :func:`recorded_clip` joins stretches of a kind's recordings into one clip.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..tts import SAMPLE_RATE

__all__ = [
    "REAL_NOISE_TYPES",
    "REAL_SOURCES",
    "RealSource",
    "real_available",
    "real_files",
    "real_split",
    "decode",
    "recorded_clip",
]

REAL_NOISE_TYPES: tuple[str, ...] = ("rec_nature", "rec_weather", "rec_street", "rec_machines", "rec_music")
_SR = SAMPLE_RATE

_MEGAGLEST = "/usr/share/games/megaglest"
_LINCITY = "/usr/share/games/lincity-ng"


@dataclass(frozen=True)
class RealSource:
    """Recordings of one kind that a Debian package installs: ``patterns`` are globs under ``root``."""

    kind: str
    package: str
    root: str
    patterns: tuple[str, ...]


REAL_SOURCES: tuple[RealSource, ...] = (
    # Birds, insects and wind in the trees by day, crickets and owls by night (tileset ambience loops).
    RealSource("rec_nature", "megaglest-data", _MEGAGLEST,
               ("tilesets/*/sounds/day.ogg", "tilesets/*/sounds/sunny_day.ogg", "tilesets/*/sounds/desertday.ogg",
                "tilesets/*/sounds/night.ogg", "tilesets/*/sounds/nightime.ogg")),
    RealSource("rec_weather", "megaglest-data", _MEGAGLEST,
               ("tilesets/*/sounds/rain.ogg", "tilesets/*/sounds/rain.wav", "tilesets/*/sounds/wind.ogg")),
    # Road traffic, trains, markets, a stadium crowd, a harbour.
    RealSource("rec_street", "lincity-ng-data", _LINCITY,
               tuple(f"sounds/{n}*.wav" for n in ("TraficHigh", "TraficLow", "RailTrain", "DirtTrack", "Market",
                                                  "SportsCroud", "Harbor"))),
    # Factories, mines, a power station, windmills, a smithy, a pottery, recycling, a tip, water works.
    RealSource("rec_machines", "lincity-ng-data", _LINCITY,
               tuple(f"sounds/{n}*.wav" for n in ("IndustryHigh", "IndustryLight", "CoalMine", "OreMine", "PowerCoal",
                                                  "WindMill", "Mill", "Blacksmith", "Pottery", "Recycle", "Tip",
                                                  "Water", "Substation")) + ("sounds/PowerLine.wav",)),
    RealSource("rec_music", "megaglest-data", _MEGAGLEST,
               ("data/core/menu/music/*.ogg", "techs/megapack/factions/*/music/*.ogg")),
    RealSource("rec_music", "lincity-ng-data", _LINCITY, ("music/default/*.ogg",)),
)
REAL_HELDOUT_FRACTION = 0.25
_MIN_SOURCE_S = 1.0  # shorter recordings (one-shot effects) are not used
_FADE = _SR // 50  # 20 ms cross-fade between the stretches a recorded clip is joined from


def real_available() -> dict[str, bool]:
    """Whether each Debian package of :data:`REAL_SOURCES` is installed (its data directory exists)."""
    return {s.package: Path(s.root).is_dir() for s in REAL_SOURCES}


def real_files(kind: str) -> list[Path]:
    """The recordings of ``kind`` on this machine, sorted, without duplicates: several megaglest tilesets
    share one file, byte for byte or re-encoded (same name, same length to 0.1 s)."""
    seen: dict[object, Path] = {}
    for source in REAL_SOURCES:
        if source.kind != kind:
            continue
        for pattern in source.patterns:
            for path in sorted(Path(source.root).glob(pattern)):
                if _file_digest(path) in seen:
                    continue
                twin = (path.stem.lower(), round(_duration(path), 1))
                if twin not in seen:
                    seen[twin] = seen[_file_digest(path)] = path
    return sorted(set(seen.values()))


@functools.lru_cache(maxsize=None)
def _file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _family(path: Path) -> str:
    """Recordings named alike (``TraficHigh1.wav``, ``TraficHigh2.wav``) are likely cut from one take,
    so they go to the same side of the split."""
    stem = re.sub(r"[\d_\-]+$", "", path.stem).lower()
    return f"{path.parent}/{stem}"


def real_split(kind: str) -> dict[str, list[Path]]:
    """``{"train": [...], "eval": [...]}``: the recordings of ``kind`` split by source, independent of the
    seed. Families of like-named files are ordered by a hash of their name and the first ones, about
    :data:`REAL_HELDOUT_FRACTION` of the files (at least one family when there are two or more), are
    held out for the eval bank."""
    files = [p for p in real_files(kind) if _duration(p) >= _MIN_SOURCE_S]
    families: dict[str, list[Path]] = {}
    for path in files:
        families.setdefault(_family(path), []).append(path)
    order = sorted(families, key=lambda f: hashlib.sha1(f"{kind}:{Path(f).parent.name}/{Path(f).name}".encode()).hexdigest())
    held: list[Path] = []
    for family in order:
        if len(families) < 2 or len(held) >= REAL_HELDOUT_FRACTION * len(files) or family == order[-1]:
            break
        held += families[family]
    return {"train": [p for p in files if p not in held], "eval": held}


@functools.lru_cache(maxsize=None)
def _duration(path: Path) -> float:
    """Seconds of audio, read from the file header (WAV) or the last page's granule position (Ogg
    Vorbis), so the split needs no decoding; other files are decoded."""
    try:
        if path.suffix.lower() == ".wav":
            with wave.open(str(path), "rb") as handle:
                return handle.getnframes() / handle.getframerate()
        if path.suffix.lower() == ".ogg":
            with open(path, "rb") as handle:
                head = handle.read(64)
                handle.seek(max(0, path.stat().st_size - 65536))
                tail = handle.read()
            if head[28:35] == b"\x01vorbis":
                rate = int.from_bytes(head[40:44], "little")
                last = tail.rindex(b"OggS")
                return int.from_bytes(tail[last + 6: last + 14], "little") / rate
    except (OSError, ValueError, wave.Error):
        pass
    return len(decode(path)) / _SR


@functools.lru_cache(maxsize=256)
def decode(path: str | Path) -> np.ndarray:
    """Any audio file -> 16 kHz mono float32, decoded and resampled by ffmpeg (channels averaged)."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is needed to decode recorded noise and measured RIRs (apt-get install ffmpeg)")
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(_SR),
                           "-f", "f32le", "-"], capture_output=True, check=True)
    out = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    out.setflags(write=False)
    return out


def recorded_clip(rng: np.random.Generator, files: Sequence[Path], first: int, seconds: float) -> np.ndarray:
    """``seconds`` of one recorded kind: stretches of its recordings from random offsets, starting with
    ``files[first]`` then drawn at random, joined with short cross-fades; peak-normalised to 0.9."""
    n = int(seconds * _SR)
    out = np.zeros(0)
    index = first
    while len(out) < n:
        audio = decode(files[index]).astype(np.float64)
        want = n - len(out) + (_FADE if len(out) else 0)
        take = min(want, len(audio))
        level = np.sqrt(np.mean(audio**2)) + 1e-9
        for _ in range(5):  # skip a stretch that is nearly silent (a fade-in, a pause in the music)
            start = int(rng.integers(0, len(audio) - take + 1))
            piece = audio[start: start + take]
            if np.sqrt(np.mean(piece**2)) > 0.1 * level:
                break
        if len(out):
            ramp = np.linspace(0.0, 1.0, _FADE)
            piece = piece.copy()
            piece[:_FADE] *= ramp
            out[-_FADE:] *= 1.0 - ramp
            out = np.concatenate([out[:-_FADE], out[-_FADE:] + piece[:_FADE], piece[_FADE:]])
        else:
            out = piece
        index = int(rng.integers(len(files)))
    out = out[:n]
    return (0.9 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)
