"""Seeded augmentation: speed perturbation, room reverberation (simulated shoebox rooms and measured
responses), noise at a chosen SNR, gain and placement, plus the three task pipelines that :mod:`.dataset` applies to the dry utterances.

Every function takes its randomness from an explicit :class:`numpy.random.Generator`, so an item is a pure
function of (seed, epoch, index). SNR is measured against the *active* speech (10 ms frames within 40 dB
of the loudest), not the whole clip, so a short word in a second of noise gets the SNR it was asked for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from .noise import NoiseBank
from .tts import SAMPLE_RATE

__all__ = [
    "AugmentConfig",
    "KWS_AUGMENT",
    "ASR_AUGMENT",
    "rms",
    "active_rms",
    "snr_db",
    "speed_perturb",
    "synthetic_rir",
    "pick_rir",
    "reverberate",
    "mix_at_snr",
    "set_level",
    "place",
    "augment_speech",
    "make_silence",
    "denoise_pair",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of one task's speech augmentation (dB levels are RMS re full scale)."""

    p_speed: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    p_reverb: float = 0.3
    rt60: tuple[float, float] = (0.15, 0.9)
    p_measured: float = 0.3  # of the reverberated items, the share given a measured room (noise.measured_rirs)
    p_noise: float = 0.8
    snr: tuple[float, float] = (0.0, 25.0)
    level_db: tuple[float, float] = (-35.0, -15.0)


