"""The OpenAI Realtime sessions of ``bench/soak.py --realtime N``: ``/v1/realtime``, 24 kHz PCM16 appended in 100 ms
events paced in real time, one pattern per session, in a fixed cycle over all slots: ``commit`` (a GA session
without turn detection: the commit ends the turn), ``commit_beta`` (the same with the beta
``transcription_session.update``), ``vad`` (server_vad: turns end at pauses by themselves, the commit ends the
last one or finds the buffer empty), ``clear`` (the audio is dropped: ``cleared``), ``abandon`` (a close with a
turn uncommitted) and ``drop`` (the TCP connection, no close frame). Every event must have the shape of the
``openai`` package's types (GA) and be one a transcription session sends; every committed turn must complete,
its deltas concatenating to its transcript. Outcomes and errors: ``soak_protocols.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import typing

from websockets.exceptions import ConnectionClosed

from soak_protocols import CAPACITY_CODES, Session, session_after_session
from soak_streams import CAPACITY_CLOSE, NotOpened, StreamTally, open_websocket

__all__ = ["REALTIME_PATTERNS", "RealtimeSession", "realtime_streamer"]

REALTIME_PATTERNS = ("commit", "vad", "commit_beta", "clear", "abandon", "drop", "vad")
REALTIME_RATE = 24000
REALTIME_EVENTS = {"session.created", "session.updated", "transcription_session.created",
                   "transcription_session.updated", "input_audio_buffer.speech_started",
                   "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", "input_audio_buffer.cleared",
                   "conversation.item.input_audio_transcription.delta",
                   "conversation.item.input_audio_transcription.completed", "error"}
try:  # the openai package's own model of each GA server event, when it is installed
    from openai.types.realtime import RealtimeServerEvent

    GA_TYPES = {literal: cls for cls in typing.get_args(typing.get_args(RealtimeServerEvent)[0])
                for literal in typing.get_args(cls.model_fields["type"].annotation)}
except ImportError:  # pragma: no cover - the shape is then checked by type only
    GA_TYPES = {}


class RealtimeSession(Session):
    protocol = "realtime"

    @property
    def task(self) -> str:
        return "beta" if self.pattern == "commit_beta" else "ga"

    async def run(self, url: str, headers: dict) -> None:
        try:
            ws = await open_websocket(url, headers, self.timeout)
        except NotOpened as err:
            if err.capacity:
                self.capacity = err.kind
            else:
                self.problem(err.kind, err.detail)
            self.finish("completed")
            return
        self.tally.open += 1
        try:
            self.finish(await self._session(ws))
        finally:
            self.tally.open -= 1
            ws.transport.abort()

    async def read(self, ws) -> None:
        try:
            async for message in ws:
                try:
                    event = json.loads(message)
                    self._check(event)
                except (ValueError, TypeError, KeyError, AssertionError) as err:
                    self.problem("invalid_event", f"{str(message)[:120]!r}: {err!r}")
                    continue
                self.events.append(event)
                self.tally.count(self.tally.messages, event["type"])
        except ConnectionClosed:
            pass

    def _check(self, event: dict) -> None:
        assert event["type"] in REALTIME_EVENTS, f"not a transcription session's event: {event['type']}"
        if event["type"] in GA_TYPES:
            GA_TYPES[event["type"]].model_validate(event)  # pydantic's ValidationError is a ValueError
        if event["type"] == "error":
            code = event["error"]["code"]
            if code in CAPACITY_CODES:
                self.capacity = self.capacity or f"error_{code}"
            elif not (code == "input_audio_buffer_commit_empty" and self.pattern == "vad"):
                self.problem("error_event", f"{code}: {event['error']['message']}")

    def _types(self) -> list[str]:
        return [event["type"] for event in self.events]

    async def _session(self, ws) -> str:
        reader = asyncio.create_task(self.read(ws))
        try:
            beta = self.pattern == "commit_beta"
            if not await self.until(lambda: bool(self.events), reader):
                return self._closed(ws, "no session.created")
            vad = {"type": "server_vad"} if self.pattern == "vad" else None
            await ws.send(json.dumps(
                {"type": "transcription_session.update", "session": {"input_audio_format": "pcm16",
                                                                     "turn_detection": vad}} if beta else
                {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                    "format": {"type": "audio/pcm", "rate": REALTIME_RATE}, "turn_detection": vad}}}}))
            updated = "transcription_session.updated" if beta else "session.updated"
            if not await self.until(lambda: updated in self._types(), reader):
                return self._closed(ws, f"no {updated}")
            self.tally.started += 1
            self.tally.count(self.tally.by_pattern, self.pattern)
            async for chunk in self.paced.chunks(self.seconds):
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(chunk).decode()}))
            if self.pattern in ("abandon", "drop"):
                await ws.close() if self.pattern == "abandon" else ws.transport.abort()
                await asyncio.wait_for(reader, self.timeout)
                return "abandoned"
            before = len(self.events)
            await ws.send(json.dumps({"type": "input_audio_buffer.clear" if self.pattern == "clear"
                                      else "input_audio_buffer.commit"}))
            done = {"clear": ("input_audio_buffer.cleared",)}.get(self.pattern, (
                "conversation.item.input_audio_transcription.completed", "error"))
            if not await self.until(lambda: any(t in done for t in self._types()[before:]), reader):
                return self._closed(ws, f"no {done[0]} after the {self.pattern}")
            await ws.close()
            await asyncio.wait_for(reader, self.timeout)
        except ConnectionClosed:
            return self._closed(ws, "closed while sending")
        except asyncio.TimeoutError:
            self.problem("timeout", f"after {self._types()[-3:]}")
            return "completed"
        finally:
            reader.cancel()
        self._judge_turns()
        return "completed"

    def _closed(self, ws, what: str) -> str:
        if ws.close_code == CAPACITY_CLOSE or self.capacity:
            self.capacity = self.capacity or f"close_{CAPACITY_CLOSE}"
        else:
            self.problem("closed_early", f"{what}: close {ws.close_code} {ws.close_reason!r}, last {self._types()[-3:]}")
        return "completed"

    def _judge_turns(self) -> None:
        """Every committed turn completes, its deltas concatenating to its transcript; a commit turn has one."""
        committed, deltas, completed = set(), {}, 0
        for event in self.events:
            item = event.get("item_id")
            if event["type"] == "input_audio_buffer.committed":
                committed.add(item)
            elif event["type"] == "conversation.item.input_audio_transcription.delta":
                deltas[item] = deltas.get(item, "") + event["delta"]
            elif event["type"] == "conversation.item.input_audio_transcription.completed":
                completed += 1
                if item not in committed or deltas.pop(item, "") != event["transcript"]:
                    self.problem("incomplete_turn", f"item {item}: deltas do not make {event['transcript']!r}")
        if self.pattern.startswith("commit") and completed != 1:
            self.problem("incomplete_turn", f"{completed} turns completed for one commit")


async def realtime_streamer(slot: int, args: argparse.Namespace, base: str, headers: dict, tally: StreamTally,
                            patterns: typing.Iterator[str], end: float) -> None:
    """One of the ``--realtime`` slots: session after session until ``end``."""
    url = base.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    await session_after_session(RealtimeSession, REALTIME_RATE, (url, headers), args, tally, patterns, end,
                                seed=1000 + slot, start_after=0.15 + slot * 0.3)
