"""Background noise generated from a seed: ten synthetic kinds (:data:`GENERATORS`: ``white``, ``pink``,
``brown``, ``band`` (random band-pass), ``hum`` (mains with harmonics), ``fan``, ``engine``, ``rain``,
``clicks``, ``tones`` (music-like notes and chords)), each drawn by :func:`generate` from a
``numpy.random.Generator``, and ``babble`` (several synthesized talkers at once, :func:`babble`), which
mixes utterances it is given. The same generator state always gives the same samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..tts import SAMPLE_RATE

__all__ = ["GENERATORS", "generate", "babble"]

_SR = SAMPLE_RATE


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
