"""Project-level checks: the setup script installs what the code needs, and the package layering holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from training.corpus.tts import APT_PACKAGES

ROOT = Path(__file__).resolve().parents[1]


def setup_debian_packages(mode: str) -> set[str]:
    """The Debian packages ``scripts/setup MODE`` installs: the base list, plus the test block's for ``test``."""
    script = (ROOT / "scripts" / "setup").read_text()
    base = set(re.search(r"^apt_packages=\(([^)]*)\)", script, re.M).group(1).split())
    extra = set(re.search(r"apt_packages\+=\(([^)]*)\)", script, re.S).group(1).split())
    return base | extra if mode == "test" else base


def test_setup_installs_every_debian_package_the_code_needs():
    from training.corpus.noise import REAL_SOURCES
    from training.datasets.asterisk import PACKAGES as REAL_SPEECH_PACKAGES

    needed = set(APT_PACKAGES) | {s.package for s in REAL_SOURCES} | set(REAL_SPEECH_PACKAGES) | {"ffmpeg"}
    assert needed <= setup_debian_packages("test"), needed - setup_debian_packages("test")
    # Serving decodes audio with FFmpeg and needs nothing else from Debian.
    assert setup_debian_packages("serve") == {"ffmpeg"}


def imported_packages(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_layering():
    """app -> model_zoo <- training: model_zoo is pure torch, training never imports app."""
    zoo = imported_packages("model_zoo")
    assert not zoo & {"app", "training", "fastapi", "uvicorn", "starlette"}, zoo
    assert "app" not in imported_packages("training")
    assert "training" not in imported_packages("app")
