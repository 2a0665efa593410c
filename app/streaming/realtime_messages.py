"""The OpenAI Realtime API's transcription events, as :mod:`app.streaming.realtime` reads and writes them.

Client events are parsed leniently, as OpenAI's server does: fields this server has no use for (``include``,
``noise_reduction``, ``create_response``, ...) are accepted and ignored, but a field it reads must have the right
type. Both generations of the session message are read: GA ``session.update`` (``session.type =
"transcription"``, ``session.audio.input.{format, transcription, turn_detection}``) and beta
``transcription_session.update`` (``input_audio_format``, ``input_audio_transcription``, ``turn_detection``).
Server events are plain dicts in the shapes of the ``openai`` package's ``types/realtime`` (GA) and
``types/beta/realtime`` (beta); :class:`SessionConfig` renders the effective session in either shape.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model_zoo.pipelines.endpoint import MAX_RULE_SECONDS, EndpointRules

from ..errors import InvalidParameter, echo, public_message
from .messages import STREAM_SAMPLE_RATES

__all__ = ["ClientEvent", "SessionUpdateEvent", "TranscriptionSessionUpdateEvent", "AppendEvent", "CommitEvent",
           "ClearEvent", "EventMistake", "SessionConfig", "parse_event", "new_id", "server_event", "error_event",
           "Outgoing", "OPENAI_RATE"]

OPENAI_RATE = 24000  # the rate of OpenAI's audio/pcm and pcm16
MAX_RULE_MS = int(MAX_RULE_SECONDS * 1000)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---- session settings (both generations) -------------------------------------------------------------------
class TranscriptionIn(_In):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class TurnDetectionIn(_In):
    type: str | None = None  # server_vad (default) | semantic_vad (refused)
    silence_duration_ms: int | None = Field(None, gt=0, le=MAX_RULE_MS)
    prefix_padding_ms: int | None = Field(None, ge=0, le=MAX_RULE_MS)
    threshold: float | None = Field(None, ge=0.0, le=1.0)


class FormatIn(_In):
    type: str | None = None
    rate: int | None = None


class AudioInputIn(_In):
    format: FormatIn | None = None
    transcription: TranscriptionIn | None = None
    turn_detection: TurnDetectionIn | None = None


class AudioIn(_In):
    input: AudioInputIn | None = None


class GaSessionIn(_In):
    type: str | None = None
    audio: AudioIn | None = None


class BetaSessionIn(_In):
    input_audio_format: str | None = None
    input_audio_transcription: TranscriptionIn | None = None
    turn_detection: TurnDetectionIn | None = None


# ---- client events -------------------------------------------------------------------------------------------
class SessionUpdateEvent(_In):
    type: Literal["session.update"]
    event_id: str | None = None
    session: GaSessionIn


class TranscriptionSessionUpdateEvent(_In):
    type: Literal["transcription_session.update"]
    event_id: str | None = None
    session: BetaSessionIn


class AppendEvent(_In):
    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str


class CommitEvent(_In):
    type: Literal["input_audio_buffer.commit"]
    event_id: str | None = None


class ClearEvent(_In):
    type: Literal["input_audio_buffer.clear"]
    event_id: str | None = None


ClientEvent = SessionUpdateEvent | TranscriptionSessionUpdateEvent | AppendEvent | CommitEvent | ClearEvent
_EVENTS: dict[str, type[BaseModel]] = {
    "session.update": SessionUpdateEvent, "transcription_session.update": TranscriptionSessionUpdateEvent,
    "input_audio_buffer.append": AppendEvent, "input_audio_buffer.commit": CommitEvent,
    "input_audio_buffer.clear": ClearEvent}


class EventMistake(InvalidParameter):
    """A client event this server cannot take: answered with an ``error`` event, the connection goes on."""

    def __init__(self, message: str, *, code: str, param: str | None = None, event_id: str | None = None) -> None:
        super().__init__(message, code=code, param=param)
        self.event_id = event_id


def parse_event(text: str) -> ClientEvent:
    """A text frame as a client event; raises :class:`EventMistake` (``invalid_json``, ``unknown_event``,
    ``invalid_event``)."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise EventMistake("the message is not valid JSON", code="invalid_json") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise EventMistake("an event is a JSON object with a string 'type'", code="invalid_json", param="type")
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    model = _EVENTS.get(raw["type"])
    if model is None:
        raise EventMistake(f"unknown or unsupported event type {echo(raw['type'])}; a transcription session takes "
                           f"{', '.join(_EVENTS)}", code="unknown_event", param="type", event_id=event_id)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise EventMistake(f"{where}: {first['msg']}", code="invalid_event", param=where or None,
                           event_id=event_id) from None


