"""The peer benchmark's clips: the held-out split of the synthetic corpora, and real recorded speech.

Part of ``bench/peers.py`` (which re-exports every name here). Every system reads the same 16-bit WAVs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from peers_catalog import ROOT, SAMPLE_RATE, Clip

# Small held-out splits built when data/corpus is missing: TRAIN,VALID,TEST counts (kws: per keyword).
FALLBACK_CORPUS_SIZES = {"denoise": "1,1,40", "asr": "1,1,60", "kws": "1,1,8"}


def corpus_root(task: str, preferred: Path, fallback: Path, log: Callable[[str], None]) -> Path:
    """The corpus the shipped recipe of ``task`` trains on (``preferred/asr`` for denoise: it trains on the
    recognizer's sentences), when built, else a small one built into ``fallback/task``."""
    from training.recipes import SHIPPED, get_recipe

    folder = Path(get_recipe(SHIPPED[task]).data_root).name
    if (preferred / folder / "corpus.json").is_file():
        return preferred / folder
    target = fallback / task
    if not (target / "corpus.json").is_file():
        from training.corpus import build_corpus

        log(f"{preferred / task} has no corpus: building a small held-out one into {target} (a few minutes)")
        build_corpus(task, target, size=FALLBACK_CORPUS_SIZES[task], workers=2, progress=False, allow_missing=True)
    return target


def spread(count: int, available: int) -> list[int]:
    """``count`` indices spread evenly over ``range(available)``: the manifest is ordered by class and
    synthesizer, so an even spread keeps their proportions."""
    if count >= available:
        return list(range(available))
    return sorted({int(round(i)) for i in np.linspace(0, available - 1, count)})


def _write_clip(task: str, dataset, index: int, name: str, out: Path) -> Clip:
    """Item ``index`` of ``dataset`` as ``out/NAME.wav`` with its reference (clean signal, transcript or label)."""
    from model_zoo.vocab import KWS_LABELS
    from training.corpus.tts import write_wav

    audio, target = dataset[index]
    clip = Clip(name, out / f"{name}.wav", len(audio) / SAMPLE_RATE)
    write_wav(clip.wav, audio.numpy())
    if task == "denoise":
        info = dataset.pair_info(index)
        # The reference at the WAV's scale: write_wav maps 1.0 to 32767 and read_wav divides by 32768.
        clip.clean, clip.snr, clip.noise = target.numpy() * (32767 / 32768), float(info["snr"]), info["noise"]
    elif task == "asr":
        clip.transcript = target
    else:
        clip.label = KWS_LABELS[int(target)]
    return clip


def prepare_clips(task: str, root: Path, count: int, out: Path) -> list[Clip]:
    """Write ``count`` test items of ``task`` as WAVs into ``out`` and return them with their references."""
    from training.corpus import ASRCorpus, DenoiseCorpus, KWSCorpus

    out.mkdir(parents=True, exist_ok=True)
    dataset = {"denoise": lambda: DenoiseCorpus(root, "test", segment_seconds=None),
               "asr": lambda: ASRCorpus(root, "test"), "kws": lambda: KWSCorpus(root, "test")}[task]()
    return [_write_clip(task, dataset, index, f"{index:05d}", out) for index in spread(count, len(dataset))]


# --- real speech -----------------------------------------------------------------------------------------------
REAL_CACHE = ROOT / "data" / "asterisk"  # training.datasets.asterisk's cache (decoded WAVs + manifest), built if missing
REAL_SOURCE = "Asterisk prompts, Allison Smith, Debian asterisk-core-sounds-en-g722"


def real_dataset(task: str, root: Path = REAL_CACHE):
    """The real-speech view of ``task``: ``AsteriskASR`` (every kept prompt, its normalised transcript) or
    ``AsteriskKWS`` (the single-word prompts, silence-trimmed and centred in one second: the 35 keywords as
    themselves, every other word ``_unknown_``); ``training.datasets.asterisk`` builds its cache when missing."""
    from training.datasets.asterisk import AsteriskASR, AsteriskKWS

    if task == "asr":
        return AsteriskASR(root)
    if task == "kws":
        return AsteriskKWS(root, include_unknown=True)
    raise ValueError(f"the real-speech set has no {task} view (asr, kws only)")


def prepare_real_clips(task: str, count: int | None, out: Path, root: Path = REAL_CACHE) -> list[Clip]:
    """Write ``count`` (None: all) clips of the real-speech set for ``task`` as WAVs into ``out``, spread
    evenly over the set (sorted by prompt name), with their references, like :func:`prepare_clips`."""
    out.mkdir(parents=True, exist_ok=True)
    dataset = real_dataset(task, root)
    names = {index: f"{index:05d}-{dataset.info(index)['key'].replace('/', '_')}"
             for index in spread(len(dataset) if count is None else count, len(dataset))}
    return [_write_clip(task, dataset, index, name, out) for index, name in names.items()]
