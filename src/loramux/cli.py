"""The `loramux` command line: one Typer app whose subcommands wrap importable functions.

Errors a user can cause print as one line (`error: ...`) with exit code 1; no stack traces
unless `--debug` is given. Logging is configured here and nowhere else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from loramux.config import LoramuxConfig, load_config, load_train_config
from loramux.errors import ConfigError, LoramuxError
from loramux.logs import LogFormat, configure_logging

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
eval_app = typer.Typer(help="Task quality, forgetting on general benchmarks, the misroute matrix.")
app.add_typer(eval_app, name="eval")
keys_app = typer.Typer(help="Per-department API keys for the inference endpoints.")
app.add_typer(keys_app, name="keys")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (default: configs/default.yaml if present)."),
]
_state = {"debug": False}


def _setup_logging(level: str, fmt: LogFormat = "text") -> None:
    configure_logging(level, fmt)


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
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="Log lines: text or json (env LORAMUX_LOG_FORMAT)."),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API (fetches the embedded models on first use)."""
    try:
        cfg = load_config(
            config,
            overrides={
                "server": {"host": host, "port": port, "log_format": log_format},
                "engine": {"kind": engine},
            },
        )
        _setup_logging(cfg.server.log_level, cfg.server.log_format)
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
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then cancel them.
        timeout_graceful_shutdown=cfg.server.drain_timeout_s,
        # JSON lines: uvicorn's own loggers go through our handler instead of its text format.
        log_config=None if cfg.server.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
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
    from loramux.embed.device import embedder_device
    from loramux.embed.encoder import make_encoder
    from loramux.models import ensure_embedder

    ensure_embedder(cfg.embedder)  # a clear error when the embedder is missing
    device = embedder_device(cfg.embedder)
    return make_encoder(cfg.embedder.source, device=device, cache_size=cfg.router.cache_size)


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
        from loramux.router.fit.calibration import fit_router

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
        from loramux.router.fit.evaluation import evaluate_router

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
    from loramux.gateway.startup import base_spec

    async def run() -> Any:
        registry = AdapterRegistry.open(cfg.paths.data_dir, base_spec(cfg), cfg.registry)
        await registry.start()
        try:
            return await action(registry)
        finally:
            await registry.close()

    return asyncio.run(run())


def _adapter_view(registry: Any, name: str) -> dict[str, Any]:
    from loramux.adapters.public import adapter_json

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
    from loramux.adapters.public import audit_json

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
    from loramux.adapters.public import version_json

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


# -- API keys ------------------------------------------------------------------------------------


def _keys_cmd(config: Path | None, action: Callable[[Any], Any]) -> None:
    """Run `action(keyring)` on the config's data dir (a running server sees the change on its
    next request) and print the result as JSON."""
    try:
        cfg = load_config(config)
        _setup_logging("warning")
        from loramux.keys.keyring import Keyring

        keyring = Keyring.open(cfg.paths.data_dir, cfg.registry.store)
        try:
            result = action(keyring)
        finally:
            keyring.close()
    except LoramuxError as exc:
        _fail(exc)
    typer.echo(json.dumps(result, indent=2))


