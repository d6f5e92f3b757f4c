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