# ---- the session -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionConfig:
    """The effective transcription session. ``model`` is the name the client asked for (None: the first served
    recognizer); ``vad`` is server_vad turn detection, whose silence (``silence_ms``, rule 2 of the endpoint
    rules; None: the rules' default) ends a turn by itself."""

    id: str = field(default_factory=lambda: new_id("sess"))
    rate: int = OPENAI_RATE
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    vad: bool = True
    silence_ms: int | None = None
    prefix_padding_ms: int = 300
    threshold: float = 0.5

    def rules(self) -> EndpointRules | None:
        """The endpoint rules server_vad runs (None without it)."""
        if not self.vad:
            return None
        if self.silence_ms is None:
            return EndpointRules()
        return EndpointRules(silence_after_speech=self.silence_ms / 1000)

    @property
    def silence_duration_ms(self) -> int:
        return self.silence_ms if self.silence_ms is not None else int(EndpointRules().silence_after_speech * 1000)

    # ---- updates -----------------------------------------------------------------------------------------------
    def _with_transcription(self, transcription: TranscriptionIn | None, param: str) -> SessionConfig:
        if transcription is None:
            return self
        changes: dict[str, Any] = {}
        for name in ("model", "language", "prompt"):
            if name in transcription.model_fields_set:
                changes[name] = getattr(transcription, name)
        language = changes.get("language")
        if language is not None and language.lower() != "en":
            raise EventMistake(f"language {echo(language)} is not supported; the recognizer is English ('en')",
                               code="unsupported_language", param=f"{param}.language")
        return replace(self, **changes)

    def _with_turn_detection(self, given: bool, turn: TurnDetectionIn | None, param: str) -> SessionConfig:
        if not given:
            return self
        if turn is None:
            return replace(self, vad=False)
        if turn.type not in (None, "server_vad"):
            raise EventMistake(f"turn_detection type {echo(turn.type)} is not supported; use server_vad or null",
                               code="unsupported_turn_detection", param=f"{param}.type")
        changes: dict[str, Any] = {"vad": True}
        if turn.silence_duration_ms is not None:
            changes["silence_ms"] = turn.silence_duration_ms
        if turn.prefix_padding_ms is not None:
            changes["prefix_padding_ms"] = turn.prefix_padding_ms
        if turn.threshold is not None:
            changes["threshold"] = turn.threshold
        return replace(self, **changes)

    def updated_ga(self, session: GaSessionIn) -> SessionConfig:
        """This session after a GA ``session.update``; :class:`EventMistake` for what it cannot take."""
        if session.type not in (None, "transcription"):
            raise EventMistake(f"session type {echo(session.type)} is not served: this server runs transcription "
                               "sessions only (session.type = 'transcription')", code="unsupported_session_type",
                               param="session.type")
        audio_in = session.audio.input if session.audio is not None else None
        if audio_in is None:
            return self
        config = self
        if audio_in.format is not None:
            kind, rate = audio_in.format.type or "audio/pcm", audio_in.format.rate or OPENAI_RATE
            if kind != "audio/pcm" or rate not in STREAM_SAMPLE_RATES:
                raise EventMistake(f"audio format {echo(kind)} at {rate} Hz is not supported; send audio/pcm "
                                   f"(16-bit mono) at 24000 Hz (or one of {STREAM_SAMPLE_RATES})",
                                   code="unsupported_audio_format", param="session.audio.input.format")
            config = replace(config, rate=rate)
        config = config._with_transcription(audio_in.transcription, "session.audio.input.transcription")
        return config._with_turn_detection("turn_detection" in audio_in.model_fields_set, audio_in.turn_detection,
                                           "session.audio.input.turn_detection")

    def updated_beta(self, session: BetaSessionIn) -> SessionConfig:
        """This session after a beta ``transcription_session.update``."""
        config = self
        if session.input_audio_format is not None:
            if session.input_audio_format != "pcm16":
                raise EventMistake(f"input_audio_format {echo(session.input_audio_format)} is not supported; send "
                                   "pcm16 (16-bit mono at 24000 Hz)", code="unsupported_audio_format",
                                   param="session.input_audio_format")
            config = replace(config, rate=OPENAI_RATE)
        config = config._with_transcription(session.input_audio_transcription, "session.input_audio_transcription")
        return config._with_turn_detection("turn_detection" in session.model_fields_set, session.turn_detection,
                                           "session.turn_detection")

    # ---- as the client sees it -----------------------------------------------------------------------------------
    def _transcription(self) -> dict:
        return {"model": self.model, "language": self.language, "prompt": self.prompt}

    def _turn_detection(self) -> dict | None:
        if not self.vad:
            return None
        return {"type": "server_vad", "threshold": self.threshold, "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms}

    def ga(self) -> dict:
        """``RealtimeTranscriptionSessionCreateRequest`` (and the response's ``id`` and ``object``)."""
        return {"type": "transcription", "id": self.id, "object": "realtime.transcription_session",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": self.rate},
                                    "transcription": self._transcription(), "noise_reduction": None,
                                    "turn_detection": self._turn_detection()}},
                "include": None}

    def beta(self) -> dict:
        """The beta ``TranscriptionSession``."""
        return {"id": self.id, "object": "realtime.transcription_session", "input_audio_format": "pcm16",
                "input_audio_transcription": self._transcription(), "turn_detection": self._turn_detection(),
                "input_audio_noise_reduction": None, "modalities": ["text"], "include": None}


# ---- server events -------------------------------------------------------------------------------------------
class Outgoing:
    """A server event for :meth:`app.streaming.connection.Connection.send` (which sends ``model_dump_json()``)."""

    def __init__(self, body: dict) -> None:
        self.body = body

    def model_dump_json(self, **_: Any) -> str:
        return json.dumps(self.body)


def server_event(type_: str, **fields: Any) -> Outgoing:
    return Outgoing({"type": type_, "event_id": new_id("event"), **fields})


def error_event(message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                param: str | None = None, event_id: str | None = None) -> Outgoing:
    """OpenAI's ``error`` event: ``{"type": "error", "event_id", "error": {"type", "code", "message", "param",
    "event_id"}}`` (the last is the client event's id, when it had one)."""
    return server_event("error", error={"type": type_, "code": code, "message": public_message(message),
                                        "param": param, "event_id": event_id})
