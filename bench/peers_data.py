"""The peer benchmark's clips: the sets a model card is scored on, clip for clip.

Part of ``bench/peers.py`` (which re-exports every name here). Each set is what
``training.evaluation.evaluation_sets`` gives for the shipped recipe of a task (``synthetic``: the synthetic test
split without festival voices; ``festival``: its festival part; ``real``: the Asterisk prompts), so the clips are
the card's by construction; they are written as the 16-bit WAVs every system reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from peers_catalog import REAL, ROOT, SAMPLE_RATE, UNRECORDED, Clip

# Small held-out splits built when data/corpus is missing: TRAIN,VALID,TEST counts (kws: per keyword).
FALLBACK_CORPUS_SIZES = {"denoise": "1,1,40", "asr": "1,1,60", "kws": "1,1,8"}
REAL_CACHE = ROOT / "data" / "asterisk"  # training.datasets.asterisk's cache (decoded WAVs + manifest), built if missing
REAL_SOURCE = "Asterisk prompts, Allison Smith, Debian asterisk-core-sounds-en-g722"


def preferred_root(task: str, preferred: Path) -> Path:
    """Where under ``preferred`` the corpus of the shipped recipe of ``task`` lives: the folder its ``data_root``
    names (``asr`` for denoise: it trains on the recognizer's sentences)."""
    from training.recipes import SHIPPED, get_recipe

    return preferred / Path(get_recipe(SHIPPED[task]).data_root).name


def corpus_root(task: str, preferred: Path, fallback: Path, log: Callable[[str], None]) -> Path:
    """The corpus the shipped recipe of ``task`` trains on (:func:`preferred_root`), when built, else a small one
    built into ``fallback/task``."""
    root = preferred_root(task, preferred)
    if (root / "corpus.json").is_file():
        return root
    target = fallback / task
    if not (target / "corpus.json").is_file():
        from training.corpus import build_corpus

        log(f"{root} has no corpus: building a small held-out one into {target} (a few minutes)")
        build_corpus(task, target, size=FALLBACK_CORPUS_SIZES[task], workers=2, progress=False, allow_missing=True)
    return target


def card_recipe(task: str, data_root: Path):
    """The shipped recipe of ``task`` (what its card was scored with), reading its corpus from ``data_root``: the
    recipe's own ``data_root`` is relative to the working directory, and a missing corpus has a fallback."""
    from training.recipes import SHIPPED, get_recipe

    return dataclasses.replace(get_recipe(SHIPPED[task]), data_root=str(data_root))


def set_recipe(task: str, data_set: str, preferred: Path, fallback: Path, log: Callable[[str], None]):
    """:func:`card_recipe` for ``data_set``: the synthetic sets need a built corpus (:func:`corpus_root`); the real
    set needs none (the denoiser's noise comes from the preferred corpus when built, else is regenerated, as
    ``training.datasets.asterisk.heldout_noise_bank`` does for the card)."""
    root = preferred_root(task, preferred) if data_set == REAL else corpus_root(task, preferred, fallback, log)
    return card_recipe(task, root)


def card_set(recipe, name: str, real_root: Path = REAL_CACHE):
    """Set ``name`` of the test split exactly as the model card is scored on it (``evaluation_sets``); raises
    ``training.evaluation.SetUnavailable`` with the reason when it cannot be built here."""
    from training.evaluation import SetUnavailable, evaluation_sets

    dataset = evaluation_sets(recipe, (name,), split="test", real_root=str(real_root))[name]
    if isinstance(dataset, str):
        raise SetUnavailable(f"{recipe.task} {name} set: {dataset}")
    return dataset


def set_source(dataset, name: str) -> str:
    """Where a set's clips come from, for the results: the corpus folder, or the real recordings (and, for the
    denoiser, the noise they are mixed with)."""
    if name == REAL:
        noise = getattr(dataset, "noise_source", None)
        return f"{REAL_SOURCE}; noise: {noise}" if noise else REAL_SOURCE
    root = Path(dataset.root)
    return str(root.relative_to(ROOT) if root.is_relative_to(ROOT) else root)


def spread(count: int, available: int) -> list[int]:
    """``count`` indices spread evenly over ``range(available)``: the manifest is ordered by class and
    synthesizer, so an even spread keeps their proportions."""
    if count >= available:
        return list(range(available))
    return sorted({int(round(i)) for i in np.linspace(0, available - 1, count)})


def clip_name(dataset, index: int) -> str:
    """The clip's file name: its index in the set, plus the prompt's key where the set has one (real speech)."""
    key = dataset.info(index).get("key")
    return f"{index:05d}-{key.replace('/', '_')}" if key else f"{index:05d}"


def _write_clip(task: str, dataset, index: int, name: str, out: Path) -> Clip:
    """Item ``index`` of ``dataset`` as ``out/NAME.wav`` with its reference (clean signal, transcript or label).
    A denoise set without a ``pair_info`` (or one that leaves the SNR or noise kind out) is still scored: the
    missing breakdown key reads ``unrecorded``."""
    from model_zoo.vocab import KWS_LABELS
    from training.corpus.tts import write_wav

    audio, target = dataset[index]
    clip = Clip(name, out / f"{name}.wav", len(audio) / SAMPLE_RATE)
    write_wav(clip.wav, audio.numpy())
    if task == "denoise":
        info = dataset.pair_info(index) if hasattr(dataset, "pair_info") else {}
        # The reference at the WAV's scale: write_wav maps 1.0 to 32767 and read_wav divides by 32768.
        clip.clean = target.numpy() * (32767 / 32768)
        clip.snr = float(info["snr"]) if info.get("snr") is not None else None
        clip.noise = info.get("noise") or UNRECORDED
    elif task == "asr":
        clip.transcript = target
    else:
        clip.label = KWS_LABELS[int(target)]
    return clip


def prepare_set_clips(task: str, dataset, count: int | None, out: Path) -> list[Clip]:
    """Write the items of ``dataset`` (a set of :func:`card_set`) as WAVs into ``out``: all of them (``count``
    None: the card's set, clip for clip), or ``count`` spread evenly over it; with their references."""
    out.mkdir(parents=True, exist_ok=True)
    indices = spread(len(dataset) if count is None else count, len(dataset))
    return [_write_clip(task, dataset, index, clip_name(dataset, index), out) for index in indices]
