"""Project-level checks: the setup script installs what the code needs, and the package layering holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from training.corpus.tts import APT_PACKAGES

ROOT = Path(__file__).resolve().parents[1]


def test_setup_installs_every_debian_package_the_corpus_needs():
    script = (ROOT / "scripts" / "setup").read_text()
    listed = set(re.search(r"apt_packages=\(([^)]*)\)", script, re.S).group(1).split())
    assert set(APT_PACKAGES) <= listed, set(APT_PACKAGES) - listed
    assert "ffmpeg" in listed


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
