"""Messages of the streaming websockets (``/v1/stream/{denoise,transcribe,keywords}``), as pydantic models.

Text frames carry one JSON object each with a ``type``; binary frames carry raw PCM (client -> server) or,
for denoising, the enhanced PCM back in the client's encoding and rate. See README "Streaming".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from model_zoo.nets import TaskName
from model_zoo.pipelines.asr import DEFAULT_BEAM_SEARCH
from model_zoo.pipelines.endpoint import MAX_RULE_SECONDS, EndpointRules
from model_zoo.pipelines.kws import DEFAULT_HOP_SECONDS, DEFAULT_THRESHOLD, LIVE_HOP_LIMITS

from ..errors import echo, public_message

__all__ = [
    "STREAM_SAMPLE_RATES", "SessionStart", "SessionUpdate", "InputFlush", "SessionEnd", "ClientMessage",
    "client_message", "Mistake", "parse_client_message", "SessionStarted", "StreamWord", "TranscriptPartial",
    "TranscriptFinal", "KeywordDetected", "InputProgress", "SessionEnded", "StreamError",
]

# Rates a stream may use: the streaming resampler builds torchaudio's polyphase kernel for the reduced ratio,
# which is small for these (44100 -> 16000 Hz: 160 x 455 taps) but would be huge for an arbitrary rate.
STREAM_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- client -> server ------------------------------------------------------------------------------------------
class SessionStart(_Message):
    """The first message: which model, the audio format of the binary frames, and the task's options."""

    type: Literal["session.start"]
    model: str | None = Field(None, description="Model id (GET /v1/models); default: the first of the task.")
    sample_rate: int = Field(16000, description=f"Rate of the audio sent, one of {STREAM_SAMPLE_RATES}.")
    encoding: Literal["pcm_s16le", "pcm_f32le"] = "pcm_s16le"
    interim_results: bool = Field(True, description="transcribe: send transcript.partial while audio arrives.")
    word_timestamps: bool = Field(True, description="transcribe: words with times in transcript.final.")
    beam_search: bool = Field(DEFAULT_BEAM_SEARCH, description="transcribe: beam search for finals (partials stay greedy).")
    keywords: list[str] | None = Field(None, description="keywords: only these (default: all of the model's); any "
                                       "other word or phrase is searched for in the recognizer's output, as by "
                                       "POST /keywords ('hey computer #0.4 :0.1').")
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0, description="keywords: minimum probability of a detection.")
    hop: float = Field(DEFAULT_HOP_SECONDS, ge=LIVE_HOP_LIMITS[0], le=LIVE_HOP_LIMITS[1], description="keywords: seconds between one-second windows.")
    step_ms: float | None = Field(None, gt=0, description="Audio per model step, in ms (rounded up to the model's "
                                  "frame), within the server's stream_min_step_ms..stream_max_step_ms; default "
                                  "stream_step_ms. Smaller is lower latency (20 for a live monitor), larger is cheaper.")
    progress: bool = Field(False, description="Send input.progress after every model step: how much of the audio "
                           "the model has consumed (all of a step's results are sent before it).")
    endpointing: bool = Field(True, description="transcribe: a transcript.final at each pause (the endpoint "
                              "rules below), each utterance recognized afresh; false: finals only at input.flush "
                              "and the end.")
    endpoint_silence_after_speech: float = Field(
        EndpointRules.silence_after_speech, gt=0, le=MAX_RULE_SECONDS,
        description="transcribe: seconds of trailing silence that end an utterance after some speech (rule 2).")
    endpoint_silence_without_speech: float = Field(
        EndpointRules.silence_without_speech, gt=0, le=MAX_RULE_SECONDS,
        description="transcribe: seconds of silence that end an utterance with no speech yet (rule 1).")
    endpoint_max_utterance: float = Field(
        EndpointRules.max_utterance, gt=0, le=MAX_RULE_SECONDS,
        description="transcribe: the longest utterance, in seconds (rule 3).")

    @field_validator("sample_rate")
    @classmethod
    def _supported_rate(cls, rate: int) -> int:
        if rate not in STREAM_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {STREAM_SAMPLE_RATES}")
        return rate


