"""Build one task's corpus: plan every utterance from the seed, synthesize in parallel, write the dry
WAVs, ``manifest.jsonl``, the noise bank and ``corpus.json``.

Layout of ``out``::

    corpus.json                 task, seed, size, voices per split, counts, hours, noise kinds, versions
    manifest.jsonl              one dry utterance per line: path, split, text, label|transcript, voice, synth
    <split>/...wav              16 kHz 16-bit mono, trimmed, peak 0.9 (no augmentation)
    noise/noise.jsonl           the noise bank index; noise/<bank>/<kind>_<k>.wav
    noise/babble_src/<bank>/    the utterances the babble noise is made of
    .build/                     while building only: the plan and each finished chunk's results (to resume)

The plan (texts, voices, speaking styles) is drawn first from ``numpy.random.default_rng`` streams keyed
by (seed, task, split), so the output does not depend on worker scheduling: the same seed on the same
package versions gives byte-identical files.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model_zoo.vocab import SILENCE, SPEECH_COMMANDS_WORDS, UNKNOWN, normalize_transcript

from .noise import HELDOUT_NOISE_TYPES, NOISE_TYPES, noise_types_for_split, write_bank
from .text import keyword_free, sentence_pool, split_unknown_words, unknown_word_pool
from .tts import APT_PACKAGES, SAMPLE_RATE, python_package_versions, SynthJob, available_synthesizers, missing_packages_hint, read_wav, synthesize_batch, write_wav
from .voices import SPLITS, SYNTHESIZERS, sample_prosody, sample_voice, voice_split_summary, voices_for_split

__all__ = ["GENERATOR_VERSION", "TASKS", "PRESETS", "parse_size", "build_corpus"]

GENERATOR_VERSION = "2.0"
TASKS: tuple[str, ...] = ("kws", "asr", "denoise")
# Dry utterances per split (train, valid, test); for kws per keyword, with UNKNOWN_FACTOR times as many
# `_unknown_` words and SILENCE_FACTOR times as many `_silence_` items. "full" fits in ~15 min on 2 cores.
PRESETS: dict[str, dict[str, tuple[int, int, int]]] = {
    "kws": {"tiny": (1, 1, 1), "small": (40, 8, 8), "full": (800, 80, 120)},
    "asr": {"tiny": (4, 2, 2), "small": (600, 60, 60), "full": (12000, 400, 600)},
    "denoise": {"tiny": (4, 2, 2), "small": (300, 30, 30), "full": (3000, 200, 300)},
}
UNKNOWN_FACTOR = 6
NEAR_MISS_SHARE = 0.25
SILENCE_FACTOR = 1
RUNNING_FACTOR = 2
RUNNING_MAX_CHARS = 70  # short sentences: the dataset uses one second of each per epoch
KWS_MAX_SECONDS = 0.98  # leaves room to shift the word inside its one-second clip
SENTENCE_MAX_SECONDS = 12.0
_TASK_CODE = {"kws": 1, "asr": 2, "denoise": 3}
_CHUNK = 24
_PROGRESS = ".build"  # an unfinished build's plan and finished chunks


def parse_size(task: str, size: str) -> tuple[str, dict[str, int]]:
    """``tiny|small|full`` or ``TRAIN[,VALID,TEST]`` counts -> (name, counts per split)."""
    if size in PRESETS[task]:
        return size, dict(zip(SPLITS, PRESETS[task][size]))
    parts = [int(p) for p in size.split(",")]
    if len(parts) == 1:  # scale valid and test like the full preset
        full = PRESETS[task]["full"]
        parts = [parts[0], max(1, round(parts[0] * full[1] / full[0])), max(1, round(parts[0] * full[2] / full[0]))]
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(f"size must be one of {sorted(PRESETS[task])} or TRAIN[,VALID,TEST] counts >= 1")
    return "custom", dict(zip(SPLITS, parts))


def _job(path: str, text: str, voice_pool: dict, split: str, rng: np.random.Generator, sentence: bool) -> SynthJob:
    voice = sample_voice(rng, voice_pool, split)
    max_s = SENTENCE_MAX_SECONDS if sentence else KWS_MAX_SECONDS
    # Words that come out too long are spoken faster; sentences that do are dropped.
    return SynthJob(path, text, voice, sample_prosody(rng, sentence), max_s, 0 if sentence else 3)


def _plan_kws(seed: int, counts: dict[str, int], synths: tuple[str, ...], pool_text: list[str]) -> tuple[list[dict], list[SynthJob]]:
    """Per split: ``n`` clips of each keyword, ``UNKNOWN_FACTOR * n`` other words (a ``NEAR_MISS_SHARE`` of
    them near misses of a keyword), ``SILENCE_FACTOR * n`` silences, and in train and valid ``RUNNING_FACTOR *
    n`` keyword-free sentences (``running: true``) that the dataset crops to one-second ``_unknown_`` windows,
    so that running speech does not fire. The test split keeps to single words, so that its false alarms are
    those of unseen words; running speech is scored on whole sentences instead (``training evaluate``)."""
    rows: list[dict] = []
    jobs: list[SynthJob] = []
    train_words, held_words = split_unknown_words(seed)
    near = set(unknown_word_pool()[1])
    # Sentences for running speech come from the end of the pool, away from the ASR valid/test slices at its head.
    running = [t for t in reversed(pool_text) if len(t) <= RUNNING_MAX_CHARS and keyword_free(t)]
    for s, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, _TASK_CODE["kws"], s])
        pool = voices_for_split(split, synths)
        words = train_words if split == "train" else held_words
        near_words = [w for w in words if w in near]
        n = counts[split]
        spoken = [(w, w) for w in SPEECH_COMMANDS_WORDS for _ in range(n)]
        for _ in range(n * UNKNOWN_FACTOR):
            source = near_words if near_words and rng.random() < NEAR_MISS_SHARE else words
            spoken.append((source[int(rng.integers(len(source)))], UNKNOWN))
        for i, (word, label) in enumerate(spoken):
            path = f"{split}/{label}/{i:06d}.wav"
            jobs.append(_job(path, word, pool, split, rng, sentence=False))
            rows.append({"path": path, "split": split, "text": word, "label": label})
        if split != "test" and running:
            half = len(running) // 2 or 1  # train and valid read different sentences
            texts = running[:half] if split == "train" else running[half:] or running
            for i in range(n * RUNNING_FACTOR):
                text = texts[i % len(texts)]
                path = f"{split}/running/{i:06d}.wav"
                jobs.append(_job(path, text, pool, split, rng, sentence=True))
                rows.append({"path": path, "split": split, "text": text, "label": UNKNOWN, "running": True})
        for i in range(n * SILENCE_FACTOR):
            rows.append({"path": None, "split": split, "text": "", "label": SILENCE, "voice": None,
                         "synth": None, "seconds": 1.0})
    return rows, jobs


def _plan_sentences(task: str, seed: int, counts: dict[str, int], synths: tuple[str, ...], pool_text: list[str]) -> tuple[list[dict], list[SynthJob]]:
    rows: list[dict] = []
    jobs: list[SynthJob] = []
    # Test and valid take the first sentences of the shuffled pool, train the rest: no sentence is in
    # two splits. A train count beyond the pool repeats sentences, each time with another voice.
    slices = {"test": pool_text[: counts["test"]]}
    slices["valid"] = pool_text[counts["test"]: counts["test"] + counts["valid"]]
    rest = pool_text[counts["test"] + counts["valid"]:]
    slices["train"] = [rest[i % len(rest)] for i in range(counts["train"])]
    for s, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, _TASK_CODE[task], s])
        voice_pool = voices_for_split(split, synths)
        for i, text in enumerate(slices[split]):
            path = f"{split}/{i // 1000:03d}/{i:06d}.wav"
            jobs.append(_job(path, text, voice_pool, split, rng, sentence=True))
            rows.append({"path": path, "split": split, "text": text, "transcript": normalize_transcript(text)})
    return rows, jobs


def _plan_babble(seed: int, tiny: bool, synths: tuple[str, ...], pool_text: list[str]) -> list[SynthJob]:
    """Talkers for the babble noise: training voices for the train bank, held-out (test) voices for
    the eval bank, reading sentences from the end of the pool (never a valid/test sentence)."""
    jobs = []
    for b, (bank, split, count) in enumerate((("train", "train", 3 if tiny else 60), ("eval", "test", 3 if tiny else 30))):
        rng = np.random.default_rng([seed, 99, b])
        voice_pool = voices_for_split(split, synths)
        for k in range(count):
            text = pool_text[-1 - (b * 100 + k) % len(pool_text)]
            jobs.append(_job(f"noise/babble_src/{bank}/{k:03d}.wav", text, voice_pool, split, rng, sentence=True))
    return jobs


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one worker per core already; more threads would only contend


def _work(task: tuple[str, str, list[SynthJob]]) -> list[dict]:
    """Worker: synthesize a chunk, write its WAVs, then its results file (``.build/<chunk>.json``, written last
    and atomically: a chunk with that file is complete, and an interrupted build skips it when resumed)."""
    root, chunk_id, jobs = task
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        results = synthesize_batch(jobs, Path(tmp))
    out = []
    for job, (audio, prosody) in zip(jobs, results):
        if audio is not None:
            write_wav(Path(root) / job.key, audio)
        seconds = round(len(audio) / SAMPLE_RATE, 3) if audio is not None else None
        out.append({"key": job.key, "seconds": seconds, "prosody": asdict(prosody)})
    done = Path(root) / _PROGRESS / f"{chunk_id}.json"
    done.with_suffix(".tmp").write_text(json.dumps(out))
    done.with_suffix(".tmp").replace(done)
    return out


def _synthesize(root: Path, jobs: list[SynthJob], workers: int, progress: bool) -> dict[str, dict]:
    # festival pays ~0.5 s per process start, so its jobs travel in their own, larger chunks.
    fest = [j for j in jobs if j.voice.synth == "festival"]
    other = [j for j in jobs if j.voice.synth != "festival"]
    chunks = [other[i: i + _CHUNK] for i in range(0, len(other), _CHUNK)]
    chunks += [fest[i: i + 4 * _CHUNK] for i in range(0, len(fest), 4 * _CHUNK)]
    results: dict[str, dict] = {}
    tasks = []
    for index, chunk in enumerate(chunks):  # chunks finished by an interrupted build are read back, not redone
        done = root / _PROGRESS / f"{index:05d}.json"
        if done.is_file():
            results.update({r["key"]: r for r in json.loads(done.read_text())})
        else:
            tasks.append((str(root), f"{index:05d}", chunk))
    bar = tqdm(total=len(jobs), initial=len(results), unit="utt", desc="synthesizing", disable=not progress,
               mininterval=2.0)
    if workers <= 1:
        iterator = map(_work, tasks)
        for res in iterator:
            results.update({r["key"]: r for r in res})
            bar.update(len(res))
    else:
        with mp.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
            for res in pool.imap_unordered(_work, tasks):
                results.update({r["key"]: r for r in res})
                bar.update(len(res))
    bar.close()
    return results


def _package_versions() -> dict[str, str]:
    out = {}
    for pkg in APT_PACKAGES:
        proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True, check=False)
        out[pkg] = proc.stdout.strip() if proc.returncode == 0 else "not installed"
    return out


def build_corpus(
    task: str,
    out: str | Path,
    seed: int = 0,
    size: str = "full",
    workers: int = 2,
    progress: bool = True,
    allow_missing: bool | None = None,
) -> dict:
    """Build the ``task`` corpus into ``out`` and return its ``corpus.json`` content. ``out`` is emptied first,
    unless it holds an interrupted build of the same plan (task, seed, counts, synthesizers, generator
    version): that one resumes, keeping the chunks it finished, and ends byte-identical to an uninterrupted build.

    All three synthesizers are required unless ``allow_missing`` (default: only for ``tiny``), in which
    case the missing ones are left out and ``corpus.json`` says which were used.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    size_name, counts = parse_size(task, size)
    tiny = size_name == "tiny"
    synths = available_synthesizers()
    missing = [s for s in SYNTHESIZERS if s not in synths]
    if allow_missing is None:
        allow_missing = tiny
    if "espeak-ng" not in synths or (missing and not allow_missing):
        raise RuntimeError(f"synthesizers missing: {missing}; {missing_packages_hint()}")
    root = Path(out)
    # An interrupted build of the same corpus (same plan) resumes: its finished chunks are kept.
    plan = {"task": task, "seed": seed, "counts": counts, "synthesizers": list(synths),
            "generator_version": GENERATOR_VERSION}
    plan_file = root / _PROGRESS / "plan.json"
    resuming = plan_file.is_file() and json.loads(plan_file.read_text()) == plan
    if root.exists() and not resuming:
        shutil.rmtree(root)
    (root / _PROGRESS).mkdir(parents=True, exist_ok=True)
    plan_file.write_text(json.dumps(plan))
    started = time.perf_counter()

    pool_text = sentence_pool(seed)
    if task == "kws":
        rows, jobs = _plan_kws(seed, counts, synths, pool_text)
    else:
        rows, jobs = _plan_sentences(task, seed, counts, synths, pool_text)
    babble_jobs = _plan_babble(seed, tiny, synths, pool_text)
    results = _synthesize(root, jobs + babble_jobs, workers, progress)
    synth_seconds = time.perf_counter() - started

    by_key = {j.key: j for j in jobs}
    manifest, dropped = [], 0
    for row in rows:
        if row["path"] is None:
            manifest.append(row)
            continue
        res, job = results[row["path"]], by_key[row["path"]]
        if res["seconds"] is None:
            dropped += 1
            continue
        manifest.append({**row, "voice": job.voice.id, "synth": job.voice.synth, "prosody": res["prosody"],
                         "seconds": res["seconds"]})
    with open(root / "manifest.jsonl", "w") as handle:
        for row in manifest:
            handle.write(json.dumps(row, sort_keys=True) + "\n")

    sources = {"train": [], "eval": []}
    for job in babble_jobs:
        if results[job.key]["seconds"] is not None:
            sources[job.key.split("/")[2]].append(read_wav(root / job.key)[0])
    clips = {"train": 1, "eval": 1} if tiny else {"train": 8, "eval": 4}
    write_bank(root, seed, clips, 3.0 if tiny else 10.0, sources)

    meta = _metadata(task, seed, size_name, counts, synths, manifest, dropped, clips)
    meta["build_seconds"] = {"synthesis": round(synth_seconds, 1), "total": round(time.perf_counter() - started, 1)}
    (root / "corpus.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(root / _PROGRESS)
    return meta


def _metadata(task: str, seed: int, size_name: str, counts: dict[str, int], synths: tuple[str, ...],
              manifest: list[dict], dropped: int, clips: dict[str, int]) -> dict:
    per_split: dict[str, dict] = {}
    for split in SPLITS:
        items = [r for r in manifest if r["split"] == split]
        entry: dict = {
            "items": len(items),
            "hours_dry": round(sum(r["seconds"] for r in items if r["path"]) / 3600, 3),
            "voices_used": len({r["voice"] for r in items if r["voice"]}),
            "by_synth": {s: sum(r["synth"] == s for r in items) for s in synths},
        }
        if task == "kws":
            entry["by_label"] = {lab: sum(r["label"] == lab for r in items) for lab in dict.fromkeys(r["label"] for r in items)}
        per_split[split] = entry
    return {
        "task": task,
        "seed": seed,
        "size": size_name,
        "requested": counts,
        "generator_version": GENERATOR_VERSION,
        "sample_rate": SAMPLE_RATE,
        "synthesizers": list(synths),
        "voices": voice_split_summary(synths),
        "heldout_rule": "valid/test: espeak-ng accent en-029 or variants in ESPEAK_NG_HELDOUT_VARIANTS, "
                        "flite rms, kokoro and hibari speakers of the valid/test slots (voices.speakers_for_split); "
                        "test only: all of festival (cross-synthesizer)",
        "splits": per_split,
        "dropped_too_long_or_failed": dropped,
        "noise": {
            "types": list(NOISE_TYPES),
            "heldout_types": list(HELDOUT_NOISE_TYPES),
            "per_split": {s: {"bank": noise_types_for_split(s)[0], "types": list(noise_types_for_split(s)[1])} for s in SPLITS},
            "clips_per_type": clips,
        },
        "unknown_words": dict(zip(("train", "heldout"), split_unknown_words(seed))) if task == "kws" else None,
        "packages": _package_versions(),
        "python_packages": python_package_versions(),
    }
