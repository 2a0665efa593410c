"""Per-task pieces of training: datasets, batching, loss and held-out evaluation.

Losses: cross-entropy (KWS); negative SI-SNR plus a multi-resolution log-STFT magnitude L1 (denoising: SI-SNR is
the score and keeps phase, the spectral term is what PESQ hears; a first run with waveform L1 instead of SI-SNR
did not improve SI-SNR at all in 500 steps); CTC (ASR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio

from model_zoo.nets import for_every_task
from model_zoo.nets.ctc import BeamSearchDecoder, NgramLanguageModel, WordLanguageModel
from model_zoo.pipelines.asr import Recognizer, clip_logits, ships_language_model
from model_zoo.vocab import ASR_VOCAB

from .metrics import ASRMetrics, DenoiseMetrics, KWSMetrics
from .recipes import Recipe

__all__ = ["TaskSpec", "TASK_SPECS", "build_datasets", "tune_decoder", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel or torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


# ---- datasets -------------------------------------------------------------------------------------------------
def build_datasets(recipe: Recipe) -> dict[str, Dataset]:
    """``{"train", "valid", "test"}`` datasets for the recipe's data source (local paths only)."""
    task, root, seed = recipe.task, recipe.data_root, recipe.seed
    if recipe.data == "synthetic":
        from .corpus.dataset import ASRCorpus, DenoiseCorpus, KWSCorpus

        if task == "kws":
            return {s: KWSCorpus(root, s, seed) for s in ("train", "valid", "test")}
        if task == "denoise":
            return {
                "train": DenoiseCorpus(root, "train", seed, recipe.segment_seconds),
                "valid": DenoiseCorpus(root, "valid", seed, None),
                "test": DenoiseCorpus(root, "test", seed, None),
            }
        return {s: ASRCorpus(root, s, seed) for s in ("train", "valid", "test")}
    if recipe.data == "speech_commands":
        from .datasets import SpeechCommands

        return {s: SpeechCommands(root, s, seed=seed) for s in ("train", "valid", "test")}
    if recipe.data == "vbdmd":
        from .datasets import VoiceBankDemand

        segment = round(recipe.segment_seconds * 16000 / 256) * 256
        return {"train": VoiceBankDemand(root, "train", segment_length=segment, seed=seed),
                "valid": VoiceBankDemand(root, "test"), "test": VoiceBankDemand(root, "test")}
    if recipe.data == "librispeech":
        from .datasets import LibriSpeech

        return {"train": LibriSpeech(root, list(recipe.train_subsets)),
                "valid": LibriSpeech(root, list(recipe.test_subsets)),
                "test": LibriSpeech(root, list(recipe.test_subsets))}
    raise SystemExit(f"unknown data source {recipe.data!r}")


def pad_collate(batch: list[tuple[Tensor, Any]]) -> tuple[Tensor, Tensor, list]:
    """Zero-pad waveforms at the end: ``(B, L_max)``, lengths ``(B,)`` and the targets as a list."""
    lengths = torch.tensor([len(w) for w, _ in batch])
    waves = torch.zeros(len(batch), int(lengths.max()))
    for i, (w, _) in enumerate(batch):
        waves[i, : len(w)] = torch.as_tensor(w)
    return waves, lengths, [t for _, t in batch]


def denoise_collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    noisy, lengths, clean = pad_collate([(n, c) for n, c in batch])
    return noisy, lengths, pad_collate([(c, None) for c in clean])[0]


# ---- losses ---------------------------------------------------------------------------------------------------
def kws_loss(model: nn.Module, batch) -> Tensor:
    waves, labels = batch
    return F.cross_entropy(model(waves), labels)


_STFT_SIZES = ((512, 128), (1024, 256), (256, 64))


def spectral_loss(estimate: Tensor, target: Tensor) -> Tensor:
    """Multi-resolution log-magnitude L1 (fp32: the STFT should not run in half precision)."""
    total = estimate.new_zeros(())
    for n_fft, hop in _STFT_SIZES:
        window = torch.hann_window(n_fft, device=estimate.device)
        spec = lambda x: torch.stft(x.float(), n_fft, hop, window=window, return_complex=True).abs()  # noqa: E731
        # 1e-3 floor: below it (silence, -60 dB) the log would make inaudible errors dominate.
        total = total + F.l1_loss(torch.log(spec(estimate) + 1e-3), torch.log(spec(target) + 1e-3))
    return total / len(_STFT_SIZES)


