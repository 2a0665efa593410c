"""Evaluation metrics for the three tasks, computed by established libraries.

- Keyword spotting: accuracy and confusion matrix (torchmetrics), and false alarms from the confusion matrix.
- Denoising: SI-SNR and its improvement over the noisy input (torchmetrics), wideband PESQ (``pesq``),
  STOI (``pystoi``).
- Speech recognition: corpus-level WER and CER (``jiwer``): total edits over total reference words or
  characters, not a mean of per-utterance rates.

Rates (accuracy, WER, CER) are fractions, not percentages. Each task has an accumulator whose
``compute()`` returns a ``dict[str, float]``::

    metrics = KWSMetrics()
    for x, y in loader: metrics.update(model(x), y)
    print(metrics.compute())
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import jiwer
import numpy as np
import pesq as pesq_lib
import torch
from pystoi import stoi as pystoi_stoi
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix
from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio

from model_zoo.pipelines.kws import detected_keywords
from model_zoo.vocab import KWS_LABELS, SILENCE, SPEECH_COMMANDS_WORDS, UNKNOWN

__all__ = [
    "kws_accuracy",
    "si_snr",
    "si_snr_improvement",
    "pesq_wb",
    "stoi",
    "wer",
    "cer",
    "utterance_wer",
    "KWSMetrics",
    "DenoiseMetrics",
    "ASRMetrics",
]


# --- keyword spotting ------------------------------------------------------------------------------

_KEYWORDS = len(SPEECH_COMMANDS_WORDS)  # KWS_LABELS: the keywords first, then _unknown_ and _silence_
_UNKNOWN_INDEX, _SILENCE_INDEX = KWS_LABELS.index(UNKNOWN), KWS_LABELS.index(SILENCE)


def kws_accuracy(logits: Tensor, targets: Tensor, num_classes: int = len(KWS_LABELS)) -> float:
    """Top-1 accuracy of logits ``(B, C)`` (or predicted indices ``(B,)``) against targets ``(B,)``."""
    metric = MulticlassAccuracy(num_classes=num_classes, average="micro")
    return float(metric(logits.detach().cpu(), targets.detach().cpu()))


class KWSMetrics:
    """Accumulates keyword-spotting predictions over a dataset.

    ``compute()`` gives ``accuracy`` (micro, over all items), ``balanced_accuracy`` (mean per-class
    recall over the classes that occur), ``keyword_recall`` (keyword items called as their keyword),
    ``false_alarm_unknown`` and ``false_alarm_silence`` (``_unknown_`` and ``_silence_`` items called as
    any keyword; NaN when the data has none) and ``count``; ``confusion_matrix()`` gives ``(C, C)``
    counts, rows true class, columns predicted class, in the order of ``KWS_LABELS``.

    With a ``threshold`` above 0, a keyword whose probability is below it counts as ``_unknown_``: the
    rule of the service's detections (``POST /keywords``), so its false alarms can be measured per
    threshold. It applies to logits ``(B, C)``; predicted indices ``(B,)`` are taken as they are.
    """

    def __init__(self, num_classes: int = len(KWS_LABELS), threshold: float = 0.0) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        self.num_classes, self.threshold = num_classes, threshold
        # Evaluation runs on one rank only; torchmetrics would otherwise wait for the other ranks.
        local = {"sync_on_compute": False}
        self._accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro", **local)
        self._balanced = MulticlassAccuracy(num_classes=num_classes, average="macro", **local)
        self._confusion = MulticlassConfusionMatrix(num_classes=num_classes, **local)
        self._count = 0

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """Add a batch: logits ``(B, C)`` or predicted indices ``(B,)``, targets ``(B,)``."""
        predictions, targets = logits.detach().cpu(), targets.detach().cpu()
        if self.threshold > 0 and predictions.dim() == 2:
            # The service's rule: a keyword that is the top class but below the threshold is no detection.
            probs = predictions.float().softmax(-1)
            top = probs.argmax(-1)
            detected = detected_keywords(probs, range(_KEYWORDS), self.threshold)
            predictions = torch.where((top < _KEYWORDS) & (detected < 0), torch.full_like(top, _UNKNOWN_INDEX), top)
        self._accuracy.update(predictions, targets)
        self._balanced.update(predictions, targets)
        self._confusion.update(predictions, targets)
        self._count += int(targets.numel())

    def compute(self) -> dict[str, float]:
        if self._count == 0:
            return {key: math.nan for key in ("accuracy", "balanced_accuracy", "keyword_recall", "false_alarm_unknown",
                                              "false_alarm_silence")} | {"count": 0.0}
        confusion = self._confusion.compute().double()

        def called_keyword(label: int) -> float:
            items = confusion[label].sum()
            return float(confusion[label, :_KEYWORDS].sum() / items) if items else math.nan

        keywords = confusion[:_KEYWORDS]
        keyword_items = keywords.sum()
        return {
            "accuracy": float(self._accuracy.compute()),
            "balanced_accuracy": float(self._balanced.compute()),
            "keyword_recall": float(keywords.diagonal().sum() / keyword_items) if keyword_items else math.nan,
            "false_alarm_unknown": called_keyword(_UNKNOWN_INDEX),
            "false_alarm_silence": called_keyword(_SILENCE_INDEX),
            "count": float(self._count),
        }

    def confusion_matrix(self) -> Tensor:
        """``(C, C)`` int64 counts; ``[i, j]`` = items of class ``i`` predicted as ``j``."""
        return self._confusion.compute()

    def reset(self) -> None:
        for metric in (self._accuracy, self._balanced, self._confusion):
            metric.reset()
        self._count = 0


# --- denoising -------------------------------------------------------------------------------------


def si_snr(estimate: Tensor, reference: Tensor) -> Tensor:
    """Scale-invariant SNR in dB of ``(..., L)`` signals; returns ``(...)``."""
    return scale_invariant_signal_noise_ratio(estimate.float(), reference.float())


def si_snr_improvement(estimate: Tensor, noisy: Tensor, reference: Tensor) -> Tensor:
    """SI-SNR of the estimate minus SI-SNR of the noisy input, in dB; ``(..., L)`` -> ``(...)``."""
    return si_snr(estimate, reference) - si_snr(noisy, reference)


def _as_numpy(signal: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(signal, Tensor):
        signal = signal.detach().cpu().float().numpy()
    return np.asarray(signal, dtype=np.float64).reshape(-1)


def pesq_wb(estimate: Tensor | np.ndarray, reference: Tensor | np.ndarray, sample_rate: int = 16_000) -> float:
    """Wideband PESQ (MOS-LQO, about 1.0 to 4.64) of one ``(L,)`` estimate against its clean reference.

    Returns NaN instead of raising when PESQ cannot score the pair: silent or non-finite signals, no
    utterance detected, or a signal shorter than the 1/4 s PESQ needs.
    """
    ref, deg = _as_numpy(reference), _as_numpy(estimate)
    # The library divides by the peak amplitude: an all-zero pair would only produce NaN warnings.
    if not (np.isfinite(ref).all() and np.isfinite(deg).all()) or not np.abs(ref).max(initial=0.0) > 0:
        return math.nan
    try:
        return float(pesq_lib.pesq(sample_rate, ref, deg, "wb"))
    except pesq_lib.PesqError:  # NoUtterancesError, BufferTooShortError, ...
        return math.nan


def stoi(
    estimate: Tensor | np.ndarray,
    reference: Tensor | np.ndarray,
    sample_rate: int = 16_000,
    extended: bool = False,
) -> float:
    """STOI (or extended STOI) in [0, 1] of one ``(L,)`` estimate against its clean reference.

    Returns NaN when the signals are too short (or too silent) for a score: pystoi would only warn and
    return 1e-5, which would pass for a real, terrible score.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = float(pystoi_stoi(_as_numpy(reference), _as_numpy(estimate), sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return math.nan
    return score


class DenoiseMetrics:
    """Accumulates per-utterance denoising scores over a dataset and averages them.

    ``compute()`` gives ``si_snr``, ``si_snr_improvement`` (when noisy inputs were given), ``pesq``
    (mean over the utterances PESQ could score), ``pesq_failures`` (how many it could not), ``stoi``,
    ``stoi_failures`` (likewise) and ``count``. PESQ and STOI cost tens of milliseconds per utterance
    and can be switched off.
    """

    def __init__(self, sample_rate: int = 16_000, with_pesq: bool = True, with_stoi: bool = True) -> None:
        self.sample_rate = sample_rate
        self.with_pesq = with_pesq
        self.with_stoi = with_stoi
        self.reset()

    def reset(self) -> None:
        self._scores: dict[str, list[float]] = {"si_snr": [], "si_snr_improvement": [], "pesq": [], "stoi": []}

    def update(
        self,
        estimate: Tensor,
        clean: Tensor,
        noisy: Tensor | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> None:
        """Add a batch of ``(B, L)`` signals (or one ``(L,)``); ``lengths (B,)`` trims batch padding."""
        if estimate.dim() == 1:
            estimate, clean = estimate[None], clean[None]
            noisy = None if noisy is None else noisy[None]
        estimate, clean = estimate.detach().cpu().float(), clean.detach().cpu().float()
        noisy = None if noisy is None else noisy.detach().cpu().float()
        for b in range(estimate.shape[0]):
            # Padding would count as perfectly reconstructed silence, so score each utterance on its own length.
            n = int(lengths[b]) if lengths is not None else estimate.shape[-1]
            est, ref = estimate[b, :n], clean[b, :n]
            score = float(si_snr(est, ref))
            self._scores["si_snr"].append(score)
            if noisy is not None:
                self._scores["si_snr_improvement"].append(score - float(si_snr(noisy[b, :n], ref)))
            if self.with_pesq:
                self._scores["pesq"].append(pesq_wb(est, ref, self.sample_rate))
            if self.with_stoi:
                self._scores["stoi"].append(stoi(est, ref, self.sample_rate))

    def compute(self) -> dict[str, float]:
        result = {"count": float(len(self._scores["si_snr"]))}
        for name, values in self._scores.items():
            if name == "si_snr" or values:
                finite = [v for v in values if not math.isnan(v)]
                result[name] = float(np.mean(finite)) if finite else math.nan
        for name in ("pesq", "stoi"):
            if getattr(self, f"with_{name}"):
                result[f"{name}_failures"] = float(sum(math.isnan(v) for v in self._scores[name]))
        return result


# --- speech recognition ----------------------------------------------------------------------------


def _edits(output: jiwer.WordOutput | jiwer.CharacterOutput) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference length) of a jiwer alignment."""
    errors = output.substitutions + output.deletions + output.insertions
    return errors, output.substitutions + output.deletions + output.hits


def _rate(errors: int, total: int) -> float:
    return errors / total if total else (0.0 if errors == 0 else math.inf)


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level word error rate: total word edits / total reference words."""
    return _rate(*_edits(jiwer.process_words(list(references), list(hypotheses))))


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level character error rate (spaces count as characters): total edits / reference characters."""
    return _rate(*_edits(jiwer.process_characters(list(references), list(hypotheses))))


def utterance_wer(reference: str, hypothesis: str) -> float:
    """Word error rate of a single utterance."""
    return wer([reference], [hypothesis])


class ASRMetrics:
    """Accumulates edit counts over a dataset; ``compute()`` gives corpus ``wer``, ``cer`` and counts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.word_errors = self.words = self.char_errors = self.chars = self.utterances = 0

    def update(self, references: Sequence[str], hypotheses: Sequence[str]) -> None:
        """Add a batch of reference and hypothesis transcripts (already normalised, same length)."""
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
        if not references:
            return
        errors, total = _edits(jiwer.process_words(list(references), list(hypotheses)))
        self.word_errors += errors
        self.words += total
        errors, total = _edits(jiwer.process_characters(list(references), list(hypotheses)))
        self.char_errors += errors
        self.chars += total
        self.utterances += len(references)

    def compute(self) -> dict[str, float]:
        return {
            "wer": _rate(self.word_errors, self.words),
            "cer": _rate(self.char_errors, self.chars),
            "words": float(self.words),
            "chars": float(self.chars),
            "utterances": float(self.utterances),
        }
