"""What the fuzz modules (``test_fuzz*.py``) share: the example count, hypothesis settings, the tally of cases per
endpoint and its report, the module fixtures every fuzz module imports (``server``, ``report_counts``), and the
checks that the server is still serving.

``CENTAURUS_FUZZ_EXAMPLES`` sets the examples per endpoint and mode (default 40, bounded so CI stays fast);
``bench/fuzz.py`` runs every fuzz module with larger counts. The cases tried are printed at the end of each
module (all modules so far) and written as JSON to ``CENTAURUS_FUZZ_REPORT`` when that is set.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from bad_input import INTERNALS
from hypothesis import HealthCheck, settings

__all__ = ["EXAMPLES", "REQUEST_TIMEOUT", "CLIENT_ERRORS", "FUZZ", "cases_tried", "report", "server", "report_counts",
           "assert_still_serving", "assert_error_envelope", "assert_public", "wait_no_sessions", "sse_events",
           "assert_sound_events"]

EXAMPLES = int(os.environ.get("CENTAURUS_FUZZ_EXAMPLES", "40"))
# A hang is a failure: no request to a 1-worker server on tiny models may take this long.
REQUEST_TIMEOUT = 60.0
# The statuses a bad upload may get: each says the client's request was wrong (503/504 would mean overload or a
# stuck worker).
CLIENT_ERRORS = frozenset({400, 404, 405, 413, 415, 422})
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])

# Cases tried per endpoint (``POST /transcribe``, ``WS /v1/realtime``, ``TCP wyoming``, ...), over all modules.
cases_tried: Counter[str] = Counter()


def report(pytestconfig) -> None:
    """Print the cases tried so far, and write them to ``CENTAURUS_FUZZ_REPORT`` (every module rewrites it with
    the counts of all modules so far, so the last one leaves them all)."""
    if not cases_tried:
        return
    terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")  # shown even when output is captured
    line = "fuzz cases per endpoint: " + ", ".join(f"{k} {v}" for k, v in sorted(cases_tried.items()))
    terminal.write_line("\n" + line) if terminal is not None else print(line)
    target = os.environ.get("CENTAURUS_FUZZ_REPORT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps({"examples_setting": EXAMPLES, "cases": dict(sorted(cases_tried.items()))},
                                           indent=1) + "\n")


@pytest.fixture(scope="module")
def server(loopback_server):
    """The shared loopback server (see conftest), with its worker restarts so far: a fuzz run must add none."""
    loopback_server.restarts_before = loopback_server.metric("centaurus_worker_restarts")
    return loopback_server


@pytest.fixture(scope="module", autouse=True)
def report_counts(pytestconfig):
    """Each fuzz module ends by reporting the cases tried so far, so the last one leaves the full tally."""
    yield
    report(pytestconfig)


def assert_still_serving(server) -> None:
    """Ready, and no worker was lost while the fuzzer ran (``server.restarts_before``: the count at the start)."""
    assert server.process.poll() is None, server.log.read_text()[-3000:]
    assert httpx.get(f"{server.base}/health/ready", timeout=10).status_code == 200
    assert server.metric("centaurus_worker_restarts") == server.restarts_before, server.log.read_text()[-3000:]


def assert_public(message: str) -> None:
    """A message for the client: not empty, and no library path or traceback in it."""
    assert isinstance(message, str) and message, message
    assert not INTERNALS.search(message), message


def assert_error_envelope(content_type: str, body: bytes) -> None:
    assert content_type.startswith("application/json"), content_type
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["message"], error
    assert_public(error["message"])


def wait_no_sessions(server, seconds: float = 30.0) -> None:
    """Every session the fuzzer opened is freed on the worker (``centaurus_active_streams`` back to 0)."""
    end = time.monotonic() + seconds
    while server.metric("centaurus_active_streams") != 0:
        assert time.monotonic() < end, "sessions left open on the worker"
        time.sleep(0.1)


def sse_events(body: str) -> list[dict]:
    """A ``text/event-stream`` body as OpenAI sends it: ``data: <JSON object>`` blocks, each ended by a blank
    line, nothing else (a body cut short, or any other line, fails)."""
    assert body.endswith("\n\n"), body[-200:]
    events = []
    for block in body[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block[:200]
        event = json.loads(block.removeprefix("data: "))
        assert isinstance(event, dict) and isinstance(event.get("type"), str), event
        events.append(event)
    return events


def assert_sound_events(events: list[dict], *, complete: bool = True) -> None:
    """``transcript.text.delta`` events, then one ``transcript.text.done`` whose text the deltas concatenate to,
    or, after some deltas, one ``error`` event in the error envelope; nothing after either. ``complete=False``:
    a prefix of that (a client that hung up early)."""
    assert events or not complete
    for i, event in enumerate(events):
        last = i == len(events) - 1
        if event["type"] == "transcript.text.delta":
            assert set(event) == {"type", "delta"} and isinstance(event["delta"], str) and event["delta"], event
            assert not (last and complete), "the stream ended without transcript.text.done or error"
        elif event["type"] == "transcript.text.done":
            assert last and set(event) == {"type", "text"}, events[i:]
            assert event["text"] == "".join(e["delta"] for e in events[:-1]), events
        elif event["type"] == "error":
            assert last and i > 0, events  # an error before the first event is a JSON response, not an event
            assert set(event["error"]) == {"message", "type", "code", "param"}, event
            assert event["error"]["code"] != "internal_error", event
            assert_public(event["error"]["message"])
        else:
            raise AssertionError(f"unknown event {event}")