def denoise_loss(model: nn.Module, batch) -> Tensor:
    """Negative SI-SNR (what the denoiser is scored on, and level-free) plus the spectral term."""
    noisy, _, clean = batch
    estimate = model(noisy)
    si_snr = scale_invariant_signal_noise_ratio(estimate.float(), clean.float())
    return -si_snr.mean() / 10 + spectral_loss(estimate, clean)


def asr_loss(model: nn.Module, batch) -> Tensor:
    waves, lengths, texts = batch
    logits = model(waves)
    out_lengths = unwrap(model).output_lengths(lengths).clamp(max=logits.shape[-1])
    targets = [torch.tensor([ASR_VOCAB.index(c) for c in t]) for t in texts]
    target_lengths = torch.tensor([len(t) for t in targets])
    log_probs = logits.float().log_softmax(dim=1).permute(2, 0, 1)  # (frames, B, vocab)
    return F.ctc_loss(log_probs, torch.cat(targets).to(waves.device), out_lengths, target_lengths.to(waves.device),
                      blank=0, zero_infinity=True)


# ---- evaluation -----------------------------------------------------------------------------------------------
@torch.no_grad()
def kws_evaluate(model: nn.Module, loader: DataLoader, device: torch.device, max_batches: int | None,
                 threshold: float = 0.0) -> dict:
    """:class:`KWSMetrics` scores; with a ``threshold``, keywords below it count as ``_unknown_``."""
    metrics = KWSMetrics(threshold=threshold)
    for i, (waves, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        metrics.update(model(waves.to(device)).cpu(), labels)
    return metrics.compute()


@torch.no_grad()
def denoise_evaluate(model: nn.Module, loader: DataLoader, device: torch.device, max_batches: int | None) -> dict:
    """Scores of the enhanced audio and of the noisy input, overall and for inputs within 2.5 dB of 0 dB SNR."""
    enhanced, noisy_ref = DenoiseMetrics(), DenoiseMetrics()
    enhanced0, noisy0 = DenoiseMetrics(), DenoiseMetrics()
    dataset = loader.dataset
    index = 0
    for i, (noisy, lengths, clean) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        estimate = model(noisy.to(device)).cpu()
        for b in range(noisy.shape[0]):
            n = int(lengths[b])
            args = (clean[b, :n],)
            enhanced.update(estimate[b, :n], *args, noisy=noisy[b, :n])
            noisy_ref.update(noisy[b, :n], *args)
            snr = dataset.pair_info(index)["snr"] if hasattr(dataset, "pair_info") else None
            if snr is not None and abs(snr) < 2.5:
                enhanced0.update(estimate[b, :n], *args, noisy=noisy[b, :n])
                noisy0.update(noisy[b, :n], *args)
            index += 1
    scores = enhanced.compute()
    scores["pesq_noisy"] = noisy_ref.compute()["pesq"]
    scores["pesq_improvement"] = scores["pesq"] - scores["pesq_noisy"]
    if enhanced0.compute()["count"]:
        at0, base0 = enhanced0.compute(), noisy0.compute()
        scores.update({"count_0db": at0["count"], "si_snr_improvement_0db": at0["si_snr_improvement"],
                       "pesq_0db": at0["pesq"], "pesq_improvement_0db": at0["pesq"] - base0["pesq"],
                       "stoi_0db": at0["stoi"], "stoi_noisy_0db": base0["stoi"]})
    return scores


def _recognized_clips(model: nn.Module, loader: DataLoader, device: torch.device, max_batches: int | None = None):
    """Per batch of ``loader``: its transcripts and the network's logits ``(vocab, frames)`` of each clip, cut to
    the clip's own length."""
    net = unwrap(model)
    for i, (waves, lengths, texts) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        yield list(texts), clip_logits(net, model(waves.to(device)).cpu(), lengths)


@torch.no_grad()
def asr_evaluate(model: nn.Module, loader: DataLoader, device: torch.device, max_batches: int | None) -> dict:
    """Greedy WER and CER; also ``wer_lm`` and ``cer_lm``, beam search with the network's language model when it
    has one (:class:`model_zoo.pipelines.asr.Recognizer`'s beam search: the card's n-gram, or the word bigram
    that ``model_zoo.load`` and ``finish_run`` attach). Decoded as the service decodes."""
    metrics, with_lm = ASRMetrics(), ASRMetrics()
    net = unwrap(model)
    recognizer, lm = Recognizer(net), ships_language_model(net)
    for texts, clips in _recognized_clips(model, loader, device, max_batches):
        metrics.update(texts, [recognizer.decode(clip, beam_search=False).text for clip in clips])
        if lm:
            with_lm.update(texts, [recognizer.decode(clip, beam_search=True).text for clip in clips])
    scores = metrics.compute()
    if lm:
        scores.update({f"{name}_lm": value for name, value in with_lm.compute().items() if name in ("wer", "cer")})
    return scores


# Beam-search weights tried by tune_decoder: the language model's weight against the acoustic scores, and the
# score per word (positive favours more, shorter words).
DECODER_GRID = {"lm_weight": (0.25, 0.5, 0.75, 1.0, 1.5), "word_score": (-1.0, 0.0, 1.0, 2.0)}


# Weights tried for a general n-gram file (its scale differs from the bigram's), at the beam it ships with.
NGRAM_GRID = {"lm_weight": (1.0, 1.5, 2.0), "word_score": (0.0, 1.0)}
NGRAM_BEAM_SIZE = 64  # total RTF about 0.035 on one core with english.arpa.gz, within the 0.05 target


@torch.no_grad()
def tune_decoder(model: nn.Module, loader: DataLoader, device: torch.device,
                 language_model: WordLanguageModel | NgramLanguageModel, grid: dict | None = None,
                 beam_size: int = 32) -> dict:
    """The beam search's ``lm_weight`` and ``word_score`` with the lowest WER on ``loader`` (the validation
    split) over ``grid`` (default :data:`DECODER_GRID`): ``{"lm_weight", "word_score", "wer", "grid": [[w, s,
    wer], ...]}``. The network runs once; each grid point only decodes."""
    grid = grid or DECODER_GRID
    net = unwrap(model)
    clips, texts = [], []
    for batch_texts, batch_clips in _recognized_clips(model, loader, device):
        texts += batch_texts
        clips += batch_clips
    rows = []
    for lm_weight in grid["lm_weight"]:
        for word_score in grid["word_score"]:
            beam = BeamSearchDecoder(language_model=language_model, lm_weight=lm_weight, word_score=word_score,
                                     beam_size=beam_size)
            metrics = ASRMetrics()
            metrics.update(texts, [beam(clip, net.frame_seconds).text for clip in clips])
            rows.append([lm_weight, word_score, round(metrics.compute()["wer"], 4)])
    lm_weight, word_score, wer = min(rows, key=lambda row: row[2])  # ties: the first, the lighter weight
    return {"lm_weight": lm_weight, "word_score": word_score, "wer": wer, "grid": rows}


def language_model_from(dataset) -> WordLanguageModel:
    """The word bigram of a speech recognition dataset's transcripts (datasets with ``transcript(index)``)."""
    return WordLanguageModel.from_transcripts(dataset.transcript(i) for i in range(len(dataset)))


@dataclass(frozen=True)
class TaskSpec:
    loss: Callable[[nn.Module, Any], Tensor]
    evaluate: Callable[..., dict]
    collate: Callable | None
    eval_batch_size: int
    headline: str  # the score that decides the best checkpoint
    higher_is_better: bool


# How each task of model_zoo.nets.TASKS trains, checked at import: a task cannot be added without one.
TASK_SPECS: dict[str, TaskSpec] = for_every_task({
    "kws": TaskSpec(kws_loss, kws_evaluate, None, 64, "accuracy", True),
    "denoise": TaskSpec(denoise_loss, denoise_evaluate, denoise_collate, 4, "si_snr_improvement", True),
    "asr": TaskSpec(asr_loss, asr_evaluate, pad_collate, 16, "wer", False),
}, "training.tasks.TASK_SPECS")


def move_batch(batch, device: torch.device):
    return tuple(x.to(device, non_blocking=True) if torch.is_tensor(x) else x for x in batch)
