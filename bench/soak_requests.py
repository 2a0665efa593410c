"""The request mix of ``bench/soak.py``: the cases, the statuses each may get, and their tally."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MIX", "ADMISSION", "Tally"]

# (name, path, form fields, clip seconds, statuses that count as correct)
MIX: list[tuple[str, str, dict, float, set[int]]] = [
    ("transcribe 1s", "/transcribe", {}, 1.0, {200}),
    ("transcribe 3s beam", "/transcribe", {"beam_search": "true"}, 3.0, {200}),
    ("openai json", "/v1/audio/transcriptions", {"model": "whisper-1"}, 2.0, {200}),
    ("openai verbose", "/v1/audio/transcriptions", {"response_format": "verbose_json",
                                                    "timestamp_granularities[]": ["word", "segment"]}, 1.5, {200}),
    ("openai srt", "/v1/audio/transcriptions", {"response_format": "srt"}, 1.0, {200}),
    ("denoise 1s", "/denoise", {}, 1.0, {200}),
    ("denoise 2s flac", "/denoise", {"response_format": "flac"}, 2.0, {200}),
    ("keywords 1s", "/keywords", {}, 1.0, {200}),
    ("keywords 4s", "/keywords", {"hop": "0.5"}, 4.0, {200}),
    ("models", "/v1/models", {}, 0.0, {200}),
    ("not audio", "/transcribe", {}, -1.0, {415}),
    ("unknown model", "/keywords", {"model": "nope"}, 1.0, {404}),
]
ADMISSION = 503  # the queue is full: what admission control is for, not an error


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
