"""The gateway stays light: importing it pulls in no engine, model or index library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "vllm", "faiss", "sentence_transformers")


def test_importing_the_api_and_cli_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, loramux.api, loramux.cli; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


LAYERS = {
    "types": ("adapters", "keys", "serve", "api", "storage"),
    "storage": ("adapters", "keys", "serve", "api"),
    "keys": ("adapters", "serve", "api"),
    "adapters": ("keys", "serve", "api"),
}
"""Package (or module) of loramux -> the packages it must not import: lower layers never
reach up."""


def test_lower_layers_import_nothing_above_them() -> None:
    import ast
    from pathlib import Path

    import loramux

    root = Path(loramux.__file__).parent
    wrong = []
    for layer, above in LAYERS.items():
        files = [root / f"{layer}.py"] if (root / f"{layer}.py").is_file() else []
        for path in files or sorted((root / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                wrong += [
                    f"{path.relative_to(root)} imports {name}"
                    for name in names
                    if name.split(".")[:2] in (["loramux", a] for a in above)
                ]
    assert wrong == []
