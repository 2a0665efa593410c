"""The peer benchmark's tables: each task's Markdown table, the verdict lines, and the report of a results file.

Part of ``bench/peers.py`` (which re-exports every name here); ``bench/report.py`` calls ``markdown_table``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from peers_catalog import (DATA_SETS, FESTIVAL, LABELS, NOISY, OUR_SYSTEMS, OURS, OURS_LM, PEERS, REAL, RESULT_KEYS,
                           RESULTS_PATH, SYNTHETIC, TASKS)
from peers_scoring import COLUMN_NAMES


def fmt(value: float | None, digits: int = 2, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


# How the verdict lines and tables name a set (the synthetic set is the task's plain name, as in older files).
SET_TITLES = {SYNTHETIC: "", FESTIVAL: "festival voices", REAL: "real speech"}


def clips_described(result: dict, held_out: str, real: str) -> str:
    """A table title's clips: their count and set (``result["data"]``; results of older runs have none on the
    synthetic split, whose clips were a sample of the whole split), and whether they are a sample of the set."""
    data = result.get("data")
    if data == REAL:
        what = f"{real} ({result.get('corpus')})"
    elif data == FESTIVAL:
        what = f"{held_out} of the festival voices (a synthesizer training never used)"
    elif data == SYNTHETIC:
        what = f"{held_out} (festival voices left out)"
    else:
        what = held_out
    whole = result.get("set_clips")
    sampled = f", spread over the set's {whole}" if whole is not None and whole != result["clips"] else ""
    return f"{result['clips']} {what}{sampled}"


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
    what = clips_described(result, "held-out clips", "real recorded sentences mixed with held-out noise")
    parts = [f"Denoising: {what}, {result['audio_seconds'] / 60:.1f} min of audio\n\n{main}"]
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
    what = clips_described(result, "held-out utterances", "real recorded utterances")
    return (f"Transcription: {what}, {result['audio_seconds'] / 60:.1f} min of audio\n\n"
            + table(["system", "WER", "CER", "RTF (1 thread)"], rows))


def kws_table(result: dict) -> str:
    systems = result["systems"]
    rows = [[LABELS.get(n, n), fmt(systems[n]["accuracy"], percent=True),
             fmt(systems[n].get("keyword_accuracy"), percent=True), fmt(systems[n]["balanced_accuracy"], percent=True),
             fmt(systems[n]["false_alarms_unknown"], percent=True), fmt(systems[n]["false_alarms_noise"], percent=True),
             fmt(systems[n]["rtf"], 4)] for n in ordered(systems)]
    what = clips_described(result, "held-out one-second clips", "real recorded clips")
    keywords = result["clips"] - result["unknown_clips"] - result["silence_clips"]
    return (f"Keyword spotting: {what} ({keywords} keywords, {result['unknown_clips']} unknown words, "
            f"{result['silence_clips']} silence/noise)\n\n"
            + table(["system", "accuracy (37 classes)", "on keyword clips", "balanced accuracy", "false alarms on unknown words",
                     "false alarms on noise", "RTF (1 thread)"], rows))


TASK_TABLES: dict[str, Callable[[dict], str]] = {"denoise": denoise_tables, "asr": asr_table, "kws": kws_table}


def task_results(results: dict) -> list[tuple[str, str, dict]]:
    """(name, task, result) of every task and set scored, in the order of the card's sets: the synthetic set
    (``results["tasks"]``, named "TASK"), festival (``results["festival"]``, "TASK (festival voices)"), real
    speech (``results["real"]``, "TASK (real speech)")."""
    found = []
    for data_set in DATA_SETS:
        scored = results.get(RESULT_KEYS[data_set]) or {}
        title = SET_TITLES[data_set]
        found += [(f"{task} ({title})" if title else task, task, scored[task]) for task in TASKS if task in scored]
    return found


def verdict_lines(results: dict) -> list[str]:
    """One line per task and configuration of ours: where it is ahead of every peer and where not, with the numbers."""
    lines = []
    for name, task, result in task_results(results):
        if OURS not in result["systems"]:
            lines.append(f"- {name}: our model failed: {results['skipped'].get(OURS, 'see the log')}")
            continue
        for ours_name, key in ((OURS, "verdict"), (OURS_LM, "verdict_lm")):
            if ours_name not in result["systems"]:
                continue
            columns = result.get(key, {})
            title = name if ours_name == OURS else f"{name} ({LABELS[OURS_LM]})"
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
    parts = [TASK_TABLES[task](result) for _, task, result in task_results(results)]
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

