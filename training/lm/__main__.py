"""``python -m training.lm build OUT``: the general-English 3-gram ARPA (``.gz`` for gzip) for beam search."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.lm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the ARPA file from the CMU en-us 3-gram (pocketsphinx)")
    build.add_argument("out", help="output path, e.g. model_zoo/checkpoints/english.arpa.gz")
    build.add_argument("--source", default=None, help="en-us.lm.bin (default: pocketsphinx's, else Debian's)")
    build.add_argument("--bigrams", type=int, default=400_000, help="bigrams kept (default 400000)")
    build.add_argument("--trigrams", type=int, default=200_000, help="trigrams kept (default 200000)")
    build.add_argument("--no-transcripts", action="store_true", help="do not add the training transcripts' words")
    build.add_argument("--seed", type=int, default=0, help="corpus seed of the training transcripts")
    build.add_argument("--held-out", type=int, default=500, help="first pool sentences left out (valid+test)")
    args = parser.parse_args(argv)
    from .build import build as run_build

    summary = run_build(args.out, args.source, args.bigrams, args.trigrams, not args.no_transcripts, args.seed,
                        args.held_out)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
