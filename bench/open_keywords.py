"""Open-vocabulary keywords on held-out real speech: recall of words that are said, false alarms of words that are not.

    python bench/open_keywords.py                                  # 484 Asterisk prompts, thresholds 0.3-0.8
    python bench/open_keywords.py --thresholds 0.5 --ratios 0.05   # one configuration
    python bench/open_keywords.py --limit 50                       # a quick look
    python bench/open_keywords.py --lookahead 1000                 # decided with the whole clip in view

Data: every prompt of ``data/asterisk`` (real recorded speech, one professional speaker, 15.6 min; the shipped
recognizer was trained on synthetic voices only, so all of it is held out), with its transcript. Each clip runs
through the shipped recognizer alone, as ``POST /keywords`` runs it, and its log-probabilities are searched for
every keyword at once by :func:`model_zoo.pipelines.open_keywords.search` (once per ``--ratios`` value of
``MIN_FRAME_RATIO``, at the lowest threshold; a higher threshold keeps the detections that score at least that
much, so every threshold comes from the same search: exactly, unless an occurrence below the higher threshold was
decided before a better one overlapping it ended ``LOOKAHEAD_SECONDS`` later, which this data never has, checked).
``--lookahead`` sets that decision time (seconds after a candidate's end; the service's is ``LOOKAHEAD_SECONDS``).

Keywords: ``PRESENT``, the 20 content words (4 letters or more, no function words) said in the most prompts plus
four frequent two-word phrases; ``ABSENT``, everyday words and phrases of a voice assistant that no transcript
holds, not even inside a longer word.

Scored per clip from its transcript (the prompts carry no word times): a present keyword said ``n`` times in a
clip and detected ``d`` times there counts ``min(n, d)`` hits and ``max(0, d - n)`` false alarms; recall is hits
over all ``n``. Every detection of an absent keyword is a false alarm. False alarms per hour are per keyword: the
false alarms over (keywords x hours of audio), the rate one keyword would set off. For comparison, the same
counts for searching the recognizer's own transcripts for the keywords as whole words (greedy, and beam search
with its language model), which is what a client of ``POST /transcribe`` could do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import model_zoo  # noqa: E402
from model_zoo.pipelines.asr import Recognizer  # noqa: E402
from model_zoo.pipelines.open_keywords import (DEFAULT_THRESHOLD, LOOKAHEAD_SECONDS, MIN_FRAME_RATIO,  # noqa: E402
                                               OpenKeyword, search)

PRESENT = ("conference", "please", "number", "pound", "enter", "call", "message", "press", "currently", "followed",
           "again", "extension", "volume", "participants", "sorry", "audio", "password", "tone", "first", "hold",
           "pound key", "please enter", "try again", "other participants")
ABSENT = ("zebra", "kitchen", "lights", "weather", "music", "alarm", "timer", "window", "garden", "coffee", "yellow",
          "travel", "doctor", "picture", "morning", "family", "dinner", "computer", "marvin", "sheila",
          "hey computer", "turn on the lights", "good night", "open the door")


def said(keyword: str, text: str) -> int:
    """How often ``keyword`` occurs in ``text`` as whole words."""
    return len(re.findall(rf"(?<!\S){re.escape(keyword)}(?!\S)", text))


def score(found: list[Counter], transcripts: list[str], present: list[str], absent: list[str], hours: float) -> dict:
    """Recall of ``present`` and false alarms per keyword-hour, from detection counts per clip."""
    occurrences = hits = present_false = absent_false = 0
    for counts, text in zip(found, transcripts):
        for keyword in present:
            n, d = said(keyword, text), counts.get(keyword, 0)
            occurrences, hits, present_false = occurrences + n, hits + min(n, d), present_false + max(0, d - n)
        absent_false += sum(counts.get(keyword, 0) for keyword in absent)
    return {"recall": hits / occurrences, "hits": hits, "occurrences": occurrences,
            "absent_false_alarms": absent_false, "absent_fa_per_keyword_hour": absent_false / (len(absent) * hours),
            "present_false_alarms": present_false,
            "present_fa_per_keyword_hour": present_false / (len(present) * hours)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.02, MIN_FRAME_RATIO, 0.1],
                        help="MIN_FRAME_RATIO values to compare")
    parser.add_argument("--no-boundaries", action="store_true",
                        help="also without the word-boundary rule (to see what it costs and saves)")
    parser.add_argument("--lookahead", type=float, default=LOOKAHEAD_SECONDS,
                        help="seconds after a candidate's end it is decided (a large value: the whole clip in view)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "asterisk")
    args = parser.parse_args(argv)

    from training.datasets.asterisk import AsteriskASR

    torch.set_num_threads(1)
    data = AsteriskASR(args.data)
    indices = range(len(data) if args.limit is None else min(args.limit, len(data)))
    transcripts = [data.transcript(i) for i in indices]
    present = [k for k in PRESENT if any(said(k, t) for t in transcripts)]
    absent = [k for k in ABSENT if not any(k in t for t in transcripts)]
    model = model_zoo.load("asr").eval()
    recognizer = Recognizer(model)
    weights = hashlib.sha256((ROOT / "model_zoo" / "checkpoints" / "asr.safetensors").read_bytes()).hexdigest()[:12]
    started = time.process_time()
    logits, seconds = [], 0.0
    for i in indices:
        wave = torch.from_numpy(data.clean(i))
        seconds += len(wave) / model.card.sample_rate
        with torch.inference_mode():
            logits.append(model(wave[None])[0])
    hours = seconds / 3600
    print(f"# {len(logits)} Asterisk prompts, {seconds / 60:.1f} min; {len(present)} keywords said, {len(absent)} "
          f"never said; recognizer asr.safetensors {weights}, {time.process_time() - started:.0f} s CPU; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    rows = []
    for name, beam in (("greedy transcript", False), ("beam-search transcript", True)):
        texts = [recognizer.decode(lg, beam_search=beam).text for lg in logits]
        counts = [Counter({k: said(k, text) for k in present + absent}) for text in texts]
        rows.append({"method": name, **score(counts, transcripts, present, absent, hours)})
    floor = min(args.thresholds)
    keywords = [OpenKeyword(k, threshold=floor) for k in present + absent]
    settings = [(ratio, True) for ratio in args.ratios] + ([(MIN_FRAME_RATIO, False)] if args.no_boundaries else [])
    for ratio, boundaries in settings:
        started = time.process_time()
        detections = [search(lg.T, keywords, recognizer.vocab, recognizer.frame_seconds, min_frame_ratio=ratio,
                             word_boundaries=boundaries, lookahead=args.lookahead) for lg in logits]
        cpu = time.process_time() - started
        for threshold in args.thresholds:
            counts = [Counter(d.keyword for d in found if d.score >= threshold) for found in detections]
            rows.append({"method": "open search" + ("" if boundaries else ", no word boundaries"),
                         "min_frame_ratio": ratio, "threshold": threshold,
                         **score(counts, transcripts, present, absent, hours), "search_rtf": cpu / seconds})

    print("| method | MIN_FRAME_RATIO | threshold | recall of said keywords | false alarms per keyword-hour: never "
          "said keywords (count) | said keywords, where not said (count) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        default = (row.get("threshold") == DEFAULT_THRESHOLD and row.get("min_frame_ratio") == MIN_FRAME_RATIO
                   and row["method"] == "open search")
        mark = "**" if default else ""
        print(f"| {row['method']} | {row.get('min_frame_ratio', '-')} | {mark}{row.get('threshold', '-')}{mark} "
              f"| {100 * row['recall']:.1f}% ({row['hits']}/{row['occurrences']}) "
              f"| {row['absent_fa_per_keyword_hour']:.1f} ({row['absent_false_alarms']}) "
              f"| {row['present_fa_per_keyword_hour']:.1f} ({row['present_false_alarms']}) |")
    search_rtf = {(r["method"], r["min_frame_ratio"]): r["search_rtf"] for r in rows if "search_rtf" in r}
    print(f"# search CPU per audio second with {len(keywords)} keywords: "
          + ", ".join(f"{v:.4f} ({method}, ratio {ratio})" for (method, ratio), v in search_rtf.items()))
    print(json.dumps({"asr_sha256": weights, "clips": len(logits), "minutes": round(seconds / 60, 2),
                      "lookahead": args.lookahead, "present": present, "absent": absent,
                      "rows": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
