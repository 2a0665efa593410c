"""``POST /keywords`` with keywords of the caller's choosing: words the keyword model does not know are searched for
in the recognizer's output (``model_zoo.pipelines.open_keywords``), in the worker.

The plumbing and the validation run on the tiny random models of the service tests; what is found is checked with
the shipped recognizer on the spoken sample clip.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_testkit import SPEECH_SAMPLE, record_model_calls, settings_for, signal, upload, wait_ready, wav_bytes

from app.audio.decode import decode
from app.main import create_app
from model_zoo.pipelines.open_keywords import DEFAULT_THRESHOLD, MAX_KEYWORD_CHARS, MAX_KEYWORDS



def distinct_words(count: int) -> list[str]:
    """``count`` different made-up words."""
    return [f"word{'abcdefghijklmnopqrstuvwxyz'[i % 26]}{'abcdefghijklmnopqrstuvwxyz'[i // 26]}" for i in range(count)]


def longest_word(client, data: bytes) -> dict:
    """The longest word (at most MAX_KEYWORD_CHARS) of the greedy transcript of ``data``, with its times."""
    words = client.post("/transcribe", files=upload(data), data={"beam_search": "false"}).json()["words"]
    return max((w for w in words if len(w["word"]) <= MAX_KEYWORD_CHARS), key=lambda w: len(w["word"]))


# ---- the tiny models: how keywords are asked for and where they go ------------------------------------------------
def test_keywords_may_be_comma_separated_or_repeated_and_reach_the_right_model(client, monkeypatch):
    data = wav_bytes(signal(0.8), 16000)
    calls = record_model_calls(client, monkeypatch)
    asked = [{"keywords": "yes, Hey  Computer #0.4 :0.1,banana"},
             {"keywords": ["yes", "hey computer #0.4 :0.1", "banana"]},
             {"keywords[]": ["yes", "hey computer #0.4 :0.1"], "keywords": "banana"}]
    bodies = []
    for fields in asked:
        calls.clear()
        r = client.post("/keywords", files=upload(data), data=fields)
        assert r.status_code == 200, r.text
        bodies.append(r.json())
        # "yes" is the classifier's (its one-second windows), the others the recognizer's, with their settings.
        assert sorted(calls, key=lambda call: call[0]) == [
            ("asr", {"open_keywords": [{"keyword": "hey computer", "threshold": 0.4, "boost": 0.1},
                                       {"keyword": "banana", "threshold": DEFAULT_THRESHOLD, "boost": 0.0}]}),
            ("kws", {})]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["model"] == "kws" and bodies[0]["recognizer"] == "asr" and "scores" in bodies[0]
    # Only words the classifier does not know: the classifier is not run at all.
    calls.clear()
    only_open = client.post("/keywords", files=upload(data), data={"keywords": "banana"}).json()
    assert [model for model, _ in calls] == ["asr"]
    assert only_open["model"] == only_open["recognizer"] == "asr" and "scores" not in only_open
    # No keywords asked: every keyword of the classifier, as before, and no search.
    calls.clear()
    plain = client.post("/keywords", files=upload(data)).json()
    assert calls == [("kws", {})] and "recognizer" not in plain


def test_a_word_of_the_transcript_is_found_where_it_was_said_even_across_chunks(client):
    """The tiny recognizer spells nonsense, but the best path of its own greedy word is that word: the search finds
    it at the word's times. 3.2 s run as a session of 1 s chunks here, so the search covers every chunk."""
    for seconds in (0.8, 3.2):
        data = wav_bytes(signal(seconds, seed=1), 16000)
        word = longest_word(client, data)
        r = client.post("/keywords", files=upload(data), data={"keywords": f"{word['word']} #0"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["duration"] == pytest.approx(seconds)
        hits = [d for d in body["detections"] if d["keyword"] == word["word"]]
        assert any(abs(d["start"] - word["start"]) <= 0.1 and abs(d["end"] - word["end"]) <= 0.1 for d in hits), \
            (word, body["detections"])
        assert all(0 <= d["start"] < d["end"] <= seconds + 0.04 and 0 <= d["score"] <= 1 for d in hits)


@pytest.mark.parametrize("fields, param, words", [
    ({"keywords": "yes,,no"}, "keywords", "empty keyword"),
    ({"keywords": " "}, "keywords", "empty keyword"),
    ({"keywords[]": ["x" * (MAX_KEYWORD_CHARS + 1)]}, "keywords[]", f"longer than {MAX_KEYWORD_CHARS}"),
    ({"keywords": "r2d2"}, "keywords", "cannot spell: '2'"),
    ({"keywords": "café"}, "keywords", "cannot spell"),
    ({"keywords": ",".join(distinct_words(MAX_KEYWORDS + 1))}, "keywords", f"at most {MAX_KEYWORDS}"),
    ({"keywords": "banana #1.5"}, "keywords", "between 0 and 1"),
    ({"keywords": "banana :x"}, "keywords", "must be a number"),
    ({"keywords": "banana #0.4 yellow"}, "keywords", "may follow"),
    ({"keywords": "banana #0.4, banana #0.5"}, "keywords", "twice with different settings"),
    ({"keywords[]": ["yes #0.4"]}, "keywords[]", "its own words use threshold"),
])
def test_bad_keywords_are_refused_with_the_field_named(client, fields, param, words):
    r = client.post("/keywords", files=upload(wav_bytes(signal(0.5), 16000)), data=fields)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_parameter" and error["param"] == param and words in error["message"], error


def test_thirty_two_keywords_and_repeats_are_fine(client):
    many = distinct_words(MAX_KEYWORDS)
    r = client.post("/keywords", files=upload(wav_bytes(signal(0.5), 16000)),
                    data={"keywords": ",".join(many + many[:3]), "keywords[]": ["yes", "yes", "no"]})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def classifier_only(tiny_models):
    with TestClient(create_app(settings_for({"kws": tiny_models["kws"]}, worker_mode="thread"))) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def recognizer_only(tiny_models):
    with TestClient(create_app(settings_for({"asr": tiny_models["asr"]}, worker_mode="thread"))) as c:
        wait_ready(c)
        yield c


def test_without_a_recognizer_other_words_are_unknown_and_without_a_classifier_its_words_are_searched(
        classifier_only, recognizer_only):
    data = upload(wav_bytes(signal(0.5), 16000))
    r = classifier_only.post("/keywords", files=data, data={"keywords[]": ["yes", "banana"]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "keywords[]"
    assert "unknown keywords ['banana']" in r.json()["error"]["message"]
    assert classifier_only.post("/keywords", files=data, data={"keywords": "yes,no"}).status_code == 200
    # A recognizer alone searches every word, the classifier's names too; nothing asked is the classifier's job.
    r = recognizer_only.post("/keywords", files=data, data={"keywords": "yes,banana #0.2"})
    assert r.status_code == 200 and r.json()["model"] == r.json()["recognizer"] == "asr", r.text
    r = recognizer_only.post("/keywords", files=data)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


# ---- the shipped recognizer: a said word is found, others are not -------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    """The shipped recognizer and keyword model in worker threads; chunks of 1 s, so the 3.9 s sample runs as a
    session."""
    with TestClient(create_app(settings_for({"asr": "asr", "kws": "kws"}, worker_mode="thread"))) as c:
        wait_ready(c, timeout=300)
        yield c


@pytest.fixture(scope="module")
def heard(shipped) -> dict:
    """The word of at least 4 letters the shipped recognizer is surest of in the sample (greedy decoding), with its
    times: whatever the checkpoint, a word it heard."""
    words = shipped.post("/transcribe", files=upload(SPEECH_SAMPLE.read_bytes()),
                         data={"beam_search": "false"}).json()["words"]
    return max((w for w in words if len(w["word"]) >= 4), key=lambda w: w["confidence"])


def test_a_word_the_recognizer_heard_is_found_and_words_not_said_are_not(shipped, heard):
    data = SPEECH_SAMPLE.read_bytes()
    duration = decode(data).duration
    r = shipped.post("/keywords", files=upload(data), data={"keywords": f"{heard['word']},zebra,hey computer"})
    assert r.status_code == 200, r.text
    found = r.json()["detections"]
    assert [d["keyword"] for d in found] == [heard["word"]], (heard, found)
    hit = found[0]
    assert 0 <= hit["start"] < hit["end"] <= duration and DEFAULT_THRESHOLD <= hit["score"] <= 1
    assert hit["start"] < heard["end"] and heard["start"] < hit["end"]  # where the recognizer heard it
    # Said twice (the clip twice over, 7.9 s): found twice, the second time one clip later.
    clip = decode(data).samples.numpy()
    twice = shipped.post("/keywords", files=upload(wav_bytes(np.concatenate([clip, clip])[None], 16000)),
                         data={"keywords": heard["word"]}).json()["detections"]
    assert [(d["keyword"], d["start"]) for d in twice] == [
        (heard["word"], hit["start"]), (heard["word"], pytest.approx(hit["start"] + duration, abs=0.1))]
    # Silence and noise hold no word.
    quiet = (0.003 * np.random.default_rng(0).standard_normal(4 * 16000)).astype(np.float32)
    r = shipped.post("/keywords", files=upload(wav_bytes(quiet[None], 16000)), data={"keywords": heard["word"]})
    assert r.status_code == 200 and r.json()["detections"] == []


def test_both_kinds_of_detection_come_back_together_by_start(shipped, heard):
    """"yes" (the classifier's), then the sentence (the recognizer's word), in one clip."""
    yes = decode((SPEECH_SAMPLE.parent / "yes.wav").read_bytes()).samples.numpy()
    sentence = decode(SPEECH_SAMPLE.read_bytes()).samples.numpy()
    clip = wav_bytes(np.concatenate([yes, sentence])[None], 16000)
    both = shipped.post("/keywords", files=upload(clip), data={"keywords": f"{heard['word']},yes,no"}).json()
    assert [d["keyword"] for d in both["detections"]] == ["yes", heard["word"]], both
    assert both["detections"][1]["start"] == pytest.approx(len(yes) / 16000 + heard["start"], abs=0.1)
    assert both["model"] == "kws" and both["recognizer"] == "asr"
