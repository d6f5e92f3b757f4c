"""`loramux train`: one LoRA adapter from a training YAML (configs/train/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from loramux.cli.app import app, fail, setup_logging
from loramux.config import load_train_config
from loramux.errors import LoramuxError


@app.command("train")
def train_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training YAML (configs/train/).")],
    output_dir: Annotated[
        Path | None, typer.Option(help="Write the adapter here instead of the YAML's output_dir.")
    ] = None,
) -> None:
    """Train a LoRA adapter (PEFT) for one task and write it with a model card."""
    try:
        overrides = {"output_dir": str(output_dir.resolve())} if output_dir else None
        cfg = load_train_config(config, overrides=overrides)
        setup_logging("warning")
        from loramux.adapters.training import train

        summary = train(cfg)
    except LoramuxError as exc:
        fail(exc)
    typer.echo(json.dumps(summary.to_dict(), indent=2))
