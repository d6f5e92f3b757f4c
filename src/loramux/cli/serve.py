"""`loramux serve` and `loramux models pull`: the API server and the embedded models it needs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from loramux.cli.app import ConfigOpt, app, fail, models_app, progress, setup_logging
from loramux.config import LoramuxConfig, load_config
from loramux.errors import LoramuxError

SERVE_OVERRIDES: dict[str, tuple[str, str]] = {
    "host": ("server", "host"),
    "port": ("server", "port"),
    "engine": ("engine", "kind"),
    "log_format": ("server", "log_format"),
}
"""`loramux serve`'s options that override the config -> the field (section, key) each sets;
tests/test_cli.py checks every one names a field, and that its help names the field's env var."""


def serve_overrides(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `overrides` for `load_config` from `serve`'s option values (None: not given)."""
    overrides: dict[str, dict[str, Any]] = {}
    for option, value in options.items():
        section, key = SERVE_OVERRIDES[option]
        overrides.setdefault(section, {})[key] = value
    return overrides


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface (env LORAMUX_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env LORAMUX_PORT).")] = None,
    engine: Annotated[
        str | None, typer.Option(help="Engine: hf, vllm, remote, auto or fake (LORAMUX_ENGINE).")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="Log lines: text or json (env LORAMUX_LOG_FORMAT)."),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API (fetches the embedded models on first use)."""
    try:
        options = {"host": host, "port": port, "engine": engine, "log_format": log_format}
        cfg = load_config(config, overrides=serve_overrides(options))
        setup_logging(cfg.server.log_level, cfg.server.log_format)
        if cfg.engine.kind in ("hf", "vllm", "auto"):
            # Fetch (with progress on the terminal) and check the model once, here; the engine
            # then loads the checked folder instead of hashing its 260 MB a second time.
            base = _pull(cfg)["base_model"]
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"source": base})})
        from loramux.api import create_app

        application = create_app(cfg)
    except LoramuxError as exc:
        fail(exc)
    import uvicorn

    uvicorn.run(
        application,
        host=cfg.server.host,
        port=cfg.server.port,
        log_level=cfg.server.log_level,
        access_log=False,
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then cancel them.
        timeout_graceful_shutdown=cfg.server.drain_timeout_s,
        # JSON lines: uvicorn's own loggers go through our handler instead of its text format.
        log_config=None if cfg.server.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )


def _pull(cfg: LoramuxConfig) -> dict[str, str]:
    from loramux.models import ensure_base_model, ensure_embedder

    base = ensure_base_model(cfg.model, cfg.paths.cache_dir, progress=progress)
    found = {"base_model": str(base)}
    try:
        found["embedder"] = str(ensure_embedder(cfg.embedder))
    except LoramuxError as exc:
        progress(f"embedder not available ({exc.message}); routing will be off")
    return found


@models_app.command("pull")
def models_pull(config: ConfigOpt = None) -> None:
    """Fetch and convert the embedded models into the cache (a second run only checks them)."""
    try:
        cfg = load_config(config)
        setup_logging("warning")
        for what, where in _pull(cfg).items():
            typer.echo(f"{what}: {where}")
    except LoramuxError as exc:
        fail(exc)
