"""The `loramux` command line: one Typer app whose subcommands wrap importable functions.

Errors a user can cause print as one line (`error: ...`) with exit code 1; no stack traces
unless `--debug` is given. Logging is configured here and nowhere else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from loramux.config import LoramuxConfig, load_config, load_train_config
from loramux.errors import ConfigError, LoramuxError

app = typer.Typer(
    name="loramux",
    help="Serve many LoRA adapters over one frozen LLM behind an OpenAI-compatible API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Embedded default models: fetch, convert and check.")
app.add_typer(models_app, name="models")
router_app = typer.Typer(help="Fit and evaluate the router on labelled data.")
app.add_typer(router_app, name="router")
kb_app = typer.Typer(help="The knowledge base behind RAG answers.")
app.add_typer(kb_app, name="kb")
adapters_app = typer.Typer(help="The adapter registry: versions, traffic splits, experiments.")
app.add_typer(adapters_app, name="adapters")

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
    # faiss logs each CPU-specific build it tries and fails to load; that is not news.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


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
        str | None, typer.Option(help="Engine: hf, vllm, remote, auto or fake (LORAMUX_ENGINE).")
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API (fetches the embedded models on first use)."""
    try:
        cfg = load_config(
            config,
            overrides={"server": {"host": host, "port": port}, "engine": {"kind": engine}},
        )
        _setup_logging(cfg.server.log_level)
        if cfg.engine.kind in ("hf", "vllm", "auto"):
            # Fetch (with progress on the terminal) and check the model once, here; the engine
            # then loads the checked folder instead of hashing its 260 MB a second time.
            base = _pull(cfg)["base_model"]
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"source": base})})
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


def _encoder(cfg: LoramuxConfig) -> Any:
    from loramux.models import ensure_embedder
    from loramux.router.encoder import make_encoder

    ensure_embedder(cfg.embedder)  # a clear error when the embedder is missing
    return make_encoder(cfg.embedder.source, cache_size=cfg.router.cache_size)


@app.command("route")
def route_cmd(
    text: Annotated[list[str], typer.Argument(help="The message (earlier turns first).")],
    config: ConfigOpt = None,
) -> None:
    """Show the routing decision for a message, without generating (`POST /v1/route`)."""
    try:
        cfg = load_config(config)
        _setup_logging("warning")
        from loramux.router.build import build_router

        encoder = _encoder(cfg)
        router = build_router(cfg.router, encoder)
        decision = router.route(text[-1], history=tuple(text[:-1]))
    except LoramuxError as exc:
        _fail(exc)
    typer.echo(json.dumps(decision.to_dict(), indent=2))


@router_app.command("fit")
def router_fit(
    routes: Annotated[Path, typer.Option(help="Routes YAML (configs/routes/*.yaml).")],
    data: Annotated[Path, typer.Option(help='Labelled JSONL: {"text", "label"} per line.')],
    out: Annotated[Path, typer.Option(help="Where to write fitted.yaml (+ fitted.npz).")],
    target_precision: Annotated[float, typer.Option(help="Routed precision to reach.")] = 0.95,
    kind: Annotated[str, typer.Option(help="semantic or baseline.")] = "semantic",
) -> None:
    """Choose per-route thresholds (and train the classifier head) on labelled data."""
    try:
        _setup_logging("warning")
        from loramux.router.calibration import fit_router

        summary = fit_router(routes, data, target_precision, out, kind=kind)
    except LoramuxError as exc:
        _fail(exc)
    typer.echo(summary.format_table())


@router_app.command("eval")
def router_eval(
    routes: Annotated[Path, typer.Option(help="fitted.yaml, or a routes YAML (unfitted).")],
    data: Annotated[Path, typer.Option(help="Labelled JSONL the router has not seen.")],
    out_dir: Annotated[
        Path, typer.Option(help="Folder for report.json and the PNG charts.")
    ] = Path("router-eval"),
    predictions: Annotated[
        Path | None, typer.Option(help="Write one JSON line per item here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    kind: Annotated[str, typer.Option(help="Router kind for a routes YAML.")] = "semantic",
) -> None:
    """Accuracy, abstention, out-of-scope rejection, per-route precision/recall/F1, charts."""
    try:
        _setup_logging("warning")
        from loramux.router.evaluation import evaluate_router

        report = evaluate_router(
            routes, data, out_dir=out_dir, predictions_path=predictions, kind=kind
        )
    except LoramuxError as exc:
        _fail(exc)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_table())


@kb_app.command("ingest")
def kb_ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders (default: kb.sources).")
    ] = None,
    config: ConfigOpt = None,
    prune: Annotated[bool, typer.Option(help="Drop documents not among PATHS.")] = False,
) -> None:
    """Add or update documents (Markdown, text, HTML, PDF); unchanged files are skipped."""
    try:
        cfg = load_config(config)
        _setup_logging("warning")
        from loramux.rag.ingest import ingest

        sources = list(paths or cfg.kb.sources)
        if not sources:
            raise ConfigError("name files or folders to ingest, or set kb.sources in the config")
        kb_dir = cfg.kb.dir or cfg.paths.data_dir / "kb"
        summary = ingest(
            sources,
            kb_dir,
            _encoder(cfg),
            lambda file, done, total: _progress(f"[{done}/{total}] {file}"),
            chunk_words=cfg.kb.chunk_words,
            prune=prune,
        )
    except LoramuxError as exc:
        _fail(exc)
    typer.echo(json.dumps(dataclasses.asdict(summary), indent=2, default=str))


