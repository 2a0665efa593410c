"""Wyoming's framing, read with bounds: a JSON header line, then ``data_length`` bytes of JSON data and
``payload_length`` bytes of payload (the format of ``wyoming.event``).

``wyoming.event.async_read_event`` trusts whatever lengths a client declares, and returns None (as at the end of
the stream) for malformed JSON, so a server open to any client cannot tell a mistake from a goodbye with it.
This reader bounds every part and says what was wrong; it builds the package's :class:`wyoming.event.Event`.
A mistake inside one line (bad JSON, no type) leaves the stream in step, so the connection goes on; a header
too long, or lengths that cannot be trusted, do not (:attr:`FramingError.fatal`).
"""

from __future__ import annotations

import asyncio
import json

from wyoming.event import Event

__all__ = ["MAX_HEADER_BYTES", "MAX_DATA_BYTES", "MAX_PAYLOAD_BYTES", "FramingError", "Problem", "read_event"]

MAX_HEADER_BYTES = 64 * 1024  # the reader's line limit (asyncio.start_server(limit=...))
MAX_DATA_BYTES = 64 * 1024
# An audio chunk: HA sends 2 KB ones; a second of 96 kHz 32-bit stereo is 768 KB.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


class Problem(Exception):
    """A client's mistake in an event that was read fine, answered with an ``error`` event; the connection goes on."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


class FramingError(Exception):
    """A client's event could not be read; ``fatal``: the stream is out of step and must be closed."""

    def __init__(self, code: str, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.code, self.message, self.fatal = code, message, fatal


def _length(header: dict, key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FramingError("malformed_event", f"{key} must be a non-negative integer", fatal=True)
    if value > limit:
        raise FramingError("event_too_large", f"{key} {value} is over the limit of {limit} bytes", fatal=True)
    return value


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event; None when the client has gone (cleanly or mid-event). Raises :class:`FramingError`."""
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise FramingError("event_too_large", f"an event header is longer than {MAX_HEADER_BYTES} bytes",
                               fatal=True) from None
        if line.strip():
            break  # blank lines between events are harmless
    try:
        header = json.loads(line)
    except ValueError:  # bad JSON or bad UTF-8; the line is consumed, so the next one is read in step
        raise FramingError("malformed_event", "an event header is not a JSON object", fatal=False) from None
    if not isinstance(header, dict):
        raise FramingError("malformed_event", "an event header is not a JSON object", fatal=False)
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    try:
        data_bytes = await reader.readexactly(data_length) if data_length else b""
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    data = header.get("data")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise FramingError("malformed_event", "an event's data is not a JSON object", fatal=False)
    if data_bytes:
        try:
            extra = json.loads(data_bytes)
        except ValueError:
            extra = None
        if not isinstance(extra, dict):
            raise FramingError("malformed_event", "an event's data is not a JSON object", fatal=False)
        data = {**data, **extra}
    kind = header.get("type")
    if not isinstance(kind, str) or not kind:
        raise FramingError("malformed_event", "an event has no type", fatal=False)
    return Event(type=kind, data=data, payload=payload)
