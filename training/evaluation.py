"""Scoring a checkpoint where it matters: the held-out synthetic test split, its festival part (a synthesizer
never trained on) and real human speech (:mod:`training.datasets.asterisk`), plus, for keyword spotting, false
alarms in running speech that says no keyword, by the service's own windows and rule.

``python -m training evaluate NAME`` prints :func:`score_sets`; ``finish_run`` writes it into the model card.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from model_zoo.pipelines.kws import DEFAULT_THRESHOLD, scan
from model_zoo.vocab import KWS_LABELS, SPEECH_COMMANDS_WORDS

from .recipes import Recipe
from .tasks import build_datasets
from .trainer import evaluate_model

__all__ = ["EVALUATION_SETS", "SetUnavailable", "evaluation_sets", "running_speech_false_alarms", "score_sets"]


class SetUnavailable(RuntimeError):
    """An asked-for evaluation set cannot be built here (corpus not built, package not installed)."""


EVALUATION_SETS: tuple[str, ...] = ("synthetic", "festival", "real")


def evaluation_sets(recipe: Recipe, names: tuple[str, ...] = EVALUATION_SETS, split: str = "test",
                    real_root: str | None = None) -> dict[str, Dataset | str]:
    """The sets ``python -m training evaluate`` scores, by name, or a one-line reason where one cannot be built:
    ``synthetic``: the synthetic corpus's ``split`` without festival voices; ``festival``: its festival-only part
    (festival is the held-out synthesizer, test split only); ``real``: the Asterisk prompts
    (:mod:`training.datasets.asterisk`) for the task; denoise mixes them with the test split's noise bank."""
    import copy

    out: dict[str, Dataset | str] = {}
    wanted = [n for n in ("synthetic", "festival") if n in names]
    if wanted and recipe.data != "synthetic":
        reason = f"not scored: the checkpoint's data is {recipe.data!r}, not the synthetic corpus"
        out.update({n: reason for n in wanted})
    elif wanted:
        try:
            whole: Dataset | str = build_datasets(recipe)[split]
        except FileNotFoundError as err:
            whole = f"corpus not built: {err}"
        for name in wanted:
            festival = name == "festival"
            out[name] = whole if isinstance(whole, str) else copy.copy(whole).select(
                lambda row, festival=festival: (row.get("synth") == "festival") == festival)
    if "real" in names:
        from .datasets import asterisk

        root = real_root or asterisk.DEFAULT_CACHE
        try:
            if recipe.task == "kws":
                out["real"] = asterisk.AsteriskKWS(root)
            elif recipe.task == "asr":
                out["real"] = asterisk.AsteriskASR(root)
            else:
                bank, source = asterisk.heldout_noise_bank(recipe.data_root, recipe.corpus_seed)
                out["real"] = asterisk.AsteriskDenoise(bank, root, seed=recipe.corpus_seed)
                out["real"].noise_source = source
        except asterisk.AsteriskNotInstalled as err:
            out["real"] = f"not installed: {err}"
    return {n: out[n] for n in names if n in out}


@torch.no_grad()
def running_speech_false_alarms(model: nn.Module, clips: list[np.ndarray], device: torch.device,
                                threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Keyword detections in speech that holds no keyword, by the service's windows and rule
    (:func:`model_zoo.pipelines.kws.scan`): the share of clips with any detection and detections per hour."""

    was_training = model.training
    model.eval()

    def classify(windows: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(windows).to(device)).float().softmax(-1).cpu().numpy()

    try:
        found = [scan(classify, clip, KWS_LABELS, rate=16000, threshold=threshold) for clip in clips]
    finally:
        model.train(was_training)
    hours = sum(len(c) for c in clips) / 16000 / 3600
    keywords: dict[str, int] = {}
    for d in (d for clip in found for d in clip):
        keywords[d.keyword] = keywords.get(d.keyword, 0) + 1
    return {"clips": len(clips), "hours": round(hours, 4), "threshold": threshold,
            "clips_with_false_alarm": sum(bool(f) for f in found) / max(1, len(clips)),
            "false_alarms_per_hour": sum(keywords.values()) / hours if hours else float("nan"),
            "keywords_fired": dict(sorted(keywords.items(), key=lambda kv: -kv[1]))}


def real_running_speech(model: nn.Module, device: torch.device, real_root: str | None = None,
                        threshold: float = DEFAULT_THRESHOLD) -> dict:
    """:func:`running_speech_false_alarms` on the real set's sentences (two words or more) that say no keyword."""
    from .datasets.asterisk import DEFAULT_CACHE, AsteriskASR

    sentences = AsteriskASR(real_root or DEFAULT_CACHE, min_words=2)
    clips = [sentences[i][0].numpy() for i in range(len(sentences))
             if not set(sentences.transcript(i).split()) & set(SPEECH_COMMANDS_WORDS)]
    return running_speech_false_alarms(model, clips, device, threshold)


def score_sets(model: nn.Module, recipe: Recipe, device: torch.device, names: tuple[str, ...] = EVALUATION_SETS,
               split: str = "test", real_root: str | None = None, max_batches: int | None = None,
               **options) -> dict[str, dict]:
    """Each set's description and scores (``{"error": reason}`` where it cannot be built). A single set asked
    for by name that cannot be built raises :class:`SetUnavailable`. ``options``: ``threshold`` (kws)."""
    sets = evaluation_sets(recipe, names, split, real_root)
    if len(names) == 1 and isinstance(sets[names[0]], str):
        raise SetUnavailable(sets[names[0]])
    results: dict[str, dict] = {}
    for name, dataset in sets.items():
        if isinstance(dataset, str):
            results[name] = {"error": dataset}
            continue
        entry: dict = {"data": str(getattr(dataset, "root", recipe.data_root))}
        if name == "real":
            from .datasets.asterisk import AsteriskKWS

            summary = Path(dataset.root) / "summary.json"
            entry["source"] = json.loads(summary.read_text())["source"] if summary.is_file() else "asterisk"
            if isinstance(dataset, AsteriskKWS):
                entry["keyword_clips"] = sum(row["kws_label"] != "_unknown_" for row in dataset.rows)
                entry["running_speech"] = real_running_speech(model, device, real_root, **options)
            if hasattr(dataset, "noise_source"):
                entry.update(sentences=len(dataset.rows), snrs=list(dataset.snrs), noise=dataset.noise_source)
        else:
            entry.update(split=split, voices="festival only" if name == "festival" else "all but festival")
        entry["clips"] = len(dataset)
        entry["scores"] = evaluate_model(model, recipe, dataset, device, max_batches, **options) if len(
            dataset) else "no clips"
        results[name] = entry
    return results