# -- adapters ------------------------------------------------------------------------------------


def _with_registry(cfg: LoramuxConfig, action: Callable[[Any], Awaitable[Any]]) -> Any:
    """Open the registry without an engine (a running server picks changes up by itself)."""
    from loramux.adapters.registry import AdapterRegistry
    from loramux.api.startup import base_spec

    async def run() -> Any:
        registry = AdapterRegistry.open(cfg.paths.data_dir, base_spec(cfg), cfg.registry)
        await registry.start()
        try:
            return await action(registry)
        finally:
            await registry.close()

    return asyncio.run(run())


def _adapter_view(registry: Any, name: str) -> dict[str, Any]:
    from loramux.api.routes.adapters import adapter_json

    adapter, versions = registry.get(name)
    return adapter_json(adapter, versions)


def _registry_cmd(config: Path | None, action: Callable[[Any], Awaitable[Any]]) -> None:
    try:
        cfg = load_config(config)
        _setup_logging("warning")
        result = _with_registry(cfg, action)
    except LoramuxError as exc:
        _fail(exc)
    typer.echo(json.dumps(result, indent=2, default=str))


@adapters_app.command("list")
def adapters_list(config: ConfigOpt = None) -> None:
    """Every adapter with its versions and traffic split."""

    async def action(reg: Any) -> Any:
        return [_adapter_view(reg, a.name) for a in reg.adapters()]

    _registry_cmd(config, action)


@adapters_app.command("show")
def adapters_show(name: str, config: ConfigOpt = None) -> None:
    """One adapter, its versions and its recent audit log."""
    from loramux.api.routes.adapters import audit_json

    async def action(reg: Any) -> Any:
        return {**_adapter_view(reg, name), "audit": [audit_json(e) for e in reg.audit_log(name)]}

    _registry_cmd(config, action)


@adapters_app.command("register")
def adapters_register(
    path: Annotated[Path, typer.Argument(help="A PEFT LoRA folder, or a .zip/.tar.gz of one.")],
    name: Annotated[str, typer.Option(help="Adapter name (what clients ask for).")],
    department: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    utterances: Annotated[
        Path | None, typer.Option(help="Text file, one example request per line (routing).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Check and register an adapter version (the first version of a name gets its traffic)."""
    from loramux.api.routes.adapters import version_json

    examples = None
    if utterances is not None:
        examples = [x.strip() for x in utterances.read_text(encoding="utf-8").splitlines()]
        examples = [x for x in examples if x]

    async def action(reg: Any) -> Any:
        common = {
            "name": name,
            "actor": "cli",
            "department": department,
            "description": description,
            "utterances": examples,
        }
        if path.is_file():
            result = await reg.register_archive(path, **common)
        else:
            result = await reg.register(path, check_root=False, **common)
        return {"created": result.created, "version": version_json(result.version, result.adapter)}

    _registry_cmd(config, action)


@adapters_app.command("traffic")
def adapters_traffic(
    name: str,
    split: Annotated[list[str], typer.Argument(help="VERSION=WEIGHT ..., weights sum to 100.")],
    config: ConfigOpt = None,
) -> None:
    """Split an adapter's traffic between versions (sticky per user)."""
    weights: dict[str, int] = {}
    for item in split:
        version, _, weight = item.partition("=")
        if not weight.strip().isdigit():
            _fail(ConfigError(f"{item!r}: write VERSION=WEIGHT, for example 3f9c1a2b4d5e=80"))
        weights[version.strip()] = int(weight)

    async def action(reg: Any) -> Any:
        await reg.set_traffic(name, weights, actor="cli")
        return _adapter_view(reg, name)

    _registry_cmd(config, action)


@adapters_app.command("promote")
def adapters_promote(name: str, version: str, config: ConfigOpt = None) -> None:
    """Send all of an adapter's traffic to one version."""

    async def action(reg: Any) -> Any:
        await reg.promote(name, version, actor="cli")
        return _adapter_view(reg, name)

    _registry_cmd(config, action)


@adapters_app.command("retire")
def adapters_retire(name: str, version: str, config: ConfigOpt = None) -> None:
    """Retire a version that has no traffic left (it is unloaded from the engine)."""

    async def action(reg: Any) -> Any:
        await reg.retire(name, version, actor="cli")
        return _adapter_view(reg, name)

    _registry_cmd(config, action)


@adapters_app.command("experiment")
def adapters_experiment(name: str, config: ConfigOpt = None) -> None:
    """Per-version requests, errors, latency, feedback, the test and a recommendation."""

    async def action(reg: Any) -> Any:
        return dataclasses.asdict(reg.experiment(name))

    _registry_cmd(config, action)


def main() -> None:
    """Entry point of the `loramux` console script."""
    from loramux.models import set_offline

    set_offline()
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
