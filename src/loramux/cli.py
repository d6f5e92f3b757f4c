"""The `loramux` command line: one Typer app whose subcommands wrap importable functions.

Errors a user can cause print as one line (`error: ...`) with exit code 1; no stack traces
unless `--debug` is given. Logging is configured here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from loramux.config import LoramuxConfig, load_config, load_train_config
from loramux.errors import LoramuxError

app = typer.Typer(
    name="loramux",
    help="Serve many LoRA adapters over one frozen LLM behind an OpenAI-compatible API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Embedded default models: fetch, convert and check.")
app.add_typer(models_app, name="models")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (default: configs/default.yaml if present)."),
]
_state = {"debug": False}


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(exc: BaseException) -> NoReturn:
    if _state["debug"]:
        raise exc
    message = exc.message if isinstance(exc, LoramuxError) else f"{type(exc).__name__}: {exc}"
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _progress(line: str) -> None:
    typer.echo(line, err=True)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show stack traces on errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface (env LORAMUX_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env LORAMUX_PORT).")] = None,
    engine: Annotated[
        str | None, typer.Option(help="Engine: hf or fake (env LORAMUX_ENGINE).")
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API (fetches the embedded models on first use)."""
    try:
        cfg = load_config(
            config,
            overrides={"server": {"host": host, "port": port}, "engine": {"kind": engine}},
        )
        _setup_logging(cfg.server.log_level)
        if cfg.engine.kind == "hf":
            _pull(cfg)
        from loramux.api import create_app

        application = create_app(cfg)
    except LoramuxError as exc:
        _fail(exc)
    import uvicorn

    uvicorn.run(
        application,
        host=cfg.server.host,
        port=cfg.server.port,
        log_level=cfg.server.log_level,
        access_log=False,
    )


def _pull(cfg: LoramuxConfig) -> dict[str, str]:
    from loramux.models import ensure_base_model, ensure_embedder

    base = ensure_base_model(cfg.model, cfg.paths.cache_dir, progress=_progress)
    found = {"base_model": str(base)}
    try:
        found["embedder"] = str(ensure_embedder(cfg.embedder))
    except LoramuxError as exc:
        _progress(f"embedder not available ({exc.message}); routing will be off")
    return found


@models_app.command("pull")
def models_pull(config: ConfigOpt = None) -> None:
    """Fetch and convert the embedded models into the cache (a second run only checks them)."""
    try:
        cfg = load_config(config)
        _setup_logging("warning")
        for what, where in _pull(cfg).items():
            typer.echo(f"{what}: {where}")
    except LoramuxError as exc:
        _fail(exc)


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
        _setup_logging("warning")
        from loramux.adapters.training import train

        summary = train(cfg)
    except LoramuxError as exc:
        _fail(exc)
    typer.echo(json.dumps(summary.to_dict(), indent=2))


def main() -> None:
    """Entry point of the `loramux` console script."""
    from loramux.models import set_offline

    set_offline()
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
