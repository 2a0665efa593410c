"""The Wyoming sessions of ``bench/soak.py --wyoming N``: TCP connections sending 16 kHz 16-bit mono chunks of
100 ms paced in real time, one pattern per connection, in a fixed cycle over all slots: ``transcribe``
(transcript-start, chunks, transcript, transcript-stop, the chunks concatenating to the text), ``detect``
(detections or not-detected), ``describe`` (info, then a transcription on the same connection), ``abandon`` (a
half-close mid-audio) and ``drop`` (a reset mid-audio). Each ends with a ``ping`` whose ``pong`` says every event
before it was answered. Outcomes and errors: ``soak_protocols.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import typing

from soak_protocols import CAPACITY_CODES, Session, session_after_session
from soak_streams import StreamTally
from wyoming.event import Event, async_write_event

from app.wyoming.framing import FramingError, read_event

__all__ = ["WYOMING_PATTERNS", "WyomingSession", "wyoming_streamer"]

WYOMING_PATTERNS = ("transcribe", "detect", "describe", "abandon", "drop", "transcribe")
WYOMING_RATE = 16000
WYOMING_EVENTS = {"info", "pong", "error", "transcript", "transcript-start", "transcript-chunk", "transcript-stop",
                  "detection", "not-detected"}


async def send(writer: asyncio.StreamWriter, kind: str, data: dict | None = None, payload: bytes | None = None) -> None:
    """One client event, framed by the ``wyoming`` package, as Home Assistant frames it."""
    await async_write_event(Event(kind, data, payload), writer)


class WyomingSession(Session):
    protocol = "wyoming"
    SENTINEL = "soak"

    @property
    def task(self) -> str:
        return "detect" if self.pattern == "detect" else "transcribe"

    async def run(self, host: str, port: int) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout)
        except (OSError, asyncio.TimeoutError) as err:
            self.problem("connect_failed", repr(err))
            self.finish("completed")
            return
        self.tally.open += 1
        try:
            self.finish(await self._session(reader, writer))
        finally:
            self.tally.open -= 1
            writer.close()

    async def read(self, reader: asyncio.StreamReader) -> None:
        try:
            # The service's own strict reader: a malformed server event is a FramingError, not an end of stream
            # (wyoming.event.async_read_event returns None for both).
            while (received := await read_event(reader)) is not None:
                event = {"type": received.type, "data": received.data}
                self.events.append(event)
                self.tally.count(self.tally.messages, event["type"])
                if event["type"] not in WYOMING_EVENTS:
                    self.problem("invalid_event", f"not a server's event: {event['type']}")
                elif event["type"] == "error":
                    code = event["data"].get("code")
                    if code in CAPACITY_CODES:
                        self.capacity = self.capacity or f"error_{code}"
                    else:
                        self.problem("error_event", f"{code}: {event['data'].get('text')}")
        except (FramingError, ValueError, KeyError) as err:
            self.problem("invalid_event", repr(err))
        except ConnectionError:
            pass

    def _types(self) -> list[str]:
        return [event["type"] for event in self.events]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        listener = asyncio.create_task(self.read(reader))
        fmt = {"rate": WYOMING_RATE, "width": 2, "channels": 1}
        try:
            if self.pattern == "describe":
                await send(writer, "describe")
            detect = self.pattern == "detect"
            await (send(writer, "detect") if detect else send(writer, "transcribe", {"language": "en"}))
            await send(writer, "audio-start", fmt)
            self.tally.started += 1
            self.tally.count(self.tally.by_pattern, self.pattern)
            async for chunk in self.paced.chunks(self.seconds):
                await send(writer, "audio-chunk", fmt, chunk)
            if self.pattern in ("abandon", "drop"):
                if self.pattern == "drop":  # a reset: no goodbye at all
                    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                               struct.pack("ii", 1, 0))
                    writer.transport.abort()
                else:
                    writer.write_eof()
                await asyncio.wait_for(listener, self.timeout)
                return "abandoned"
            await send(writer, "audio-stop")
            await send(writer, "ping", {"text": self.SENTINEL})
            if not await self.until(lambda: "pong" in self._types(), listener):
                if not self.capacity:
                    self.problem("closed_early" if listener.done() else "timeout", f"no pong; last {self._types()[-3:]}")
                return "completed"
        except ConnectionError as err:
            if not self.capacity:
                self.problem("closed_early", f"{err!r}; last {self._types()[-3:]}")
            return "completed"
        except asyncio.TimeoutError:
            self.problem("timeout", f"after {self._types()[-3:]}")
            return "completed"
        finally:
            listener.cancel()
        self._judge(detect)
        return "completed"

    def _judge(self, detect: bool) -> None:
        types = self._types()
        if self.pattern == "describe" and (not types or types[0] != "info" or not self.events[0]["data"].get("asr")):
            self.problem("invalid_event", f"describe answered with {types[:1]}")
        if detect:
            if not ("detection" in types or types.count("not-detected") == 1):
                self.problem("no_transcript", f"detect ended with {types[-3:]}")
            return
        text = [e["data"].get("text") for e in self.events if e["type"] == "transcript"]
        chunks = "".join(e["data"].get("text", "") for e in self.events if e["type"] == "transcript-chunk")
        stream = [t for t in types if t.startswith("transcript")]
        if len(text) != 1 or chunks != text[0] or stream[:1] != ["transcript-start"] or stream[-1:] != ["transcript-stop"]:
            self.problem("no_transcript", f"transcript events {stream[:2]}...{stream[-2:]}, chunks {chunks[:40]!r}")


async def wyoming_streamer(slot: int, args: argparse.Namespace, host: str, port: int, tally: StreamTally,
                           patterns: typing.Iterator[str], end: float) -> None:
    """One of the ``--wyoming`` slots: connection after connection until ``end``."""
    await session_after_session(WyomingSession, WYOMING_RATE, (host, port), args, tally, patterns, end,
                                seed=2000 + slot, start_after=0.2 + slot * 0.3)
