"""The package layering holds: imports point down the request path, never up.

The layers (docs/architecture.md draws them): `cli` and `api` (HTTP) on top; `gateway` (one
request's way from a parsed body to an engine stream); the components `router`, `rag`,
`adapters`, `keys`, `serve`, `eval`; shared `embed` and `storage`; at the bottom `config`,
`errors`, `types` and a few single-purpose modules. Every `import` in src/ is read, also the lazy
ones inside functions, so a shortcut cannot hide from this test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "transformers", "peft", "vllm", "faiss", "sentence_transformers", "psycopg")
BOTTOM = {"loramux", "config", "errors", "types", "fileio", "logs", "plotting"}
"""Modules every layer may use (`loramux` itself: the version string)."""
COMPONENTS = {"router", "rag", "adapters", "keys", "serve", "embed", "storage", "models"}
ALLOWED: dict[str, set[str]] = {
    "config": {"errors"},
    "errors": set(),
    "types": set(),
    "fileio": set(),
    "logs": set(),
    "plotting": set(),
    "models": BOTTOM,
    "storage": BOTTOM,
    "embed": BOTTOM | {"models"},
    "serve": BOTTOM | {"models"},
    "adapters": BOTTOM | {"models", "storage"},
    "keys": BOTTOM | {"storage"},
    "router": BOTTOM | {"embed"},
    "rag": BOTTOM | {"embed"},
    "eval": BOTTOM | {"models", "serve", "adapters", "embed", "router", "rag"},
    "gateway": BOTTOM | COMPONENTS,
    "api": BOTTOM | COMPONENTS | {"gateway"},
    "cli": BOTTOM | COMPONENTS | {"gateway", "api", "eval"},
    "__main__": {"cli"},
}
"""Top-level part of loramux -> the parts it may import."""
HTTP = ("fastapi", "starlette")


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted((SRC / "loramux").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _part(module: str) -> str:
    """`loramux.gateway.dispatch` -> `gateway`; `loramux` -> `loramux`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_part_of_loramux_has_a_layer() -> None:
    parts = {_part(module) for module, _ in _modules()}
    assert parts - {"loramux"} <= set(ALLOWED), f"add {parts - set(ALLOWED)} to ALLOWED"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, path in _modules():
        own = _part(module)
        for imported in _imports(path):
            if not imported.startswith("loramux"):
                continue
            target = _part(imported)
            if target != own and own != "loramux" and target not in ALLOWED[own]:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_only_the_http_layer_imports_fastapi() -> None:
    wrong = [
        f"{module} imports {imported}"
        for module, path in _modules()
        if _part(module) != "api"
        for imported in _imports(path)
        if imported.split(".")[0] in HTTP
    ]
    assert wrong == []


def test_the_serving_path_never_imports_what_only_fitting_uses() -> None:
    wrong = [
        f"{module} imports {imported}"
        for module, path in _modules()
        if not module.startswith(("loramux.router.fit", "loramux.cli", "loramux.eval"))
        for imported in _imports(path)
        if imported.startswith("loramux.router.fit")
    ]
    assert wrong == []


@pytest.mark.parametrize("module", ["loramux.api", "loramux.cli", "loramux.gateway.startup"])
def test_importing_the_gateway_loads_no_heavy_dependency(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
