"""`loramux report decisions`: a summary of the decision log (`gateway.decisions`) of a data
dir, with the registry's feedback joined by request id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loramux.cli.app import ConfigOpt, fail, report_app, setup_logging
from loramux.config import RegistrySettings, load_config
from loramux.errors import LoramuxError

if TYPE_CHECKING:
    from loramux.adapters.store import RegistryStore


def decisions_report(
    folder: Path, db: Path | None, registry: RegistrySettings | None = None
) -> dict[str, Any]:
    """Summarise the log in `folder`, joining ratings from the registry database `db` (SQLite)
    or, when `registry` names the `postgres` store, from PostgreSQL."""
    from loramux.gateway.decisions import read_decisions, summarise

    records = list(read_decisions(folder))
    ids = [str(r["request_id"]) for r in records if r.get("request_id")]
    ratings = registry_ratings(ids, db, registry)
    summary = summarise(iter(records), ratings)
    return {"object": "decisions.report", "folder": str(folder), **summary}


def registry_ratings(
    ids: list[str], db: Path | None, registry: RegistrySettings | None = None
) -> dict[str, str]:
    """Thumbs up/down by request id, from the registry database `db` (SQLite) or, when
    `registry` names the `postgres` store, from PostgreSQL; empty without a registry."""
    store: RegistryStore | None = None
    if registry is not None and registry.store != "sqlite":
        from loramux.adapters.store import STORES

        store = STORES[registry.store](db.parent if db else Path("."), registry)
    elif db is not None and db.exists():
        from loramux.adapters.sqlite_store import SQLiteRegistryStore

        store = SQLiteRegistryStore(db)
    if store is None:
        return {}
    try:
        return dict(store.ratings(ids))
    finally:
        store.close()


def render(report: dict[str, Any]) -> str:
    from loramux.cli.tables import table

    rate = report["abstention_rate"]
    head = (
        f"{report['requests']} requests in {report['folder']}; {report['routed']} routed "
        f"(model auto), abstention rate {'-' if rate is None else f'{rate:.1%}'}"
    )
    rows = [
        (
            g["route"],
            g["target"],
            g["adapter"],
            g["version"][:12],
            g["requests"],
            g["errors"],
            g["client_errors"],
            g["abstained"],
            g["latency_p50_ms"],
            g["latency_p95_ms"],
            g["up"],
            g["down"],
        )
        for g in report["groups"]
    ]
    headers = (
        "route",
        "target",
        "adapter",
        "version",
        "requests",
        "errors",
        "4xx",
        "abstained",
        "p50 ms",
        "p95 ms",
        "up",
        "down",
    )
    return head + "\n" + table(headers, rows) if rows else head


@report_app.command("decisions")
def report_decisions(
    config: ConfigOpt = None,
    folder: Annotated[
        Path | None, typer.Option("--dir", help="The log's folder (default: decisions.dir).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Per route / target / adapter / version: requests, errors, abstentions, latency p50/p95
    and thumbs up/down (joined from the registry by request id)."""
    try:
        cfg = load_config(config)
        setup_logging("warning")
        from loramux.storage.sqlite import DB_FILE

        where = folder or cfg.decisions.dir or cfg.paths.data_dir / "decisions"
        db = cfg.paths.data_dir.expanduser() / DB_FILE
        result = decisions_report(where.expanduser(), db, cfg.registry)
    except LoramuxError as exc:
        fail(exc)
    typer.echo(json.dumps(result, indent=2) if as_json else render(result))
