"""`loramux router fit --from-log`, `loramux router versions` and `loramux router rollback`:
refitting the served router on logged traffic, and the versions of the fitted router."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from loramux.cli.app import ConfigOpt, fail, router_app, setup_logging
from loramux.config import LoramuxConfig, load_config
from loramux.errors import ConfigError, LoramuxError


def version_store(cfg: LoramuxConfig, out: Path | None = None) -> Path:
    """The router version store: `out`, else `router.fitted` when it is a store, else
    `<data_dir>/router`."""
    from loramux.router.versions import is_store

    if out is not None:
        return out
    fitted = cfg.router.fitted
    if fitted is not None and is_store(fitted):
        return fitted
    return cfg.paths.data_dir.expanduser() / "router"


def fit_from_log(
    config: Path | None,
    *,
    data: Path | None,
    out: Path | None,
    target_precision: float,
    decision: str,
    corrections: Path | None,
    held_out: float,
    activate: bool,
) -> str:
    """Refit the config's router on its decision log; returns the summary table."""
    from loramux.cli.report import registry_ratings
    from loramux.cli.router import make_encoder_for, router_eval_dir
    from loramux.gateway.decisions import read_decisions
    from loramux.router.build import build_router
    from loramux.router.fit.data import load_labelled
    from loramux.router.fit.refit import labelled_from_log, load_corrections, refit_router
    from loramux.router.versions import is_store
    from loramux.storage.sqlite import DB_FILE

    cfg = load_config(config)
    if out is not None and out.suffix in {".yaml", ".yml"}:
        raise ConfigError(
            f"--out {out}: with --from-log the refit is written as a new version into a router "
            "version store (a folder), so it can be rolled back"
        )
    folder = (cfg.decisions.dir or cfg.paths.data_dir / "decisions").expanduser()
    records = list(read_decisions(folder))
    ids = [str(r["request_id"]) for r in records if r.get("request_id")]
    ratings = registry_ratings(ids, cfg.paths.data_dir.expanduser() / DB_FILE, cfg.registry)
    approved, unapproved = load_corrections(corrections) if corrections else ({}, 0)
    log = labelled_from_log(records, ratings, approved, unapproved)
    encoder = make_encoder_for(cfg)
    current = build_router(cfg.router, encoder)
    base = load_labelled(data, list(current.routes)) if data else []
    store = version_store(cfg, out)
    summary = refit_router(
        current,
        log,
        store,
        encoder=encoder,
        base_data=base,
        target_precision=target_precision,
        decision=decision,
        held_out=held_out,
        activate=activate,
        out_dir=router_eval_dir(cfg) / "refit",
    )
    text = summary.format_table()
    served = cfg.router.fitted
    if served is None or not is_store(served) or served.resolve() != store.resolve():
        text += f"\nthe gateway serves it once `router.fitted` is {store} (the version store)"
    return text


@router_app.command("versions")
def router_versions(
    config: ConfigOpt = None,
    store: Annotated[
        Path | None,
        typer.Option(help="The version store (default: router.fitted, else <data_dir>/router)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The stored versions of the fitted router, the active one marked."""
    try:
        from loramux.router.versions import RouterVersions

        folder = store or version_store(load_config(config))
        versions = RouterVersions(folder)
        active = versions.active()
        rows = []
        for v in versions.versions():
            estimate = _estimate(v.fitted)
            rows.append(
                {
                    "id": v.id,
                    "active": active is not None and v.id == active.id,
                    "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created)),
                    "note": v.note,
                    **estimate,
                }
            )
    except LoramuxError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps({"store": str(folder), "versions": rows}, indent=2))
        return
    if not rows:
        typer.echo(f"no router versions in {folder}")
        return
    for r in rows:
        mark = "*" if r["active"] else " "
        held = r.get("held_out_precision")
        quality = f"held-out precision {held:.3f}" if isinstance(held, float) else ""
        typer.echo(f"{mark} {r['id']}  {r['created']} UTC  {r['note']}  {quality}".rstrip())


def _estimate(fitted: Path) -> dict[str, object]:
    from loramux.config import read_yaml

    try:
        held = (read_yaml(fitted).get("estimate") or {}).get("held_out") or {}
    except (LoramuxError, OSError):
        return {}
    return {"held_out_precision": held.get("held_out_precision")} if held else {}


@router_app.command("rollback")
def router_rollback(
    to: Annotated[
        str | None,
        typer.Option(help="Version id (or a unique prefix); default: the one active before."),
    ] = None,
    config: ConfigOpt = None,
    store: Annotated[
        Path | None,
        typer.Option(help="The version store (default: router.fitted, else <data_dir>/router)."),
    ] = None,
) -> None:
    """Activate an earlier router version; a gateway serving the store swaps it in."""
    try:
        setup_logging("warning")
        from loramux.router.versions import RouterVersions

        folder = store or version_store(load_config(config))
        version = RouterVersions(folder).rollback(to)
    except LoramuxError as exc:
        fail(exc)
    typer.echo(f"active router version: {version.id} ({folder})")
