"""``stream=true`` through the official ``openai`` package against a real server (``centaurus-speech serve``).

The SDK parses every event into its own types, the deltas concatenate to the done text, and the done text is
what the same call without ``stream`` returns; a bad file fails with the usual JSON error before any event.
"""

from __future__ import annotations

import pytest
from service_testkit import SPEECH_SAMPLE

openai = pytest.importorskip("openai")  # a test dependency
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent  # noqa: E402


@pytest.fixture(scope="module")
def sdk(loopback_server):
    return openai.OpenAI(base_url=f"{loopback_server.base}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("beam_search", [True, False])
def test_the_sdk_streams_a_transcription(sdk, beam_search):
    audio = ("clip.wav", SPEECH_SAMPLE.read_bytes(), "audio/wav")
    extra = {"beam_search": beam_search}
    plain = sdk.audio.transcriptions.create(model="whisper-1", file=audio, extra_body=extra).text
    assert plain.strip()
    events = list(sdk.audio.transcriptions.create(model="whisper-1", file=audio, stream=True, extra_body=extra))
    *deltas, done = events
    assert isinstance(done, TranscriptionTextDoneEvent) and done.type == "transcript.text.done"
    assert deltas and all(isinstance(e, TranscriptionTextDeltaEvent) and e.delta for e in deltas)
    assert done.text == plain
    assert "".join(e.delta for e in deltas) == plain
    # Whole words: the first delta starts the text, each later one starts with the space before its word.
    assert not deltas[0].delta.startswith(" ") and all(e.delta.startswith(" ") for e in deltas[1:])


def test_a_bad_file_fails_before_any_event(sdk):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.audio.transcriptions.create(model="whisper-1", file=("clip.wav", b"not audio" * 100, "audio/wav"),
                                        stream=True)
    assert caught.value.status_code == 415
    assert caught.value.body["code"] == "unsupported_audio"
    with pytest.raises(openai.NotFoundError):
        sdk.audio.transcriptions.create(model="no-such-model", file=("clip.wav", SPEECH_SAMPLE.read_bytes()),
                                        stream=True)
