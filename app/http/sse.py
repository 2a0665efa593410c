"""``stream=true`` on ``POST /v1/audio/transcriptions``: OpenAI's server-sent events of a transcription.

``transcript.text.delta`` events (``delta``: text to append), then one ``transcript.text.done`` (``text``: the
whole transcript, exactly what the same request without ``stream`` returns). The deltas always concatenate to
the done text:

* greedy decoding (``beam_search=false``) streams for real: the audio runs through a resident session step by
  step (:meth:`app.engine.Engine.transcribe_greedy_steps`), and each word of the running greedy transcript is
  sent once a later word follows it (greedy CTC never revises a finished word);
* beam search (the default) may still change any word until the last frame (the language model looks at the
  words around it), so its words are sent once the decode is done.

Errors before the first event are the usual JSON errors (the route waits for it before answering); one after
it is a last event ``{"type": "error", "error": {...}}`` in the error envelope, which the ``openai`` SDK raises
as ``APIError``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator, Callable

from ..audio.decode import Audio
from ..engine import Engine
from ..errors import ServiceError, error_body

__all__ = ["transcript_events", "word_deltas", "settled", "sse_stream"]

log = logging.getLogger(__name__)


def delta_event(delta: str) -> dict:
    return {"type": "transcript.text.delta", "delta": delta}


def done_event(text: str) -> dict:
    return {"type": "transcript.text.done", "text": text}


def word_deltas(text: str) -> list[str]:
    """A finished transcript as one delta per word: ``"a b"`` -> ``["a", " b"]`` (they concatenate to it)."""
    if not text:
        return []
    first, *rest = text.split(" ")
    return [first] + [" " + word for word in rest]


def settled(running: str) -> str:
    """The words of a running greedy transcript that can no longer change: all but the last, which may still
    grow (``"turn on the li"`` -> ``"turn on the"``)."""
    return running.rsplit(" ", 1)[0] if " " in running else ""


def _extends(text: str, sent: str) -> bool:
    """Whether ``text`` continues what was sent, at a word boundary."""
    return text.startswith(sent) and (not sent or len(text) == len(sent) or text[len(sent)] == " ")


async def transcript_events(engine: Engine, model: str, audio: Audio, *, beam_search: bool,
                            deadline: float, on_done: Callable[[], None] | None = None) -> AsyncIterator[dict]:
    """The events of one streamed transcription (see the module's docstring)."""
    if beam_search:
        transcript = await engine.transcribe(model, audio, beam_search=True, deadline=deadline)
        for delta in word_deltas(transcript.text):
            yield delta_event(delta)
    else:
        sent, transcript = "", None
        steps = engine.transcribe_greedy_steps(model, audio, deadline=deadline)
        try:
            async for item in steps:
                if not isinstance(item, str):
                    transcript = item
                    continue
                words = settled(item)
                if len(words) > len(sent) and _extends(words, sent):
                    yield delta_event(words[len(sent):])
                    sent = words
        finally:
            await steps.aclose()
        if _extends(transcript.text, sent):
            if len(transcript.text) > len(sent):
                yield delta_event(transcript.text[len(sent):])
        else:  # greedy CTC does not revise a finished word; should it ever, the done text still rules
            log.warning("streamed greedy deltas %r are not a prefix of the final transcript", sent[:80])
    if on_done is not None:
        on_done()
    yield done_event(transcript.text)


def _data(event: dict) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def sse_stream(events: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    """The response body: the first event is awaited here, so the errors up to it are raised to the route (as
    JSON errors). A failure later becomes a last ``error`` event; a client that goes away ends the body, which
    closes ``events`` (and frees the session it holds)."""
    first = _data(await events.__anext__())

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for event in events:
                yield _data(event)
        except ServiceError as err:
            yield _data({"type": "error", **error_body(err.message, err.type, err.code, err.param)})
        except Exception:  # noqa: BLE001 - the details go to the log, as for any request
            log.exception("streamed transcription failed")
            yield _data({"type": "error", **error_body("internal error", "server_error", "internal_error")})
        finally:
            await events.aclose()

    return body()
