"""Endpointing on held-out speech with inserted pauses: how often a final lands at the pause, and how late.

    python bench/endpointing.py --energy              # 40 joined pairs/triples, 5 noise levels, 3 thresholds
    python bench/endpointing.py --joins 10 --thresholds 0.9 --noises -80
    python bench/endpointing.py --json results.jsonl  # one JSON line per configuration too

Data: sentences of ``data/asterisk`` (real recorded speech, one speaker; the shipped recognizer was trained on
synthetic voices only, so all of it is held out), each trimmed to its speech (first to last 10 ms frame above
-50 dBFS), joined two or three at a time by ``--pause`` seconds (1.5) after a 0.3 s lead-in, with white noise at
``--noises`` dBFS RMS over the whole stream (-80: silence; -50: a quiet room; -40, -30, -20: ever noisier; speech
frames peak near -10 dBFS, so -20 is about 10 dB SNR).

The stream is run as the service runs it (:mod:`app.streaming`): the shipped recognizer steps 90 ms at a time
(``STREAM_STEP_MS`` 80 rounded up to its 30 ms frame), each step's blank posteriors go through
:class:`model_zoo.pipelines.endpoint.EndpointDetector`, and at an endpoint the utterance is cut at the end of that
step and the next one starts from a fresh state (a new session), exactly as ``/v1/stream/transcribe`` does.

Reported per configuration (noise level x blank threshold, sherpa-onnx's rule lengths 2.4 / 1.2 / 20 s unless
given): ``at pause`` - the share of pauses in which a cut lands (between the end of one sentence's speech and the
start of the next); ``late`` - seconds from the end of speech to that cut (median, 90th percentile, max);
``false cuts inside a sentence`` - cuts by rules 1 and 2 within a sentence (between its first and last speech
frame), which split it where it does not pause that long; ``rule 3`` - cuts of the 20 s maximum, which
fall inside the two sentences longer than 20 s when a stream picks them (by design). ``--energy`` adds the
baseline of a fixed energy threshold (a frame is silent below -45 dBFS) through the same rules, to show what the
recognizer's blank buys in noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_zoo.pipelines.endpoint import EndpointDetector, EndpointRules, blank_probabilities  # noqa: E402

RATE = 16000
DATA = ROOT / "data" / "asterisk"
STEP_MS = 80.0
ENERGY_SILENCE_DB = -45.0


@dataclass
class Joined:
    """One stream: the audio, and where each sentence's speech starts and ends (seconds)."""

    audio: np.ndarray
    speech: list[tuple[float, float]]


def trimmed(samples: np.ndarray, floor_db: float = -50.0) -> np.ndarray:
    """The clip from its first to its last 10 ms frame above ``floor_db``."""
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(10 * np.log10((frames ** 2).mean(1) + 1e-12) > floor_db)
    return samples[loud[0] * 160:(loud[-1] + 1) * 160] if len(loud) else samples[:0]


def sentences(min_words: int) -> list[np.ndarray]:
    from app.audio.decode import decode

    clips = []
    for line in (DATA / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["words"] >= min_words:
            speech = trimmed(decode((DATA / entry["path"]).read_bytes()).samples.numpy().astype(np.float32))
            if len(speech) > RATE // 2:
                clips.append(speech)
    return clips


def joins(clips: list[np.ndarray], count: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[clips[i] for i in rng.choice(len(clips), size=int(rng.integers(2, 4)), replace=False)]
            for _ in range(count)]


def joined(parts: list[np.ndarray], pause: float, noise_db: float, seed: int) -> Joined:
    lead = int(0.3 * RATE)
    pieces, speech, at = [np.zeros(lead, np.float32)], [], lead
    for i, part in enumerate(parts):
        speech.append((at / RATE, (at + len(part)) / RATE))
        pieces.append(part)
        at += len(part)
        if i < len(parts) - 1:
            pieces.append(np.zeros(int(pause * RATE), np.float32))
            at += int(pause * RATE)
    audio = np.concatenate(pieces)
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32) * 10 ** (noise_db / 20)
    return Joined((audio + noise).astype(np.float32), speech)


def blank_source(net: torch.nn.Module):
    """Per step: the recognizer's blank posteriors, with a fresh state after each cut (a new session)."""
    state = {"s": net.init_state(1)}

    def step(chunk: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out, state["s"] = net.step(torch.from_numpy(chunk)[None], state["s"])
        return blank_probabilities(out[0])

    def cut() -> None:
        state["s"] = net.init_state(1)

    return step, cut


def energy_source(frame: int):
    """Per step: 1 for frames under -45 dBFS, else 0 (a fixed-threshold energy VAD on the recognizer's frames)."""
    held = {"rest": np.zeros(0, np.float32)}

    def step(chunk: np.ndarray) -> np.ndarray:
        audio = np.concatenate([held["rest"], chunk])
        n = len(audio) // frame
        held["rest"] = audio[n * frame:]
        frames = audio[: n * frame].reshape(n, frame)
        return (10 * np.log10((frames ** 2).mean(1) + 1e-12) < ENERGY_SILENCE_DB).astype(np.float32)

    def cut() -> None:
        pass  # frames stay aligned: cuts fall on step ends, which are whole frames

    return step, cut


def cuts_of(stream: Joined, step_samples: int, frame_seconds: float, rules: EndpointRules, threshold: float,
            source) -> list[tuple[float, int]]:
    """The stream's cuts (seconds, rule), as /v1/stream/transcribe makes them."""
    step, cut = source
    detector = EndpointDetector(rules, frame_seconds, blank_threshold=threshold)
    cuts = []
    for start in range(0, len(stream.audio), step_samples):
        chunk = stream.audio[start:start + step_samples]
        if (endpoint := detector.push(step(chunk))) is not None:
            cuts.append(((start + len(chunk)) / RATE, endpoint.rule))
            detector.reset()
            cut()
    return cuts


def score(streams: list[Joined], all_cuts: list[list[tuple[float, int]]]) -> dict:
    pauses = hits = inside = at_length = 0
    late = []
    speech_seconds = 0.0
    for stream, cuts in zip(streams, all_cuts):
        for (s0, s1) in stream.speech:
            speech_seconds += s1 - s0
            inside += sum(s0 < c < s1 and rule != 3 for c, rule in cuts)
            at_length += sum(s0 < c < s1 and rule == 3 for c, rule in cuts)
        for (_, end), (start, _) in zip(stream.speech, stream.speech[1:]):
            pauses += 1
            landed = [c for c, _ in cuts if end <= c <= start]
            if landed:
                hits += 1
                late.append(landed[0] - end)
    late.sort()
    return {
        "pauses": pauses, "at_pause": hits / pauses if pauses else 0.0, "missed": pauses - hits,
        "late_median_s": round(statistics.median(late), 3) if late else None,
        "late_p90_s": round(late[int(0.9 * (len(late) - 1))], 3) if late else None,
        "late_max_s": round(late[-1], 3) if late else None,
        "inside_speech": inside, "inside_per_speech_minute": round(60 * inside / speech_seconds, 3),
        "max_length_cuts": at_length,
        "speech_minutes": round(speech_seconds / 60, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=40, help="streams of 2-3 joined sentences")
    parser.add_argument("--pause", type=float, default=1.5)
    parser.add_argument("--min-words", type=int, default=4, help="sentences of at least this many words")
    parser.add_argument("--noises", type=float, nargs="+", default=[-80.0, -50.0, -40.0, -30.0, -20.0],
                        help="dBFS RMS")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.9], help="P(blank) of silence")
    parser.add_argument("--after-speech", type=float, nargs="+", default=[1.2], help="rule 2 lengths (s)")
    parser.add_argument("--energy", action="store_true", help="also the fixed-threshold energy baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="append one JSON line per configuration")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    import model_zoo
    from app.streaming.live import step_samples

    net = model_zoo.load("asr").eval()
    frame = int(round(net.frame_seconds * RATE))
    step = step_samples(frame, RATE, STEP_MS)
    clips = sentences(args.min_words)
    plan = joins(clips, args.joins, args.seed)
    print(f"# {len(plan)} streams of 2-3 of {len(clips)} Asterisk sentences, {args.pause} s pauses; steps of "
          f"{step} samples; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| noise (dBFS) | silence from | rule 2 (s) | pauses | final at the pause | late: median / p90 / max (s) "
          "| false cuts inside a sentence (per speech minute) | rule 3 cuts (20 s) |")
    print("|---|---|---|---|---|---|---|---|")
    configs = [("blank", t) for t in args.thresholds] + ([("energy", ENERGY_SILENCE_DB)] if args.energy else [])
    for noise in args.noises:
        streams = [joined(parts, args.pause, noise, args.seed + i) for i, parts in enumerate(plan)]
        for after in args.after_speech:
            rules = EndpointRules(silence_after_speech=after)
            for kind, value in configs:
                started = time.perf_counter()
                all_cuts = []
                for stream in streams:
                    source = blank_source(net) if kind == "blank" else energy_source(frame)
                    all_cuts.append(cuts_of(stream, step, net.frame_seconds, rules, value if kind == "blank" else 0.5,
                                            source))
                result = score(streams, all_cuts)
                label = f"P(blank) >= {value:g}" if kind == "blank" else f"energy < {value:g} dBFS"
                late = " / ".join("-" if result[k] is None else f"{result[k]:.2f}"
                                  for k in ("late_median_s", "late_p90_s", "late_max_s"))
                print(f"| {noise:g} | {label} | {after:g} | {result['pauses']} | {100 * result['at_pause']:.0f}% "
                      f"| {late} | {result['inside_speech']} ({result['inside_per_speech_minute']:.2f}) "
                      f"| {result['max_length_cuts']} |", flush=True)
                if args.json:
                    with args.json.open("a") as out:
                        out.write(json.dumps({"noise_db": noise, "silence": kind, "threshold": value,
                                              "after_speech": after, **result,
                                              "seconds": round(time.perf_counter() - started, 1)}) + "\n")


if __name__ == "__main__":
    main()
