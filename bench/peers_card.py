"""Put the peers' scores of ``bench/peers.py`` results into the shipped model cards, where the clips are the card's.

A model card scores its checkpoint on three sets (``python -m training evaluate``). A user comparing us with
Whisper or NSNet2 wants their scores beside ours, on the same clips. ``bench/peers.py`` measures them; this
writes, for each task and set of a result file, the other systems' scores into the card (``ModelCard.peers``)
and renders its Markdown again. A set is taken only when it holds as many clips as the card's set of that name
(the peers' run may have sampled fewer), and a synthetic set only from a run that says it ran on that set (runs
before the card's sets sampled the whole test split); what is skipped is said. Our own rows of the peers' run
are left out: the card's scores are ours.

    python bench/peers_card.py bench/results/peers.json bench/results/peers-real.json

A retrained checkpoint keeps these (``training.reproduce.kept_peers``): a peer's score depends on the clips only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):  # the project, and peers_catalog beside this script
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from model_zoo.card import load_card  # noqa: E402
from model_zoo.checkpoint import CHECKPOINT_DIR  # noqa: E402
from peers_catalog import RESULT_KEYS, SYNTHETIC  # noqa: E402
from training.reproduce import write_model_card  # noqa: E402

OURS = {"centaurus", "centaurus-lm"}
NOT_SCORES = {"examples", "notes", "load_seconds", "hypotheses_with_digits", "count", "delay_samples",
              "by_noise", "by_snr", "overall"}


def system_scores(system: dict) -> dict[str, float]:
    """One system's metrics from a peers result: the real set's flat dict, or the split's ``overall`` plus RTF;
    a metric the set could not measure (NaN: no clips of that kind) is left out."""
    flat = {**system.get("overall", {}), **system}
    return {k: round(v, 4) for k, v in flat.items()
            if k not in NOT_SCORES and isinstance(v, (int, float)) and math.isfinite(v)}  # NaN: not measured


def peer_sets(result: dict) -> dict[tuple[str, str], dict]:
    """``(task, set) -> {"clips", "systems", ...}`` of a ``bench/peers.py`` result file, for every set it holds:
    ``"tasks"`` is the synthetic set, ``"festival"`` and ``"real"`` theirs (``peers_catalog.RESULT_KEYS``)."""
    return {(task, name): entry for name, key in RESULT_KEYS.items() for task, entry in (result.get(key) or {}).items()}


def not_the_card_set(name: str, entry: dict) -> str | None:
    """Why an entry is not on the card's set although its clip count may match, else None: runs before the
    card's sets sampled the whole test split, festival voices included, for the synthetic entry (they record no
    ``data``); their real-speech entries were the card's set already."""
    if name == SYNTHETIC and entry.get("data") != SYNTHETIC:
        return "an older run on a sample of the whole test split (festival voices included), not the card's set"
    return None


def attach(result_path: Path, checkpoint_dir: Path = CHECKPOINT_DIR, log=print) -> int:
    """Write the peers of ``result_path`` into the cards of ``checkpoint_dir``; returns the sets written."""
    result = json.loads(result_path.read_text())
    labels = {key: peer.get("label", key) for key, peer in (result.get("peers") or {}).items()}
    written = 0
    for (task, name), entry in peer_sets(result).items():
        card_path = checkpoint_dir / f"{task}.json"
        if not card_path.exists():
            log(f"{task}/{name}: no shipped card")
            continue
        card = load_card(card_path)
        clips = ((card.evaluation or {}).get("sets", {}).get(name) or {}).get("clips")
        if reason := not_the_card_set(name, entry):
            log(f"{task}/{name}: skipped, {reason}")
            continue
        if clips != entry["clips"]:
            log(f"{task}/{name}: skipped, the peers ran on {entry['clips']} clips and the card's set has {clips}")
            continue
        systems = {labels.get(key, key): system_scores(system) for key, system in entry["systems"].items()
                   if key not in OURS}
        source = f"`bench/peers.py`, {result.get('date', 'undated')}, {result.get('machine', '')}".rstrip(", ")
        peers = {**(card.peers or {}), name: {"clips": clips, "source": source, "systems": systems}}
        card = dataclasses.replace(card, peers=peers)
        card_path.write_text(card.to_json())
        write_model_card(card_path.with_suffix(".md"), card)
        log(f"{task}/{name}: {len(systems)} systems on {clips} clips -> {card_path}")
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="bench/peers.py result JSON files")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINT_DIR)
    args = parser.parse_args(argv)
    written = sum(attach(path, args.checkpoints) for path in args.results)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
