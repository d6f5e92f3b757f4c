"""`loramux keys ...`: per-department API keys for the inference endpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from loramux.cli.app import ConfigOpt, fail, keys_app, progress, setup_logging
from loramux.config import load_config
from loramux.errors import LoramuxError


def _keys_cmd(config: Path | None, action: Callable[[Any], Any]) -> None:
    """Run `action(keyring)` on the config's data dir (a running server sees the change on its
    next request) and print the result as JSON."""
    try:
        cfg = load_config(config)
        setup_logging("warning")
        from loramux.keys.keyring import Keyring

        keyring = Keyring.open(cfg.paths.data_dir, cfg.registry)
        try:
            result = action(keyring)
        finally:
            keyring.close()
    except LoramuxError as exc:
        fail(exc)
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
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            help="When it stops working: 30d, 12h, 90m, 2w, or an ISO date (2027-01-31, UTC).",
        ),
    ] = None,
    weight: Annotated[
        float,
        typer.Option(
            help="Share of generation slots under load (limits.fair_share); 2: twice a "
            "weight-1 key's."
        ),
    ] = 1.0,
    config: ConfigOpt = None,
) -> None:
    """Make an API key. It is printed once (`key`); loramux keeps only its sha256. Adapters the
    registry does not hold yet are allowed, with a warning."""
    from loramux.keys.records import KeySpec, parse_expiry, split_names

    def action(keyring: Any) -> Any:
        expires_at = None if expires_in is None else parse_expiry(expires_in, keyring.clock())
        spec = KeySpec(
            department, split_names(adapters or ()), base, rag, rpm, tpm, label, expires_at, weight
        )
        issued = keyring.create(spec, actor="cli")
        progress("the key is shown this once: store it now (loramux keeps only its sha256)")
        result = {**issued.record.public(), "key": issued.secret}
        for warning in _adapter_warnings(config, spec.adapters):
            progress(f"warning: {warning}")
            result.setdefault("warnings", []).append(warning)
        return result

    _keys_cmd(config, action)


def _adapter_warnings(config: Path | None, adapters: tuple[str, ...]) -> list[str]:
    """Warnings for adapters the config's registry does not hold."""
    if not adapters:
        return []
    from loramux.adapters.store import STORES
    from loramux.keys.records import unknown_adapter_warnings

    cfg = load_config(config)
    store = STORES[cfg.registry.store](cfg.paths.data_dir.expanduser(), cfg.registry)
    try:
        registered = store.load().adapters
    finally:
        store.close()
    return unknown_adapter_warnings(adapters, registered)


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (`loramux keys list`).")],
    config: ConfigOpt = None,
) -> None:
    """Give a key a new secret (printed once): same id, access, limits and expiry; the old
    secret is refused from the next request on."""

    def action(keyring: Any) -> Any:
        issued = keyring.rotate(key_id, actor="cli")
        progress("the new key is shown this once: store it now; the old one no longer works")
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