@keys_app.command("create")
def keys_create(
    department: Annotated[str, typer.Option(help="Who the key is for (hr, it, ...).")],
    adapters: Annotated[
        list[str] | None,
        typer.Option(help="Adapters the key may use, comma-separated (hr,it); may repeat."),
    ] = None,
    base: Annotated[bool, typer.Option(help="May use the base model (also as fallback).")] = True,
    rag: Annotated[bool, typer.Option(help="May get RAG answers (auto's fallback).")] = True,
    rpm: Annotated[
        int | None, typer.Option(min=1, help="Requests per minute (default: auth.rpm).")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option(min=1, help="Tokens per minute (default: auth.tpm).")
    ] = None,
    label: Annotated[str, typer.Option(help="A note, e.g. who holds the key.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Make an API key. It is printed once (`key`); loramux keeps only its sha256."""
    from loramux.keys.records import KeySpec, split_names

    spec = KeySpec(department, split_names(adapters or ()), base, rag, rpm, tpm, label)

    def action(keyring: Any) -> Any:
        issued = keyring.create(spec, actor="cli")
        _progress("the key is shown this once: store it now (loramux keeps only its sha256)")
        return {**issued.record.public(), "key": issued.secret}

    _keys_cmd(config, action)


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    """Every key (revoked ones too) with its prefix, department, adapters and limits; never the
    keys themselves."""
    _keys_cmd(config, lambda keyring: [k.public() for k in keyring.list_keys()])


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (`loramux keys list`).")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a key; a running server refuses it from its next request on."""
    _keys_cmd(config, lambda keyring: keyring.revoke(key_id, actor="cli").public())


# -- eval ----------------------------------------------------------------------------------------

AdapterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--adapter",
        "-a",
        help="NAME=FOLDER, a PEFT adapter folder, or an adapter name of the config; may repeat.",
    ),
]
DataOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        "-d",
        help="Held-out chat JSONL: NAME=FILE or FILE (demo/data/hr/test.jsonl is `hr`); repeat.",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (a CUDA GPU when present), cpu or cuda.")]
MetricOpt = Annotated[
    str | None,
    typer.Option(help="key_accuracy, token_f1 or exact_match (default: key_accuracy with keys)."),
]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Only the first N examples per file.")]
MaxNewOpt = Annotated[int, typer.Option(min=1, help="Longest answer, in tokens (greedy).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        help="Folder for <kind>.json and <kind>.png (default: <kind>/ in the dashboard's "
        "eval_dir, <data_dir>/eval, so the dashboard shows the chart)."
    ),
]


def _eval_cmd(config: Path | None, as_json: bool, run: Callable[[LoramuxConfig], Any]) -> None:
    try:
        cfg = load_config(config)
        _setup_logging("warning")
        report = run(cfg)
    except LoramuxError as exc:
        _fail(exc)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_table())


def _eval_options(adapter: list[str] | None, out: Path | None, device: str) -> Any:
    from loramux.eval.commands import RunOptions

    return RunOptions(adapters=tuple(adapter or ()), out=out, device=device)


def _answers_eval(
    kind: str,
    adapter: list[str] | None,
    data: list[str] | None,
    metric: str | None,
    out: Path | None,
    limit: int | None,
    max_new_tokens: int,
    device: str,
    as_json: bool,
    config: Path | None,
) -> None:
    """`eval task` and `eval matrix`: both generate greedy answers to held-out task data."""

    def run(cfg: LoramuxConfig) -> Any:
        options = _eval_options(adapter, out, device)
        from loramux.eval.commands import run_matrix_eval, run_task_eval
        from loramux.eval.task import GenerationSettings

        return (run_task_eval if kind == "task" else run_matrix_eval)(
            cfg,
            options,
            data or [],
            metric=metric,
            limit=limit,
            generation=GenerationSettings(max_new_tokens=max_new_tokens),
            progress=_progress,
        )

    _eval_cmd(config, as_json, run)


@eval_app.command("task")
def eval_task_cmd(
    adapter: AdapterOpt = None,
    data: DataOpt = None,
    metric: MetricOpt = None,
    out: OutOpt = None,
    limit: LimitOpt = None,
    max_new_tokens: MaxNewOpt = 48,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Each adapter vs the base model on its own task's held-out data (greedy answers)."""

    _answers_eval(
        "task", adapter, data, metric, out, limit, max_new_tokens, device, as_json, config
    )


@eval_app.command("forgetting")
def eval_forgetting_cmd(
    adapter: AdapterOpt = None,
    benchmark: Annotated[
        list[str] | None,
        typer.Option(
            help="mmlu, arc_easy, arc_challenge, boolq, hellaswag, piqa; may repeat "
            "(default: all but piqa)."
        ),
    ] = None,
    per_benchmark: Annotated[
        int, typer.Option(min=1, help="Items per benchmark (a stratified subset).")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the subsets and the bootstrap.")] = 0,
    tolerance: Annotated[
        float, typer.Option(min=0, help="Largest drop of the average, in points, still `kept`.")
    ] = 1.0,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """General benchmarks (MMLU, ARC, BoolQ, HellaSwag), base model vs each adapter."""

    def run(cfg: LoramuxConfig) -> Any:
        options = _eval_options(adapter, out, device)
        from loramux.eval.commands import run_forgetting_eval
        from loramux.eval.forgetting import ForgettingSettings

        settings = ForgettingSettings(per_benchmark=per_benchmark, seed=seed, tolerance=tolerance)
        if benchmark:
            settings = dataclasses.replace(settings, benchmarks=tuple(benchmark))
        return run_forgetting_eval(cfg, options, settings, progress=_progress)

    _eval_cmd(config, as_json, run)


@eval_app.command("matrix")
def eval_matrix_cmd(
    adapter: AdapterOpt = None,
    data: DataOpt = None,
    metric: MetricOpt = None,
    out: OutOpt = None,
    limit: LimitOpt = None,
    max_new_tokens: MaxNewOpt = 48,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Every adapter and the base model on every task's held-out data: the misroute cost."""

    _answers_eval(
        "matrix", adapter, data, metric, out, limit, max_new_tokens, device, as_json, config
    )


def main() -> None:
    """Entry point of the `loramux` console script."""
    from loramux.models import set_offline

    set_offline()
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
