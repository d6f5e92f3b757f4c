"""`loramux adapters ...`: the adapter registry (versions, traffic splits, experiments), opened
without an engine; a running server picks the changes up by itself.

`list`, `show` and `experiment` print tables (`loramux.cli.tables`); `--json` prints the JSON the
HTTP API answers, for scripts. The other commands print JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from loramux.cli.app import ConfigOpt, adapters_app, fail, setup_logging
from loramux.config import LoramuxConfig, load_config
from loramux.errors import ConfigError, LoramuxError


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


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts), not a table.")]


def _registry_cmd(
    config: Path | None,
    action: Callable[[Any], Awaitable[Any]],
    render: Callable[[Any], str] | None = None,
) -> None:
    """Run `action(registry)` and print its result: JSON, or `render(result)` when given."""
    try:
        cfg = load_config(config)
        setup_logging("warning")
        result = _with_registry(cfg, action)
    except LoramuxError as exc:
        fail(exc)
    typer.echo(render(result) if render else json.dumps(result, indent=2, default=str))


@adapters_app.command("list")
def adapters_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every adapter with its versions and traffic split."""
    from loramux.cli.tables import adapters_table

    async def action(reg: Any) -> Any:
        return [_adapter_view(reg, a.name) for a in reg.adapters()]

    _registry_cmd(config, action, None if as_json else adapters_table)


@adapters_app.command("show")
def adapters_show(name: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """One adapter, its versions and its recent audit log."""
    from loramux.adapters.public import audit_json
    from loramux.cli.tables import adapter_detail

    async def action(reg: Any) -> Any:
        return {**_adapter_view(reg, name), "audit": [audit_json(e) for e in reg.audit_log(name)]}

    _registry_cmd(config, action, None if as_json else adapter_detail)


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
    """Check and register an adapter version (the first version of a name gets its traffic).
    A relative PATH is taken from the current directory."""
    from loramux.adapters.public import version_json

    path = path.expanduser().absolute()
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
            fail(ConfigError(f"{item!r}: write VERSION=WEIGHT, for example 3f9c1a2b4d5e=80"))
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


@adapters_app.command("rollback")
def adapters_rollback(name: str, config: ConfigOpt = None) -> None:
    """Send all traffic back to the previous main version (as the audit log remembers it)."""

    async def action(reg: Any) -> Any:
        await reg.rollback(name, actor="cli")
        return _adapter_view(reg, name)

    _registry_cmd(config, action)


@adapters_app.command("delete")
def adapters_delete(
    name: str,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even while it serves traffic.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Delete an adapter: every version and its files (the audit log keeps its history).
    Refused while it serves traffic (a request in the last registry.delete_idle_s, or pinned)
    unless --force."""

    async def action(reg: Any) -> Any:
        adapter = await reg.delete(name, actor="cli", force=force)
        return {"object": "adapter.deleted", "name": adapter.name, "deleted": True}

    _registry_cmd(config, action)


@adapters_app.command("retire")
def adapters_retire(name: str, version: str, config: ConfigOpt = None) -> None:
    """Retire a version that has no traffic left (it is unloaded from the engine)."""

    async def action(reg: Any) -> Any:
        await reg.retire(name, version, actor="cli")
        return _adapter_view(reg, name)

    _registry_cmd(config, action)


@adapters_app.command("pin")
def adapters_pin(
    name: str,
    off: Annotated[bool, typer.Option("--off", help="Unpin instead.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Pin an adapter: its versions with traffic stay loaded in the engine, never evicted (a
    running server picks the change up within `registry.watch_interval_s`)."""

    async def action(reg: Any) -> Any:
        await reg.set_pinned(name, not off, actor="cli")
        return _adapter_view(reg, name)

    _registry_cmd(config, action)


@adapters_app.command("experiment")
def adapters_experiment(
    name: str,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    url: Annotated[
        str | None,
        typer.Option(help="The running server (default: http://<server.host>:<server.port>)."),
    ] = None,
) -> None:
    """Per-version requests, errors, latency, feedback, the test and a recommendation.

    Latencies live in the memory of the serving process, so this asks the running server
    (`GET /v1/adapters/NAME/experiment`, what the HTTP endpoint shows); with no server reachable
    it reads the registry, without latencies."""
    from loramux.cli.tables import experiment_table

    try:
        cfg = load_config(config)
        setup_logging("warning")
        base = url or f"http://{cfg.server.host}:{cfg.server.port}"
        result = _served_experiment(base, name)
        if result is None:

            async def action(reg: Any) -> Any:
                return {"object": "experiment", **dataclasses.asdict(reg.experiment(name))}

            result = _with_registry(cfg, action)
            result["latency_source"] = (
                f"latency: no server answered at {base}; only the serving process has it"
            )
        else:
            result["latency_source"] = f"from the server at {base}"
    except LoramuxError as exc:
        fail(exc)
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else experiment_table(result))


def _served_experiment(base: str, name: str) -> dict[str, Any] | None:
    """The running server's experiment report; None when no server answers there.

    Raises:
        AdapterNotFoundError: the server has no such adapter.
    """
    import httpx

    from loramux.errors import AdapterNotFoundError

    try:
        response = httpx.get(f"{base.rstrip('/')}/v1/adapters/{name}/experiment", timeout=3.0)
    except httpx.HTTPError:
        return None
    if response.status_code == 404:
        raise AdapterNotFoundError(response.json().get("error", {}).get("message", name))
    if response.status_code != 200:
        return None
    found: dict[str, Any] = response.json()
    return found
