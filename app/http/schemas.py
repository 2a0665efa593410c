"""Request options and response bodies of every endpoint (pydantic), shown in ``/docs``.

Multipart endpoints take the upload as ``file`` and their options as form fields described by the ``*Form``
models. Every form accepts the raw-PCM description (``encoding``, ``sample_rate``, ``channels``) for uploads
without a header.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_zoo.nets import TaskName
from model_zoo.pipelines.asr import DEFAULT_BEAM_SEARCH
from model_zoo.pipelines.kws import DEFAULT_HOP_SECONDS, DEFAULT_THRESHOLD, HOP_LIMITS
from model_zoo.pipelines.open_keywords import DEFAULT_THRESHOLD as OPEN_THRESHOLD

from ..audio.decode import RawFormat
from ..keywords import split_specs
from ..audio.pcm import PcmEncoding

__all__ = [
    "AudioForm", "TranscribeForm", "OpenAITranscriptionForm", "DenoiseForm", "KeywordsForm",
    "WordOut", "TranscriptionOut", "OpenAITranscriptionOut", "OpenAISegment", "OpenAIWord",
    "OpenAIVerboseTranscriptionOut", "DetectionOut", "ClassScoreOut", "KeywordsOut", "ModelOut", "ModelList",
    "HealthOut", "ReadyOut", "ErrorDetail", "ErrorOut",
]


# ---- requests ----------------------------------------------------------------------------------------------------
class AudioForm(BaseModel):
    """How to read the upload: a container FFmpeg recognises (default), or raw PCM described here."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    encoding: PcmEncoding | None = Field(
        None, description="Raw PCM upload: sample encoding (interleaved, little-endian). Needs sample_rate.")
    sample_rate: int | None = Field(None, ge=1000, le=384000, description="Raw PCM upload: samples per second.")
    channels: int = Field(1, ge=1, le=32, description="Raw PCM upload: interleaved channels.")

    @model_validator(mode="after")
    def _raw_needs_rate(self) -> "AudioForm":
        if self.encoding is not None and self.sample_rate is None:
            raise ValueError("sample_rate is required with encoding (raw PCM)")
        return self

    def raw_format(self) -> RawFormat | None:
        return None if self.encoding is None else RawFormat(self.encoding, int(self.sample_rate), self.channels)


class TranscribeForm(AudioForm):
    model: str | None = Field(None, description="ASR model id (GET /v1/models); default: the first served.")
    word_timestamps: bool = Field(True, description="Include words with start, end and confidence.")
    beam_search: bool = Field(DEFAULT_BEAM_SEARCH, description="CTC beam search with the model's language model; "
                              "false: greedy decoding (a little faster, less accurate).")
    denoise: bool = Field(False, description="Run the denoiser first; the recognizer hears its output with half of the "
                          "input mixed back in (the enhanced audio alone transcribes worse; bench/README.md).")
    denoise_model: str | None = Field(None, description="Denoiser to use with denoise=true.")


class OpenAITranscriptionForm(AudioForm):
    """OpenAI's ``audio/transcriptions`` fields; ``language`` must be ``en`` when given (one English model);
    ``prompt`` and ``temperature`` are accepted and ignored (CTC decoding has no prompt and no sampling)."""

    model: str = Field("whisper-1", description="Model id; OpenAI names map to the default ASR model.")
    response_format: Literal["json", "text", "srt", "vtt", "verbose_json"] = "json"
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default_factory=lambda: ["segment"], alias="timestamp_granularities[]")
    language: str | None = None
    prompt: str | None = None
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    # Our extension; the openai SDK sends it with extra_body={"beam_search": False}.
    beam_search: bool = Field(DEFAULT_BEAM_SEARCH, description="CTC beam search with the model's language model; "
                              "false: greedy decoding.")
    stream: bool = Field(False, description="Server-sent transcript.text.delta events, then transcript.text.done.")


class DenoiseForm(AudioForm):
    model: str | None = Field(None, description="Denoiser id; default: the first served.")
    response_format: Literal["wav", "flac", "pcm"] = Field(
        "wav", description="wav/flac: 16-bit; pcm: raw pcm_s16le mono at the input's rate (see X-Sample-Rate).")


class KeywordsForm(AudioForm):
    model: str | None = Field(None, description="Keyword model id; default: the first served.")
    keywords_array: list[str] | None = Field(
        None, alias="keywords[]", description="Only report these keywords (default: all of the keyword model's); "
        "the same as keywords.")
    keywords: list[str] | None = Field(
        None, description="Keywords to report, comma-separated and/or repeated (marvin,hey computer). The keyword "
        "model's words use the classifier; any other word or phrase is searched for in the recognizer's output, "
        f"with an optional threshold and boost: 'hey computer #0.4 :0.1' (default threshold {OPEN_THRESHOLD}).")
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0,
                             description="Minimum probability of a detection by the keyword model.")
    hop: float = Field(DEFAULT_HOP_SECONDS, ge=HOP_LIMITS[0], le=HOP_LIMITS[1], description="Seconds between the starts of one-second windows.")

    def keyword_specs(self) -> list[tuple[str, str]] | None:
        """Every keyword asked for, as ``(field, text)``: each value of ``keywords[]`` and ``keywords`` split at
        commas, stripped (the text may still be empty: the route refuses it). None: no keyword was asked for."""
        specs = split_specs(self.keywords_array, "keywords[]") + split_specs(self.keywords, "keywords")
        return specs if self.keywords_array is not None or self.keywords is not None else None


# ---- responses ---------------------------------------------------------------------------------------------------
class WordOut(BaseModel):
    word: str
    start: float
    end: float
    confidence: float


class TranscriptionOut(BaseModel):
    text: str
    duration: float = Field(description="Seconds of audio.")
    words: list[WordOut] | None = None
    model: str


class OpenAITranscriptionOut(BaseModel):
    text: str


class OpenAIWord(BaseModel):
    word: str
    start: float
    end: float


class OpenAISegment(BaseModel):
    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float
    compression_ratio: float = 1.0
    no_speech_prob: float = 0.0


class OpenAIVerboseTranscriptionOut(BaseModel):
    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[OpenAISegment] | None = None
    words: list[OpenAIWord] | None = None


class DetectionOut(BaseModel):
    keyword: str
    start: float
    end: float
    score: float


class ClassScoreOut(BaseModel):
    label: str
    score: float


class KeywordsOut(BaseModel):
    model: str = Field(description="The keyword model; the recognizer when only open-vocabulary keywords were asked.")
    recognizer: str | None = Field(None, description="The recognizer that searched the open-vocabulary keywords.")
    duration: float
    detections: list[DetectionOut] = Field(description="Every detection of either kind, by start time.")
    scores: list[ClassScoreOut] | None = Field(None, description="Ranked classes; only for clips of about 1 s.")


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "centaurus-speech"
    task: TaskName
    sample_rate: int
    streaming: bool = True
    algorithmic_latency_samples: int
    algorithmic_latency_ms: float
    parameters: int | None = None
    labels: list[str] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: Literal["ready", "loading", "shutting_down"]
    workers: list[dict]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail
