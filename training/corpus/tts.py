"""Speech from the Debian synthesizers, called as subprocesses and brought to 16 kHz mono float32.

Every engine writes a WAV into a private temporary folder; the audio is read back with :mod:`wave`
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

from .voices import SYNTHESIZERS, Prosody, Voice

__all__ = [
    "APT_PACKAGES",
    "SAMPLE_RATE",
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
    """The synthesizers whose programs (and, for festival, every voice) are installed."""
    found = []
    for synth in SYNTHESIZERS:
        if shutil.which(synth) is None:
            continue
        if synth == "festival" and not all(Path(d).is_dir() for d in _FESTIVAL_VOICE_DIRS.values()):
            continue
        found.append(synth)
    return tuple(found)


def missing_packages_hint() -> str:
    return "install them with: apt-get install " + " ".join(APT_PACKAGES)


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


def synthesize_batch(jobs: list[SynthJob], tmp: Path) -> list[tuple[np.ndarray | None, Prosody]]:
    """(audio, prosody actually used) per job, in order; audio is ``None`` where the engine failed or
    the speech stayed too long."""
    results: list[tuple[np.ndarray | None, Prosody]] = [(None, job.prosody) for job in jobs]
    pending = [(i, job, job.prosody) for i, job in enumerate(jobs)]
    for attempt in range(1 + max((j.retry_faster for j in jobs), default=0)):
        festival = [p for p in pending if p[1].voice.synth == "festival"]
        done = _run_festival(festival, tmp) if festival else {}
        for i, job, prosody in pending:
            if job.voice.synth != "festival":
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
