"""A ``CENTAURUS_*`` variable that is no setting (a typo) stops start-up with one line naming it and the closest
setting, for ``centaurus-speech serve`` and for ``create_app()`` alike; variables other programs read pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli
from app.main import create_app
from app.settings import NOT_SETTINGS, Settings, UnknownSetting, check_environment

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_environment(monkeypatch):
    for name in [n for n in os.environ if n.upper().startswith("CENTAURUS_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("variable, suggestion", [
    ("CENTAURUS_MODLES", "CENTAURUS_MODELS"),
    ("CENTAURUS_WORKERS", "CENTAURUS_WORKERS_PER_DEVICE"),
    ("CENTAURUS_API_KEYZ", "CENTAURUS_API_KEYS"),
    ("centaurus_devic", "CENTAURUS_DEVICE"),
    ("CENTAURUS_MAX_UPLOAD", "CENTAURUS_MAX_UPLOAD_MB"),
])
def test_a_typo_is_named_with_the_closest_setting(variable, suggestion):
    with pytest.raises(UnknownSetting) as raised:
        check_environment({variable: "1", "CENTAURUS_PORT": "8000"})
    assert str(raised.value) == f"{variable} is not a setting; did you mean {suggestion}?"


def test_a_name_like_no_setting_points_to_the_list():
    with pytest.raises(UnknownSetting, match=r"^CENTAURUS_XYZZY is not a setting; app/settings.py lists the settings$"):
        check_environment({"CENTAURUS_XYZZY": "1"})


def test_settings_and_other_programs_variables_pass():
    every_setting = {f"CENTAURUS_{name.upper()}": "x" for name in Settings.model_fields}
    check_environment({**every_setting, **dict.fromkeys(NOT_SETTINGS, "x"), "centaurus_port": "1", "PATH": "/bin",
                       "OTHER_CENTAURUS_THING": "1"})


def test_every_centaurus_variable_read_in_the_repository_is_a_setting_or_listed():
    """A CENTAURUS_* name that some program reads (os.environ, ${...} in compose, $NAME in help texts) and that is
    not a setting must be in NOT_SETTINGS, or setting it would stop the service."""
    read = re.compile(r"""environ(?:\.get)?\s*[(\[]\s*["'](CENTAURUS_[A-Z0-9_]+)|\$\{?(CENTAURUS_[A-Z0-9_]+)""")
    settings = {f"CENTAURUS_{name.upper()}" for name in Settings.model_fields}
    found: dict[str, str] = {}
    for folder in ("app", "bench", "docker", "scripts", "tests", "training", "model_zoo"):
        for path in (ROOT / folder).rglob("*"):
            parts = path.relative_to(ROOT).parts
            if not path.is_file() or any(p.startswith(".") for p in parts) or path.suffix not in (
                    ".py", ".sh", ".yaml", ".yml", "") or path.stat().st_size > 1_000_000:
                continue
            for match in read.finditer(path.read_text(errors="replace")):
                found.setdefault(match.group(1) or match.group(2), str(path.relative_to(ROOT)))
    assert {"CENTAURUS_API_KEY", "CENTAURUS_PUBLISH_PORT", "CENTAURUS_WORKER_LOG_LEVEL"} <= set(found)  # it looks
    unlisted = {name: where for name, where in found.items() if name not in settings | NOT_SETTINGS}
    assert not unlisted, f"read but neither a setting nor in app.settings.NOT_SETTINGS: {unlisted}"


def test_create_app_refuses_a_typo(clean_environment, tmp_path):
    clean_environment.setenv("CENTAURUS_WORKER_MODES", "thread")
    with pytest.raises(UnknownSetting, match="^CENTAURUS_WORKER_MODES is not a setting; did you mean "
                                             "CENTAURUS_WORKER_MODE[?]$"):
        create_app(Settings(models={}, worker_mode="thread"))


def test_serve_prints_one_line_and_exits_2(clean_environment, capsys):
    import uvicorn

    clean_environment.setenv("CENTAURUS_MODLES", '{"asr": "asr"}')
    clean_environment.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server must not start"))
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err == "centaurus-speech: CENTAURUS_MODLES is not a setting; did you mean CENTAURUS_MODELS?\n"


def test_the_serve_command_fails_fast_without_a_traceback():
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CENTAURUS_")}
    # Were the check gone, this would start quickly on a free port with no models (and time out below).
    env.update(CENTAURUS_PROT="9000", CENTAURUS_PORT="0", CENTAURUS_MODELS="{}", CENTAURUS_WORKER_MODE="thread")
    command = Path(sys.executable).with_name("centaurus-speech")
    argv = [str(command)] if command.exists() else [sys.executable, "-m", "app.cli"]
    run = subprocess.run([*argv, "serve"], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["centaurus-speech: CENTAURUS_PROT is not a setting; did you mean CENTAURUS_PORT?"]
