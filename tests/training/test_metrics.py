"""Known-answer checks for the KWS, denoising and ASR metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_zoo.vocab import KWS_LABELS
from training.metrics import (
    ASRMetrics,
    DenoiseMetrics,
    KWSMetrics,
    cer,
    kws_accuracy,
    pesq_wb,
    si_snr,
    si_snr_improvement,
    stoi,
    utterance_wer,
    wer,
)

SR = 16000


def speech_like(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A voiced, gliding-pitch harmonic tone in syllable-rate bursts: enough for PESQ to find utterances."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 2
    x = voiced * envelope
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def add_noise(clean: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.shape[0])
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (clean + noise).astype(np.float32)


# --- keyword spotting ------------------------------------------------------------------------------


def test_kws_perfect_and_partial_predictions() -> None:
    targets = torch.tensor([0, 5, 35, 36, 36, 12])
    logits = torch.nn.functional.one_hot(targets, len(KWS_LABELS)).float() * 5
    metrics = KWSMetrics()
    metrics.update(logits[:3], targets[:3])
    metrics.update(logits[3:], targets[3:])
    assert metrics.compute() == {"accuracy": 1.0, "balanced_accuracy": 1.0, "keyword_recall": 1.0,
                                 "false_alarm_unknown": 0.0, "false_alarm_silence": 0.0, "count": 6.0}
    assert torch.equal(metrics.confusion_matrix().diagonal()[[0, 5, 12, 35, 36]], torch.tensor([1, 1, 1, 1, 2]))
    assert metrics.confusion_matrix().sum() == 6

    predictions = torch.tensor([0, 5, 35, 36, 0, 12])  # one _silence_ item called class 0
    assert kws_accuracy(predictions, targets) == pytest.approx(5 / 6)
    metrics.reset()
    metrics.update(predictions, targets)
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(5 / 6)
    assert result["balanced_accuracy"] == pytest.approx((1 + 1 + 1 + 0.5 + 1) / 5)
    assert metrics.confusion_matrix()[36, 0] == 1 and metrics.confusion_matrix()[36, 36] == 1
    assert result["keyword_recall"] == 1.0 and result["false_alarm_silence"] == 0.5
    assert result["false_alarm_unknown"] == 0.0
    empty = KWSMetrics().compute()  # the same keys, so callers can index them on an empty set
    assert set(empty) == set(result) and empty["count"] == 0.0 and math.isnan(empty["false_alarm_unknown"])


def test_kws_threshold_turns_unsure_keywords_into_unknown() -> None:
    """Logits whose top class has a chosen probability: a keyword below the threshold counts as _unknown_,
    as in the service's detections; _unknown_ and _silence_ predictions are never rejected."""
    unknown, silence = KWS_LABELS.index("_unknown_"), KWS_LABELS.index("_silence_")

    def logits_with_top(label: int, probability: float) -> torch.Tensor:
        rest = (1 - probability) / (len(KWS_LABELS) - 1)
        row = torch.full((len(KWS_LABELS),), rest)
        row[label] = probability
        return row.log()

    # (top class, its probability, true class)
    items = [(3, 0.95, 3), (4, 0.6, 4), (7, 0.6, unknown), (8, 0.95, unknown), (silence, 0.3, silence),
             (unknown, 0.2, unknown), (9, 0.55, silence)]
    logits = torch.stack([logits_with_top(top, p) for top, p, _ in items])
    targets = torch.tensor([truth for _, _, truth in items])
    expected = {  # threshold: (keyword_recall, false_alarm_unknown, false_alarm_silence, accuracy)
        0.0: (1.0, 2 / 3, 1 / 2, 4 / 7),
        0.5: (1.0, 2 / 3, 1 / 2, 4 / 7),
        0.7: (1 / 2, 1 / 3, 0.0, 4 / 7),  # item 2 is now wrong, item 3 right; item 7 is _unknown_, still wrong
        0.99: (0.0, 0.0, 0.0, 4 / 7),
    }
    for threshold, (recall, fa_unknown, fa_silence, accuracy) in expected.items():
        metrics = KWSMetrics(threshold=threshold)
        metrics.update(logits, targets)
        result = metrics.compute()
        assert (result["keyword_recall"], result["false_alarm_unknown"], result["false_alarm_silence"],
                result["accuracy"]) == pytest.approx((recall, fa_unknown, fa_silence, accuracy)), threshold
    with pytest.raises(ValueError, match="threshold"):
        KWSMetrics(threshold=1.5)


# --- denoising -------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_si_snr_matches_mixing_snr(snr_db: float) -> None:
    clean = torch.from_numpy(speech_like())
    noisy = torch.from_numpy(add_noise(speech_like(), snr_db))
    assert float(si_snr(noisy, clean)) == pytest.approx(snr_db, abs=0.3)
    # Scale invariance: a louder copy scores the same.
    assert float(si_snr(3 * noisy, clean)) == pytest.approx(float(si_snr(noisy, clean)), abs=1e-3)


