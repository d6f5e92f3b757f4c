"""`loramux route`, `loramux router fit|eval` and `loramux kb ingest`: the router and the
knowledge base, which both embed text with the configured encoder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from loramux.cli.app import ConfigOpt, app, fail, kb_app, progress, router_app, setup_logging
from loramux.config import LoramuxConfig, load_config
from loramux.errors import ConfigError, LoramuxError


def make_encoder_for(cfg: LoramuxConfig) -> Any:
    """The encoder the config's embedder and router cache size call for."""
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
        setup_logging("warning")
        from loramux.router.build import build_router

        encoder = make_encoder_for(cfg)
        router = build_router(cfg.router, encoder)
        decision = router.route(text[-1], history=tuple(text[:-1]))
    except LoramuxError as exc:
        fail(exc)
    typer.echo(json.dumps(decision.to_dict(), indent=2))


@router_app.command("fit")
def router_fit(
    routes: Annotated[
        Path | None, typer.Option(help="Routes YAML (configs/routes/*.yaml).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help='Labelled JSONL: {"text", "label"} per line (with --from-log: added).'),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write fitted.yaml (+ fitted.npz); a path that is not a .yaml file is "
            "a router version store (the fit becomes its new active version). With --from-log "
            "default: router.fitted when it is a store, else <data_dir>/router."
        ),
    ] = None,
    target_precision: Annotated[float, typer.Option(help="Routed precision to reach.")] = 0.95,
    kind: Annotated[str, typer.Option(help="semantic or baseline.")] = "semantic",
    decision: Annotated[
        str,
        typer.Option(
            help="Semantic router: what decides: auto (whichever routes the most held-out "
            "requests at the target), blend (head + neighbour vote), head (classifier head "
            "alone), vote (nearest-neighbour vote alone)."
        ),
    ] = "auto",
    from_log: Annotated[
        bool,
        typer.Option(
            "--from-log",
            help="Refit the served router (the config's router) on the decision log: approved "
            "corrections and thumbs-up routed requests become labelled data.",
        ),
    ] = False,
    corrections: Annotated[
        Path | None,
        typer.Option(
            help='--from-log: JSONL of {"request_id", "label", "approved": true} per line.'
        ),
    ] = None,
    held_out: Annotated[
        float | None,
        typer.Option(
            help="--from-log: share of the labelled logged requests held out for the "
            "before/after curve (default 0.3)."
        ),
    ] = None,
    activate: Annotated[
        bool | None,
        typer.Option(
            "--activate/--no-activate",
            help="--from-log: make the new version the served one (default: activate).",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Choose per-route thresholds (and train the classifier head) on labelled data."""
    try:
        setup_logging("warning")
        if from_log:
            from loramux.cli.router_versions import fit_from_log

            if routes is not None:
                raise ConfigError(
                    "--routes does not apply with --from-log: the served router's routes are kept"
                )
            if kind != "semantic":
                raise ConfigError("--from-log refits the semantic router; drop --kind")
            text = fit_from_log(
                config,
                data=data,
                out=out,
                target_precision=target_precision,
                decision=decision,
                corrections=corrections,
                held_out=0.3 if held_out is None else held_out,
                activate=True if activate is None else activate,
            )
            typer.echo(text)
            return
        given = [
            name
            for name, value in (
                ("--corrections", corrections),
                ("--held-out", held_out),
                ("--activate/--no-activate", activate),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --from-log")
        missing = [n for n, v in (("--routes", routes), ("--data", data), ("--out", out)) if not v]
        if missing:
            raise ConfigError(f"router fit needs {', '.join(missing)} (or --from-log)")
        assert routes is not None
        assert data is not None
        assert out is not None
        from loramux.router.fit.calibration import fit_router

        summary = fit_router(routes, data, target_precision, out, kind=kind, decision=decision)
    except LoramuxError as exc:
        fail(exc)
    typer.echo(summary.format_table())


def router_eval_dir(cfg: LoramuxConfig) -> Path:
    """Where `router eval` writes by default: `router/` in the dashboard's eval folder."""
    return (cfg.dashboard.eval_dir or cfg.paths.data_dir / "eval") / "router"


@router_app.command("eval")
def router_eval(
    routes: Annotated[
        Path,
        typer.Option(
            help="fitted.yaml, a router version store (its active version), or a routes YAML "
            "(unfitted)."
        ),
    ],
    data: Annotated[Path, typer.Option(help="Labelled JSONL the router has not seen.")],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for report.json and the PNG charts (default: router/ in the dashboard's "
            "eval_dir, <data_dir>/eval, so the dashboard shows the charts)."
        ),
    ] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Write one JSON line per item here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    kind: Annotated[str, typer.Option(help="Router kind for a routes YAML.")] = "semantic",
    config: ConfigOpt = None,
) -> None:
    """Accuracy, abstention, out-of-scope rejection, per-route precision/recall/F1, charts."""
    try:
        if out_dir is None:
            out_dir = router_eval_dir(load_config(config))
        setup_logging("warning")
        from loramux.router.fit.evaluation import evaluate_router

        report = evaluate_router(
            routes, data, out_dir=out_dir, predictions_path=predictions, kind=kind
        )
    except LoramuxError as exc:
        fail(exc)
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
        setup_logging("warning")
        from loramux.rag.ingest import ingest

        sources = list(paths or cfg.kb.sources)
        if not sources:
            raise ConfigError("name files or folders to ingest, or set kb.sources in the config")
        kb_dir = cfg.kb.dir or cfg.paths.data_dir / "kb"
        summary = ingest(
            sources,
            kb_dir,
            make_encoder_for(cfg),
            lambda file, done, total: progress(f"[{done}/{total}] {file}"),
            chunk_words=cfg.kb.chunk_words,
            prune=prune,
        )
    except LoramuxError as exc:
        fail(exc)
    typer.echo(json.dumps(dataclasses.asdict(summary), indent=2, default=str))
