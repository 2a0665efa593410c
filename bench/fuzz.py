"""The bad-input fuzzers of ``tests/app/test_fuzz*.py`` with more examples, on demand; prints the cases per endpoint.

One module per protocol: ``test_fuzz.py`` (the upload endpoints, schemathesis on ``/openapi.json``, the three
stream websockets and their endpoint options), ``test_fuzz_sse.py`` (``stream=true`` uploads),
``test_fuzz_realtime.py`` (OpenAI Realtime, ``/v1/realtime``) and ``test_fuzz_wyoming.py`` (Wyoming over TCP).
The tests run in CI with a small count (``CENTAURUS_FUZZ_EXAMPLES``, default 40 per endpoint and generation
mode). This runs exactly the same tests, against the same real server on loopback, with ``--examples`` each,
writes the counts to ``--json`` (default ``bench/results/fuzz.json``) and prints them as a table. Exit status
is pytest's: non-zero when any input got a 5xx, a traceback, a wrong error shape, an unexpected close, hung, leaked
a session, or crashed a worker.

    python bench/fuzz.py --examples 500
    python bench/fuzz.py --examples 2000 --modules realtime wyoming      # some protocols only
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
MODULES = {"http": "test_fuzz.py", "sse": "test_fuzz_sse.py", "realtime": "test_fuzz_realtime.py",
           "wyoming": "test_fuzz_wyoming.py"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="hypothesis examples per endpoint and mode")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=sorted(MODULES),
                        help="which fuzz modules (default: all)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k schemathesis)")
    args = parser.parse_args(argv)
    env = {**os.environ, "CENTAURUS_FUZZ_EXAMPLES": str(args.examples), "CENTAURUS_FUZZ_REPORT": str(args.json)}
    args.json.unlink(missing_ok=True)  # counts of an earlier run must not pass for this one's
    started = time.monotonic()
    modules = [str(ROOT / "tests" / "app" / MODULES[name]) for name in args.modules]
    code = subprocess.call([sys.executable, "-m", "pytest", *modules, "-q", "-p", "no:cacheprovider",
                            *args.pytest_args], cwd=ROOT, env=env)
    minutes = (time.monotonic() - started) / 60
    if not args.json.exists():
        print("no counts written (did the tests run?)", file=sys.stderr)
        return code or 1
    report = json.loads(args.json.read_text())
    report.update(pytest_exit=code, minutes=round(minutes, 1))
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'endpoint':<48}{'cases':>8}")
    for endpoint, count in report["cases"].items():
        print(f"{endpoint:<48}{count:>8}")
    print(f"{'total':<48}{sum(report['cases'].values()):>8}   ({minutes:.1f} min, pytest exit {code})")
    print(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main())
