"""The client commands (``centaurus-speech transcribe|denoise|keywords|stream``) against a real server: what each
prints on success, and for each everyday mistake (no server, a missing file, a file that is not audio, a wrong
key) exit status 1 with one line on stderr, never a traceback."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from service_testkit import SPEECH_SAMPLE, free_port

from app.audio.decode import decode
from app.cli import main
from app.client_cli import Progress

SAMPLES = SPEECH_SAMPLE.parent
DETECTION = re.compile(r"^\w+ \d+\.\d\d-\d+\.\d\d \d\.\d{3}$")


def command(name: str, file: str, tmp_path: Path) -> list[str]:
    return {"transcribe": ["transcribe", file], "denoise": ["denoise", file, str(tmp_path / "out.wav")],
            "keywords": ["keywords", file], "stream": ["stream", file, "--speed", "0"]}[name]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expected_text(server, **fields) -> str:
    with open(SPEECH_SAMPLE, "rb") as f:
        return httpx.post(server.base + "/transcribe", files={"file": f}, data=fields, headers=server.headers,
                          timeout=120).json()["text"]


# ---- failures: one line, exit status 1 --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def not_audio(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 50)
    return path


CASES = {
    # case -> (file, url, key) builders and what the line must say
    "server down": (lambda s, bad: str(SPEECH_SAMPLE), lambda s: f"http://127.0.0.1:{free_port()}", lambda s: "k",
                    "connection refused"),
    "missing file": (lambda s, bad: str(SAMPLES / "missing.wav"), lambda s: s.base, lambda s: s.headers["X-API-Key"],
                     "no such file: " + str(SAMPLES / "missing.wav")),
    "not audio": (lambda s, bad: str(bad), lambda s: s.base, lambda s: s.headers["X-API-Key"], "decode"),
    "wrong key": (lambda s, bad: str(SPEECH_SAMPLE), lambda s: s.base, lambda s: "wrong", "invalid API key"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", ["transcribe", "denoise", "keywords", "stream"])
def test_each_mistake_is_one_line_and_exit_status_1(name, case, keyed_server, not_audio, tmp_path, capsys):
    file, url, key, says = CASES[case]
    code, out, err = run(capsys, *command(name, file(keyed_server, not_audio), tmp_path),
                         "--url", url(keyed_server), "--api-key", key(keyed_server))
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"centaurus-speech {name}: "), err
    assert says in err and "Traceback" not in err
    if case == "not audio" and name != "stream":
        assert "(415 unsupported_audio)" in err  # the server's own 4xx error
    assert not (tmp_path / "out.wav").exists()


def test_a_mistake_in_a_real_process_prints_no_traceback(tmp_path):
    cli = Path(sys.executable).with_name("centaurus-speech")
    command_line = [str(cli)] if cli.exists() else [sys.executable, "-m", "app.cli"]
    for argv in (["transcribe", str(SPEECH_SAMPLE), "--url", f"http://127.0.0.1:{free_port()}"],
                 ["denoise", str(tmp_path / "missing.wav"), str(tmp_path / "out.wav")]):
        done = subprocess.run([*command_line, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


# ---- success --------------------------------------------------------------------------------------------------
@pytest.fixture()
def connect(keyed_server) -> list[str]:
    return ["--url", keyed_server.base, "--api-key", keyed_server.headers["X-API-Key"]]


def test_transcribe_prints_the_transcript(keyed_server, connect, capsys):
    code, out, err = run(capsys, "transcribe", str(SPEECH_SAMPLE), *connect)
    assert code == 0 and out == expected_text(keyed_server) + "\n" and err == ""
    code, out, _ = run(capsys, "transcribe", str(SPEECH_SAMPLE), "--greedy", *connect)
    assert out == expected_text(keyed_server, beam_search="false") + "\n"
    code, out, _ = run(capsys, "transcribe", str(SPEECH_SAMPLE), "--format", "json", "--denoise", *connect)
    result = json.loads(out)
    assert result["text"] == expected_text(keyed_server, denoise="true") and result["words"]
    code, out, _ = run(capsys, "transcribe", str(SPEECH_SAMPLE), "--format", "srt", *connect)
    assert out.startswith("1\n00:00:") and " --> " in out
    code, out, _ = run(capsys, "transcribe", str(SPEECH_SAMPLE), "--format", "vtt", *connect)
    assert out.startswith("WEBVTT\n\n00:00:")


def test_url_and_key_come_from_the_environment(keyed_server, monkeypatch, capsys):
    monkeypatch.setenv("CENTAURUS_URL", keyed_server.base)
    monkeypatch.setenv("CENTAURUS_API_KEY", keyed_server.headers["X-API-Key"])
    code, out, _ = run(capsys, "transcribe", str(SPEECH_SAMPLE))
    assert code == 0 and out == expected_text(keyed_server) + "\n"


def test_denoise_writes_audio_of_the_inputs_length(connect, tmp_path, capsys):
    noisy = SAMPLES / "noisy.wav"
    code, out, err = run(capsys, "denoise", str(noisy), str(tmp_path / "clean.wav"), *connect)
    assert code == 0 and out == "" and err.startswith(f"wrote {tmp_path / 'clean.wav'}")
    clean, source = decode((tmp_path / "clean.wav").read_bytes()), decode(noisy.read_bytes())
    assert (tmp_path / "clean.wav").read_bytes()[:4] == b"RIFF"
    assert clean.sample_rate == source.sample_rate and clean.samples.shape == source.samples.shape
    run(capsys, "denoise", str(noisy), str(tmp_path / "clean.flac"), *connect)
    assert (tmp_path / "clean.flac").read_bytes()[:4] == b"fLaC"


def test_keywords_prints_detections(keyed_server, connect, capsys):
    code, out, err = run(capsys, "keywords", str(SAMPLES / "yes.wav"), "--threshold", "0", *connect)
    lines = out.splitlines()
    assert code == 0 and lines and all(DETECTION.match(line) for line in lines), out
    with open(SAMPLES / "yes.wav", "rb") as f:
        served = httpx.post(keyed_server.base + "/keywords", files={"file": f}, data={"threshold": "0"},
                            headers=keyed_server.headers, timeout=60).json()["detections"]
    assert [line.split()[0] for line in lines] == [d["keyword"] for d in served]
    code, out, err = run(capsys, "keywords", str(SAMPLES / "yes.wav"), "--threshold", "1", *connect)
    assert code == 0 and out == "" and err.startswith("no keyword scored 1.0 or more")
    code, out, _ = run(capsys, "keywords", str(SAMPLES / "yes.wav"), "--format", "json", *connect)
    assert len(json.loads(out)["scores"]) > 30  # a one-second clip: every class ranked


def test_stream_prints_results_for_each_task(keyed_server, connect, tmp_path, capsys):
    seconds = decode(SPEECH_SAMPLE.read_bytes()).duration
    code, out, err = run(capsys, "stream", str(SPEECH_SAMPLE), "--task", "asr", "--speed", "0", *connect)
    assert code == 0 and out == f"[0.00-{seconds:.2f}] {expected_text(keyed_server)}\n" and "real-time factor" in err
    code, out, _ = run(capsys, "stream", str(SAMPLES / "yes.wav"), "--task", "kws", "--threshold", "0", "--speed", "0",
                       *connect)
    assert code == 0 and out.splitlines() and all(DETECTION.match(line) for line in out.splitlines())
    target = tmp_path / "clean.wav"
    code, out, err = run(capsys, "stream", str(SAMPLES / "noisy.wav"), "--task", "denoise", "-o", str(target),
                         "--speed", "0", *connect)
    assert code == 0 and f"wrote {target}" in err
    assert decode(target.read_bytes()).samples.shape == decode((SAMPLES / "noisy.wav").read_bytes()).samples.shape


# ---- progress ----------------------------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_only():
    import time

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        with Progress("transcribing x.wav:", stream) as progress:
            progress.upload(50, 200)
            time.sleep(0.35)
            progress.upload(200, 200)
            time.sleep(0.25)
    drawn = terminal.getvalue()
    assert "\r\033[K" in drawn and "transcribing x.wav: uploading 25% of 0.0 MB" in drawn
    assert "transcribing x.wav: processing 0 s" in drawn and drawn.endswith("\r\033[K")  # erased at the end
    assert pipe.getvalue() == ""


def test_progress_shows_on_a_real_terminal(connect, tmp_path):
    """Through a pseudo-terminal: the command's stderr is a TTY, so the status line is drawn (and erased)."""
    import pty

    cli = Path(sys.executable).with_name("centaurus-speech")
    command_line = [str(cli)] if cli.exists() else [sys.executable, "-m", "app.cli"]
    leader, follower = pty.openpty()
    done = subprocess.run([*command_line, "stream", str(SAMPLES / "yes.wav"), "--task", "kws", "--speed", "1",
                           *connect], stdout=subprocess.PIPE, stderr=follower, timeout=120)
    os.close(follower)
    drawn = b""
    try:
        while chunk := os.read(leader, 65536):
            drawn += chunk
    except OSError:  # the terminal is closed once everything is read
        pass
    os.close(leader)
    assert done.returncode == 0
    assert b"yes.wav: streaming " in drawn and b" of 1.0 s" in drawn and b"\r\x1b[K" in drawn
