"""The request mix of ``bench/soak.py``: the cases, the statuses each may get, and their tally. The ``stream=true``
cases (OpenAI's server-sent events, beam search and greedy through a resident session) are also judged by their
body (:func:`sse_problem`); a body that is wrong counts as status -1."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["MIX", "ADMISSION", "BAD_BODY", "Tally", "sse_problem"]

# (name, path, form fields, clip seconds, statuses that count as correct)
MIX: list[tuple[str, str, dict, float, set[int]]] = [
    ("transcribe 1s", "/transcribe", {}, 1.0, {200}),
    ("transcribe 3s beam", "/transcribe", {"beam_search": "true"}, 3.0, {200}),
    ("openai json", "/v1/audio/transcriptions", {"model": "whisper-1"}, 2.0, {200}),
    ("openai verbose", "/v1/audio/transcriptions", {"response_format": "verbose_json",
                                                    "timestamp_granularities[]": ["word", "segment"]}, 1.5, {200}),
    ("openai srt", "/v1/audio/transcriptions", {"response_format": "srt"}, 1.0, {200}),
    ("openai sse", "/v1/audio/transcriptions", {"stream": "true"}, 2.0, {200}),
    ("openai sse greedy", "/v1/audio/transcriptions", {"stream": "true", "beam_search": "false"}, 3.0, {200}),
    ("denoise 1s", "/denoise", {}, 1.0, {200}),
    ("denoise 2s flac", "/denoise", {"response_format": "flac"}, 2.0, {200}),
    ("keywords 1s", "/keywords", {}, 1.0, {200}),
    ("keywords 4s", "/keywords", {"hop": "0.5"}, 4.0, {200}),
    ("models", "/v1/models", {}, 0.0, {200}),
    ("not audio", "/transcribe", {}, -1.0, {415}),
    ("unknown model", "/keywords", {"model": "nope"}, 1.0, {404}),
]
ADMISSION = 503  # the queue is full: what admission control is for, not an error
BAD_BODY = -1  # a 200 whose body is not what the case asks for


def sse_problem(content_type: str, body: str) -> str | None:
    """What is wrong with a ``stream=true`` answer (None: ``transcript.text.delta`` events, then one
    ``transcript.text.done`` whose text they concatenate to, each a ``data:`` line and a blank line)."""
    if not content_type.startswith("text/event-stream"):
        return f"content type {content_type!r}"
    if not body.endswith("\n\n"):
        return f"the body does not end with a whole event: {body[-80:]!r}"
    events = []
    for block in body[:-2].split("\n\n"):
        try:
            events.append(json.loads(block.removeprefix("data: ")) if block.startswith("data: ") else None)
        except ValueError:
            events.append(None)
        if not isinstance(events[-1], dict):
            return f"not an event: {block[:80]!r}"
    if events[-1].get("type") != "transcript.text.done":
        return f"no transcript.text.done at the end: {[e.get('type') for e in events][-3:]}"
    deltas = events[:-1]
    if any(e.get("type") != "transcript.text.delta" for e in deltas):
        return f"events before done that are not deltas: {[e.get('type') for e in deltas][:3]}"
    if "".join(e["delta"] for e in deltas) != events[-1]["text"]:
        return "the deltas do not concatenate to the done text"
    return None


@dataclass
class Tally:
    by_case: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    done: int = 0

    def record(self, case: str, status: int, expected: set[int]) -> None:
        counts = self.by_case.setdefault(case, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
        self.done += 1
        if status not in expected and status != ADMISSION and len(self.unexpected) < 20:
            self.unexpected.append(f"{case}: {status}")

    def errors(self) -> int:
        return sum(n for case, counts in self.by_case.items() for status, n in counts.items()
                   if int(status) not in next(m[4] for m in MIX if m[0] == case) and int(status) != ADMISSION)

    def admission(self) -> int:
        return sum(counts.get(str(ADMISSION), 0) for counts in self.by_case.values())
