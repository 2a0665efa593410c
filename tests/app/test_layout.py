"""The wings of ``app`` depend one way: a socket or an upload -> http / streaming / wyoming -> audio, engine ->
execution.

Checked on the imports themselves (relative ones resolved), so a shortcut past a neighbour fails here first.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"

# wing -> the wings (and top-level modules) it may import; everything may import its own wing.
ALLOWED = {
    "audio": {"errors"},
    "execution": {"errors"},
    "engine": {"audio", "execution"},
    "keywords": {"engine", "errors"},  # which keywords a request asks for: POST /keywords', streams', Wyoming's
    "http": {"audio", "engine", "errors", "keywords", "settings", "streaming"},
    "streaming": {"audio", "engine", "errors", "keywords", "settings", "http", "execution"},
    "wyoming": {"audio", "engine", "errors", "keywords", "settings", "http", "streaming"},
}
# What of execution the websocket side may name: the session handle the engine hands out, nothing else.
STREAMING_FROM_EXECUTION = {"app.execution.sessions"}


def app_imports(path: Path) -> set[str]:
    """The ``app.*`` modules ``path`` imports, relative imports resolved."""
    package = ["app", *path.relative_to(APP).with_suffix("").parts[:-1]]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "app"}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = [f"{module}.{a.name}" for a in node.names] if not node.module else [module]
            found |= {n for n in names if n.split(".")[0] == "app"}
    return found


def wing(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_each_wing_imports_only_its_neighbours():
    for name, allowed in ALLOWED.items():
        files = [APP / f"{name}.py"] if (APP / f"{name}.py").exists() else sorted((APP / name).rglob("*.py"))
        assert files, name
        for path in files:
            for module in app_imports(path):
                target = wing(module)
                assert target in allowed | {name, "app"}, f"{path.relative_to(APP)} imports {module}"
                if name == "streaming" and target == "execution":
                    assert module in STREAMING_FROM_EXECUTION, f"{path.relative_to(APP)} reaches into {module}"


def test_the_pool_is_reached_only_through_the_engine():
    for path in [p for wing in ("http", "streaming", "wyoming") for p in sorted((APP / wing).rglob("*.py"))]:
        assert not {m for m in app_imports(path) if m.startswith("app.execution.pool")}, path


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(APP)): n for p in APP.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