class SessionUpdate(_Message):
    """Change options mid-stream; omitted fields keep their values."""

    type: Literal["session.update"]
    interim_results: bool | None = None
    word_timestamps: bool | None = None
    keywords: list[str] | None = None
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    endpointing: bool | None = None
    endpoint_silence_after_speech: float | None = Field(None, gt=0, le=MAX_RULE_SECONDS)
    endpoint_silence_without_speech: float | None = Field(None, gt=0, le=MAX_RULE_SECONDS)
    endpoint_max_utterance: float | None = Field(None, gt=0, le=MAX_RULE_SECONDS)


class InputFlush(_Message):
    """Finish what was heard so far: a transcript.final for the segment, an open keyword run closed."""

    type: Literal["input.flush"]


class SessionEnd(_Message):
    """No more audio: the server drains, sends the last results and session.ended, then closes (1000)."""

    type: Literal["session.end"]


ClientMessage = Annotated[Union[SessionStart, SessionUpdate, InputFlush, SessionEnd], Field(discriminator="type")]
client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


@dataclass(frozen=True)
class Mistake:
    """A text frame that is not a valid client message: the ``error`` to answer (the connection stays open)."""

    code: str
    message: str


_MISTAKE_CODES = {"json_invalid": "malformed_json", "union_tag_invalid": "unknown_message_type",
                  "union_tag_not_found": "unknown_message_type"}


def parse_client_message(text: str) -> ClientMessage | Mistake:
    """A text frame as a client message, or the mistake in it (its first validation error)."""
    try:
        return client_message.validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        message = first["msg"]
        if first["type"] == "union_tag_invalid":  # pydantic's message quotes the whole tag, however long
            message = f"unknown message type {echo(first['ctx']['tag'])}; expected {first['ctx']['expected_tags']}"
        return Mistake(_MISTAKE_CODES.get(first["type"], "invalid_message"), message)


# ---- server -> client ------------------------------------------------------------------------------------------
class SessionStarted(BaseModel):
    type: Literal["session.started"] = "session.started"
    session_id: str
    model: str
    task: TaskName
    sample_rate: int = Field(description="The model's rate (audio is resampled to it).")
    input_sample_rate: int
    encoding: str
    algorithmic_latency_samples: int = Field(description="At the model's rate.")
    algorithmic_latency_ms: float
    step_samples: int = Field(description="Audio per model step at the model's rate (step_ms rounded up to the "
                              "model's frame).")
    step_ms: float = Field(description="step_samples in ms.")


class StreamWord(BaseModel):
    word: str
    start: float
    end: float
    confidence: float


class TranscriptPartial(BaseModel):
    type: Literal["transcript.partial"] = "transcript.partial"
    segment: int
    text: str
    start: float
    end: float


class TranscriptFinal(BaseModel):
    type: Literal["transcript.final"] = "transcript.final"
    segment: int
    text: str
    start: float
    end: float
    words: list[StreamWord] | None = None


class KeywordDetected(BaseModel):
    type: Literal["keyword.detected"] = "keyword.detected"
    keyword: str
    start: float
    end: float
    score: float


class InputProgress(BaseModel):
    """After every model step of a session started with ``progress``: the audio the model has consumed."""

    type: Literal["input.progress"] = "input.progress"
    samples: int = Field(description="Samples consumed so far, at the model's rate (session.started's sample_rate).")
    end: float = Field(description="samples in seconds.")


class SessionEnded(BaseModel):
    type: Literal["session.ended"] = "session.ended"
    session_id: str
    audio_seconds: float = Field(description="Seconds of audio received.")
    processing_seconds: float = Field(description="Time the model calls of this session took, queueing included.")
    rtf: float = Field(description="processing_seconds / audio_seconds.")


class StreamError(BaseModel):
    type: Literal["error"] = "error"
    code: str
    message: str

    @field_validator("message")
    @classmethod
    def _public(cls, message: str) -> str:
        return public_message(message)  # as over HTTP: no source path or traceback reaches a client
