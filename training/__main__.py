"""Command line of the training package: ``python -m training <command> ...``.

Each sub-command is one small ``_cmd_*`` function registered in :func:`build_parser`: ``corpus`` (here) builds
the synthetic corpora; ``train``, ``evaluate``, ``reproduce`` and ``ship`` live in :mod:`training.commands`.
The word language model has its own command line, ``python -m training.lm``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from training.commands import add_training_commands


def _cmd_corpus(args: argparse.Namespace) -> int:
    # Imported here so that other sub-commands do not pay for (or depend on) the corpus code.
    from training.corpus import build_corpus

    meta = build_corpus(args.task, args.out, seed=args.seed, size=args.size, workers=args.workers,
                        progress=not args.quiet, allow_missing=True if args.allow_missing else None)
    summary = {split: {k: v for k, v in entry.items() if k in ("items", "hours_dry", "voices_used")}
               for split, entry in meta["splits"].items()}
    print(json.dumps({"out": str(args.out), "task": meta["task"], "size": meta["size"], "splits": summary,
                      "build_seconds": meta["build_seconds"]}, indent=2))
    return 0


def _add_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="synthesize a KWS, ASR or denoising corpus from offline TTS engines",
                       description="Synthesize the dry utterances, the noise bank and corpus.json into --out "
                                   "(emptied first, unless it holds an interrupted build of the same corpus, which "
                                   "resumes). Deterministic for a given --seed and package versions.")
    p.add_argument("task", choices=("kws", "asr", "denoise"))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="full",
                   help="tiny | small | full, or TRAIN[,VALID,TEST] counts of dry utterances per split "
                        "(kws: per keyword); default full")
    p.add_argument("--workers", type=int, default=2, help="synthesis processes (default 2)")
    p.add_argument("--allow-missing", action="store_true",
                   help="build with the installed synthesizers only (always allowed for --size tiny)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_corpus)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_corpus(sub)
    add_training_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
