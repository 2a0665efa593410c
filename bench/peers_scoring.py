"""The peer benchmark's scoring: real-time factor, denoiser alignment, WER/CER, keyword classes, the verdict.

Part of ``bench/peers.py`` (which re-exports every name here). Everyone is scored by ``training.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from peers_catalog import NOISY, OUR_SYSTEMS, OURS, UNRECORDED, Clip, SystemRun

SNR_BINS = ((-5.0, 0.0), (0.0, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, 20.0))
MAX_DELAY = 2048


def real_time_factor(run: SystemRun, clips: Sequence[Clip]) -> float:
    """CPU seconds per second of audio over all clips."""
    return sum(run.cpu_seconds[c.id] for c in clips) / sum(c.seconds for c in clips)


def estimate_delay(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray], max_lag: int = MAX_DELAY) -> int:
    """The one lag in ``0..max_lag`` samples by which the outputs trail the references, from the
    cross-correlation summed over all clips (normalised per clip, so loud clips do not dominate)."""
    total = np.zeros(max_lag + 1)
    for out, ref in zip(outputs, references):
        n = min(len(out), len(ref))
        size = 1 << (2 * n - 1).bit_length()
        corr = np.fft.irfft(np.fft.rfft(out[:n], size) * np.conj(np.fft.rfft(ref[:n], size)), size)
        norm = np.linalg.norm(out[:n]) * np.linalg.norm(ref[:n]) + 1e-12
        lags = corr[: min(max_lag + 1, n)] / norm  # corr[k] = sum_t out[t + k] ref[t]
        total[: len(lags)] += lags
    return int(np.argmax(total))


def remove_delay(signal: np.ndarray, delay: int) -> np.ndarray:
    """Advance ``signal`` by ``delay`` samples, zero-filling the end so the length stays."""
    return np.concatenate([signal[delay:], np.zeros(min(delay, len(signal)), signal.dtype)]) if delay else signal


def snr_bin(snr: float | None) -> str:
    """The input-SNR band of a clip; ``unrecorded`` where its set does not say the SNR."""
    if snr is None:
        return UNRECORDED
    for low, high in SNR_BINS:
        if low <= snr < high or (high == SNR_BINS[-1][1] and snr == high):
            return f"{low:+.0f}..{high:+.0f} dB"
    return "other"


def score_denoise(clips: Sequence[Clip], runs: Sequence[SystemRun], noisy: Callable[[Clip], np.ndarray]) -> dict:
    """Per system: delay removed, then SI-SNR gain, wideband PESQ and STOI (``training.metrics``) overall, per
    noise kind and per input-SNR band, and RTF. The unprocessed input is scored as a row of its own."""
    import torch

    from training.metrics import pesq_wb, si_snr, stoi

    systems: dict[str, dict] = {}
    inputs = {c.id: noisy(c) for c in clips}
    for run in [SystemRun(NOISY, outputs=dict(inputs))] + list(runs):
        outputs = [np.asarray(run.outputs[c.id], np.float32) for c in clips]
        delay = estimate_delay(outputs, [c.clean for c in clips]) if run.name != NOISY else 0
        per_clip = []
        for clip, out in zip(clips, outputs):
            out = remove_delay(out, delay)
            est, ref, mix = (torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (out, clip.clean, inputs[clip.id]))
            per_clip.append({"si_snr_gain": float(si_snr(est, ref) - si_snr(mix, ref)), "pesq": pesq_wb(est, ref),
                             "stoi": stoi(est, ref), "noise": clip.noise, "snr_band": snr_bin(clip.snr)})
        entry = {"delay_samples": delay, "overall": aggregate(per_clip), "by_noise": {}, "by_snr": {},
                 "rtf": real_time_factor(run, clips) if run.cpu_seconds else None,
                 "load_seconds": run.load_seconds, "notes": run.notes}
        for key, group in (("noise", "by_noise"), ("snr_band", "by_snr")):
            for value in sorted({p[key] for p in per_clip}, key=band_order):
                entry[group][value] = aggregate([p for p in per_clip if p[key] == value])
        systems[run.name] = entry
    return {"clips": len(clips), "audio_seconds": sum(c.seconds for c in clips), "systems": systems}


def band_order(value: str) -> tuple:
    """SNR bands by their lower edge, noise kinds alphabetically."""
    try:
        return (0, float(value.split("..")[0]))
    except ValueError:
        return (1, value)


def aggregate(per_clip: Sequence[dict]) -> dict:
    """Means of the clip scores (PESQ and STOI over the clips they could score, as ``DenoiseMetrics``)."""
    result = {"count": len(per_clip)}
    for name in ("si_snr_gain", "pesq", "stoi"):
        values = [p[name] for p in per_clip if not math.isnan(p[name])]
        result[name] = float(np.mean(values)) if values else math.nan
    return result


def score_asr(clips: Sequence[Clip], runs: Sequence[SystemRun]) -> dict:
    """Corpus WER and CER (``ASRMetrics``) of the normalised hypotheses, and RTF."""
    from model_zoo.vocab import normalize_transcript
    from training.metrics import ASRMetrics

    systems = {}
    for run in runs:
        metrics = ASRMetrics()
        metrics.update([c.transcript for c in clips], [normalize_transcript(str(run.outputs[c.id])) for c in clips])
        scores = metrics.compute()
        systems[run.name] = {"wer": scores["wer"], "cer": scores["cer"], "rtf": real_time_factor(run, clips),
                             "load_seconds": run.load_seconds, "notes": run.notes,
                             # Numerals are not spelled out by the normalisation: a "1" for "one" costs a word.
                             "hypotheses_with_digits": sum(any(ch.isdigit() for ch in str(run.outputs[c.id])) for c in clips),
                             "examples": [{"reference": c.transcript, "hypothesis": normalize_transcript(str(run.outputs[c.id]))}
                                          for c in clips[:3]]}
    return {"clips": len(clips), "audio_seconds": sum(c.seconds for c in clips), "words": scores["words"] if runs else 0,
            "systems": systems}


def kws_label(hypothesis: str, keywords: Sequence[str]) -> str:
    """pocketsphinx's one-word hypothesis -> a class: a keyword is itself, a garbage word ``_unknown_``, nothing
    recognised ``_silence_``. Labels that are already classes (our network's) pass through."""
    from model_zoo.vocab import KWS_LABELS, SILENCE, UNKNOWN

    word = hypothesis.strip().lower()
    if word in KWS_LABELS:
        return word
    if not word:
        return SILENCE
    return word if word in keywords else UNKNOWN


def score_kws(clips: Sequence[Clip], runs: Sequence[SystemRun]) -> dict:
    """Accuracy over the 37 classes (``KWSMetrics``), false alarms (a keyword predicted) on ``_unknown_`` and on
    ``_silence_``/noise clips, and RTF."""
    import torch

    from model_zoo.vocab import KWS_LABELS, SILENCE, SPEECH_COMMANDS_WORDS, UNKNOWN
    from training.metrics import KWSMetrics

    systems = {}
    truth = [c.label for c in clips]
    for run in runs:
        predicted = [kws_label(str(run.outputs[c.id]), SPEECH_COMMANDS_WORDS) for c in clips]
        metrics = KWSMetrics()
        metrics.update(torch.tensor([KWS_LABELS.index(p) for p in predicted]), torch.tensor([KWS_LABELS.index(t) for t in truth]))
        scores = metrics.compute()
        systems[run.name] = {"accuracy": scores["accuracy"], "balanced_accuracy": scores["balanced_accuracy"],
                             "false_alarms_unknown": scores["false_alarm_unknown"],
                             "false_alarms_noise": scores["false_alarm_silence"],
                             # Accuracy on the keyword clips alone (a set of mostly unknown words hides it).
                             "keyword_accuracy": (float(np.mean([p == t for p, t in zip(predicted, truth) if t in KWS_LABELS
                                                                 and t not in (UNKNOWN, SILENCE)]))
                                                  if any(t not in (UNKNOWN, SILENCE) for t in truth) else math.nan),
                             "rtf": real_time_factor(run, clips), "load_seconds": run.load_seconds, "notes": run.notes}
    counts = {label: truth.count(label) for label in (UNKNOWN, SILENCE)}
    return {"clips": len(clips), "audio_seconds": sum(c.seconds for c in clips), "unknown_clips": counts[UNKNOWN],
            "silence_clips": counts[SILENCE], "systems": systems}


# Quality columns per task: (key, higher is better). RTF is always lower-is-better.
QUALITY = {"denoise": (("si_snr_gain", True), ("pesq", True), ("stoi", True)),
           "asr": (("wer", False), ("cer", False)),
           "kws": (("accuracy", True), ("false_alarms_unknown", False), ("false_alarms_noise", False))}


def verdict(task: str, result: dict, ours_name: str = OURS) -> dict:
    """For each column (quality and RTF): is ours (``ours_name``) strictly ahead of every peer, and the best
    peer's number."""
    systems = {name: (entry["overall"] | {"rtf": entry["rtf"]} if task == "denoise" else entry)
               for name, entry in result["systems"].items() if name != NOISY}
    ours = systems.get(ours_name)
    peers = {name: s for name, s in systems.items() if name not in OUR_SYSTEMS}
    out: dict = {}
    if ours is None or not peers:
        return out
    for key, higher in QUALITY[task] + (("rtf", False),):
        sign = 1 if higher else -1
        best_name = max(peers, key=lambda n: sign * nan_to(peers[n][key], -math.inf * sign))
        best = peers[best_name][key]
        if missing(ours[key]) and missing(best):
            continue  # a column nobody could score (false alarms on noise where the set has no noise clips)
        out[key] = {"ours": ours[key], "best_peer": best_name, "best_peer_value": best,
                    "standing": standing(sign * nan_to(ours[key], -math.inf), sign * nan_to(best, -math.inf))}
    return out


def standing(ours: float, best_peer: float) -> str:
    """``ahead``, ``tied`` or ``behind``, for scores where higher is better."""
    return "ahead" if ours > best_peer else ("tied" if ours == best_peer else "behind")


def missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def nan_to(value: float, fallback: float) -> float:
    return fallback if value is None or math.isnan(value) else value


COLUMN_NAMES = {"si_snr_gain": "SI-SNR gain", "pesq": "PESQ", "stoi": "STOI", "wer": "WER", "cer": "CER",
                "accuracy": "accuracy", "false_alarms_unknown": "false alarms on unknown words",
                "false_alarms_noise": "false alarms on noise", "rtf": "RTF"}