KWS_AUGMENT = AugmentConfig()
ASR_AUGMENT = AugmentConfig(p_noise=0.7, snr=(5.0, 30.0))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def active_rms(x: np.ndarray, floor_db: float = 40.0) -> float:
    """RMS over the 10 ms frames within ``floor_db`` of the loudest frame (the speech, not the pauses)."""
    frame = SAMPLE_RATE // 100
    n = len(x) // frame
    if n == 0:
        return rms(x)
    energy = np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    loud = energy[energy >= energy.max() * 10 ** (-floor_db / 10)]
    return float(np.sqrt(loud.mean())) if loud.size else 0.0


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    """Whole-signal SNR in dB, the definition :func:`denoise_pair` mixes to."""
    return float(10 * np.log10(np.sum(np.square(clean, dtype=np.float64)) / np.sum(np.square(noise, dtype=np.float64))))


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch moves too, like tape). The target rate is rounded to a
    multiple of 160 Hz so the resampling ratio reduces to small integers and stays cheap."""
    new_rate = max(160, int(round(SAMPLE_RATE / factor / 160)) * 160)
    if new_rate == SAMPLE_RATE:
        return x
    return AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), SAMPLE_RATE, new_rate).numpy()


def _shoebox_early(rng: np.random.Generator, rt60: float) -> tuple[np.ndarray, float] | None:
    """Early part of a shoebox room by the image-source method (pyroomacoustics): random dimensions,
    source and microphone at least 0.5 m from the walls, wall absorption from Sabine's formula for
    ``rt60``, reflections up to order 6. Returns (response from the direct path on, direct path = 1; the
    time in s after which the image sources thin out), or None without pyroomacoustics."""
    try:
        import pyroomacoustics as pra
    except ImportError:
        global _WARNED_NO_PRA
        if not _WARNED_NO_PRA:
            warnings.warn("pyroomacoustics is not installed: rooms fall back to the noise-tail model", stacklevel=3)
            _WARNED_NO_PRA = True
        return None
    dims = np.array([rng.uniform(3.0, 12.0), rng.uniform(2.5, 9.0), rng.uniform(2.4, 4.5)])
    for _ in range(6):  # a short RT60 in a large room needs absorption above 1: shrink the room
        try:
            absorption, order = pra.inverse_sabine(rt60, dims.tolist())
            break
        except ValueError:
            dims = np.maximum(dims * 0.75, [2.0, 2.0, 2.2])
    else:
        return None
    source, mic = (rng.uniform(0.5, dims - 0.5) for _ in range(2))
    room = pra.ShoeBox(dims.tolist(), fs=SAMPLE_RATE, materials=pra.Material(float(absorption)),
                       max_order=int(min(order, 6)))
    room.add_source(source.tolist())
    room.add_microphone(mic.tolist())
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(h)))  # no wall touches the direct path, so it is the strongest arrival
    h = h[direct:] / h[direct]
    return h, min(6, order) * float(dims.min()) / 343.0


_WARNED_NO_PRA = False


def synthetic_rir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A room impulse response, direct path first and equal to 1: the early reflections of a random
    shoebox room (image sources, :func:`_shoebox_early`), handing over to exponentially decaying noise
    that reaches -60 dB at ``rt60`` seconds, low-passed a little as real wall absorption does. Without
    pyroomacoustics the early part is a few random reflections instead."""
    n = int(min(rt60 * 1.2, 1.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail = np.convolve(tail, np.ones(3) / 3, mode="same")
    early = _shoebox_early(rng, rt60)
    if early is not None:
        h, t_mix = early
        mix = int(np.clip(t_mix * SAMPLE_RATE, SAMPLE_RATE // 100, min(len(h), n) - 1))
        window = slice(max(1, mix - SAMPLE_RATE // 50), mix)  # match the tail to the early energy there
        tail *= rms(h[window]) / (rms(tail[window]) + 1e-12)
        ramp = np.clip((np.arange(n) - mix / 2) / (mix / 2), 0.0, 1.0)  # cross-fade over [mix/2, mix]
        early_part = np.zeros(n)
        early_part[: min(len(h), n)] = h[:n]
        rir = early_part * (1.0 - ramp) + tail * ramp
        rir[0] = 1.0
        return rir
    onset = int(rng.uniform(0.002, 0.02) * SAMPLE_RATE)  # the diffuse tail starts after the direct sound
    tail[:onset] = 0.0
    rir = tail * rng.uniform(0.2, 0.6) / (np.sqrt(np.sum(tail**2)) + 1e-9)
    for delay in rng.uniform(0.002, 0.03, int(rng.integers(2, 6))):
        rir[int(delay * SAMPLE_RATE)] += rng.uniform(-0.5, 0.5)
    rir[0] = 1.0
    return rir


def pick_rir(rng: np.random.Generator, bank: NoiseBank, cfg: AugmentConfig) -> np.ndarray:
    """The room of one item: a measured response of the bank (``cfg.p_measured`` of the time, when the
    bank has any; train and eval banks hold different ones), else a :func:`synthetic_rir` of random RT60."""
    measured = getattr(bank, "rirs", None) or []
    if measured and rng.random() < cfg.p_measured:
        return measured[int(rng.integers(len(measured)))]
    return synthetic_rir(rng, float(rng.uniform(*cfg.rt60)))


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``rir`` (by FFT), cut to the length of ``x``, RMS kept."""
    n = len(x) + len(rir) - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(rir, size), size)[: len(x)]
    return (wet * (rms(x) / (rms(wet) + 1e-12))).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``speech + noise`` with the noise scaled so active-speech RMS / noise RMS is ``snr`` dB."""
    gain = active_rms(speech) / (rms(noise) * 10 ** (snr / 20) + 1e-12)
    return (speech + gain * noise).astype(np.float32)


def set_level(x: np.ndarray, level_db: float, peak: float = 0.99) -> np.ndarray:
    """Scale to RMS ``level_db`` dBFS, then down if a sample would clip."""
    gain = 10 ** (level_db / 20) / (rms(x) + 1e-12)
    gain = min(gain, peak / (float(np.abs(x).max()) + 1e-12))
    return (x * gain).astype(np.float32)


def place(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` at a random offset in ``length`` zeros; a longer ``x`` is cropped at a random start."""
    if len(x) >= length:
        start = int(rng.integers(0, len(x) - length + 1))
        return x[start: start + length].astype(np.float32)
    out = np.zeros(length, dtype=np.float32)
    start = int(rng.integers(0, length - len(x) + 1))
    out[start: start + len(x)] = x
    return out


def augment_speech(
    speech: np.ndarray,
    rng: np.random.Generator,
    bank: NoiseBank,
    cfg: AugmentConfig,
    length: int | None = None,
    pad_s: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Speed, reverberation, placement (fixed ``length``, or random silence of ``pad_s`` seconds on
    both sides), background noise, level: the KWS and ASR pipeline."""
    x = speech.astype(np.float32)
    if rng.random() < cfg.p_speed:
        x = speed_perturb(x, float(rng.uniform(*cfg.speed)))
    if rng.random() < cfg.p_reverb:
        rir = pick_rir(rng, bank, cfg)
        # Append the reverb tail before cutting, so the room rings on after the last word.
        dry_len = len(x)
        x = reverberate(np.concatenate([x, np.zeros(len(rir) // 2, np.float32)]), rir)
        if length is not None:  # the tail must not push the word itself out of a fixed-length clip
            x = x[: max(length, dry_len)]
    if length is not None:
        x = place(x, length, rng)
    else:
        lead, trail = (int(rng.uniform(*pad_s) * SAMPLE_RATE) for _ in range(2))
        x = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(trail, np.float32)])
    if rng.random() < cfg.p_noise:
        noise, _ = bank.sample(rng, len(x))
        x = mix_at_snr(x, noise, float(rng.uniform(*cfg.snr)))
    return set_level(x, float(rng.uniform(*cfg.level_db)))


def make_silence(rng: np.random.Generator, bank: NoiseBank, length: int) -> np.ndarray:
    """A ``_silence_`` clip: background noise alone at -70..-20 dBFS, sometimes near-digital silence."""
    if rng.random() < 0.1:
        return (rng.standard_normal(length) * 10 ** (rng.uniform(-90, -70) / 20)).astype(np.float32)
    noise, _ = bank.sample(rng, length)
    return set_level(noise, float(rng.uniform(-70.0, -20.0)))


def denoise_pair(
    clean: np.ndarray,
    rng: np.random.Generator,
    bank: NoiseBank,
    length: int,
    snr: tuple[float, float] = (-5.0, 20.0),
    level_db: tuple[float, float] = (-35.0, -15.0),
    kind: str | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float | str]]:
    """(noisy, clean, info) of ``length`` samples: a random crop of ``clean`` (or ``clean`` placed in
    silence if shorter), noise mixed at a uniform SNR over the whole segment (so
    ``snr_db(clean, noisy - clean)`` is exactly ``info["snr"]`` up to float rounding), the same gain on
    both. Speed perturbation applies to the clean target too, so the pair stays aligned."""
    x = clean.astype(np.float32)
    if rng.random() < 0.3:
        x = speed_perturb(x, float(rng.uniform(0.9, 1.1)))
    x = place(x, length, rng)
    if rms(x) < 1e-4:  # the crop caught only a pause: centre the window on the loudest sample instead
        start = int(np.clip(np.argmax(np.abs(clean)) - length // 2, 0, max(0, len(clean) - length)))
        x = np.zeros(length, np.float32)
        x[: len(clean[start: start + length])] = clean[start: start + length]
    noise, noise_kind = bank.sample(rng, length, kind)
    target = float(rng.uniform(*snr))
    scale = np.sqrt(np.sum(np.square(x, dtype=np.float64)) / (np.sum(np.square(noise, dtype=np.float64)) * 10 ** (target / 10) + 1e-20))
    noisy = x + (scale * noise).astype(np.float32)
    level = 10 ** (float(rng.uniform(*level_db)) / 20) / (rms(noisy) + 1e-12)
    gain = min(level, 0.99 / (float(np.abs(noisy).max()) + 1e-12))
    return (noisy * gain).astype(np.float32), (x * gain).astype(np.float32), {"snr": target, "noise": noise_kind}