def test_si_snr_improvement_and_batch_shapes() -> None:
    clean = torch.from_numpy(np.stack([speech_like(seed=0), speech_like(seed=1)]))
    noisy = torch.from_numpy(np.stack([add_noise(c, 0.0, seed=2) for c in clean.numpy()]))
    estimate = torch.from_numpy(np.stack([add_noise(c, 10.0, seed=3) for c in clean.numpy()]))
    improvement = si_snr_improvement(estimate, noisy, clean)
    assert improvement.shape == (2,)
    torch.testing.assert_close(improvement, torch.full((2,), 10.0), atol=0.5, rtol=0)


def test_pesq_and_stoi_order_clean_over_noisy() -> None:
    clean = speech_like()
    assert pesq_wb(clean, clean) > 4.0
    assert pesq_wb(add_noise(clean, -5.0), clean) < 2.0
    scores = [stoi(add_noise(clean, snr), clean) for snr in (-5.0, 5.0, 20.0)] + [stoi(clean, clean)]
    assert all(0.0 <= s <= 1.0 + 1e-9 for s in scores)
    assert scores == sorted(scores) and scores[-1] > 0.99 and scores[0] < 0.85


def test_pesq_returns_nan_on_silent_and_short_signals() -> None:
    assert math.isnan(pesq_wb(np.zeros(SR * 2), np.zeros(SR * 2)))
    short = speech_like(0.1)
    assert math.isnan(pesq_wb(short, short))
    assert math.isnan(pesq_wb(np.full(SR, np.nan), speech_like(1.0)))
    assert math.isnan(stoi(short, short))


def test_denoise_metrics_accumulates_trims_padding_and_counts_pesq_failures() -> None:
    clean = speech_like(2.0)
    lengths = torch.tensor([clean.shape[0], SR // 10, clean.shape[0]])  # the middle one is too short for PESQ
    padded, noisy, estimate = (torch.zeros(3, clean.shape[0]) for _ in range(3))
    for i, n in enumerate(lengths.tolist()):
        padded[i, :n] = torch.from_numpy(clean[:n])
        noisy[i, :n] = torch.from_numpy(add_noise(clean[:n], 0.0, seed=i))
        estimate[i, :n] = torch.from_numpy(add_noise(clean[:n], 15.0, seed=10 + i))
    # Padding the estimate with noise would cost SI-SNR if the padding were (wrongly) scored.
    estimate[1, SR // 10 :] = 1.0
    metrics = DenoiseMetrics()
    metrics.update(estimate[:2], padded[:2], noisy[:2], lengths[:2])
    metrics.update(estimate[2], padded[2], noisy[2])
    result = metrics.compute()
    assert result["count"] == 3.0 and result["pesq_failures"] == 1.0 and result["stoi_failures"] == 1.0
    assert result["si_snr"] == pytest.approx(15.0, abs=1.0)
    assert result["si_snr_improvement"] == pytest.approx(15.0, abs=1.5)
    assert not math.isnan(result["pesq"]) and 1.0 <= result["pesq"] <= 4.7
    assert 0.0 < result["stoi"] <= 1.0
    quick = DenoiseMetrics(with_pesq=False, with_stoi=False)
    quick.update(estimate[0], padded[0])
    assert set(quick.compute()) == {"count", "si_snr"}


# --- speech recognition ----------------------------------------------------------------------------


def test_wer_cer_known_answers() -> None:
    refs = ["the cat sat", "on the mat"]
    assert wer(refs, refs) == 0.0 and cer(refs, refs) == 0.0
    # One substitution and one deletion over six reference words.
    assert wer(refs, ["the cat sit", "on mat"]) == pytest.approx(2 / 6)
    assert cer(["abcd"], ["abxd"]) == pytest.approx(1 / 4)
    assert cer(["ab cd"], ["abcd"]) == pytest.approx(1 / 5)  # the dropped space is an edit
    assert utterance_wer("a b c d", "a b c d e f") == pytest.approx(2 / 4)


def test_wer_is_corpus_level_not_mean_of_utterances() -> None:
    refs, hyps = ["yes", "turn the lights off"], ["no", "turn the lights off"]
    assert wer(refs, hyps) == pytest.approx(1 / 5)  # a mean of per-utterance rates would give 0.5
    metrics = ASRMetrics()
    metrics.update(refs[:1], hyps[:1])
    metrics.update(refs[1:], hyps[1:])
    result = metrics.compute()
    assert result["wer"] == pytest.approx(1 / 5)
    assert result["cer"] == pytest.approx(cer(refs, hyps))
    assert (result["words"], result["utterances"]) == (5.0, 2.0)
    with pytest.raises(ValueError):
        metrics.update(["a"], [])
