"""The bad-input fuzzers of ``tests/app/test_fuzz.py`` with more examples, on demand; prints the cases per endpoint.

The tests run in CI with a small count (``CENTAURUS_FUZZ_EXAMPLES``, default 40 per endpoint and generation
mode). This runs exactly the same tests, against the same real server on loopback, with ``--examples`` each,
writes the counts to ``--json`` (default ``bench/results/fuzz.json``) and prints them as a table. Exit status
is pytest's: non-zero when any input got a 5xx, hung, or crashed a worker.

    python bench/fuzz.py --examples 500
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="hypothesis examples per endpoint and mode")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k schemathesis)")
    args = parser.parse_args(argv)
    env = {**os.environ, "CENTAURUS_FUZZ_EXAMPLES": str(args.examples), "CENTAURUS_FUZZ_REPORT": str(args.json)}
    started = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "pytest", str(ROOT / "tests" / "app" / "test_fuzz.py"), "-q",
                            "-p", "no:cacheprovider", *args.pytest_args], cwd=ROOT, env=env)
    minutes = (time.monotonic() - started) / 60
    if not args.json.exists():
        print("no counts written (did the tests run?)", file=sys.stderr)
        return code or 1
    report = json.loads(args.json.read_text())
    report.update(pytest_exit=code, minutes=round(minutes, 1))
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'endpoint':<32}{'cases':>8}")
    for endpoint, count in report["cases"].items():
        print(f"{endpoint:<32}{count:>8}")
    print(f"{'total':<32}{sum(report['cases'].values()):>8}   ({minutes:.1f} min, pytest exit {code})")
    print(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main())
