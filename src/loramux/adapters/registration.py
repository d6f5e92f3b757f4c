"""The steps of registering an adapter version that need no registry state: checking names and
metadata, filling and checking a staging folder, and the `Change` a new version writes.

The registry orchestrates them (lock, publish, engine load, commit); see `registry.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loramux.adapters.records import AdapterRecord, AuditEntry, Change, VersionRecord, VersionStatus
from loramux.adapters.traffic import TOTAL_WEIGHT, new_experiment_id
from loramux.adapters.validation import BaseModelSpec, CheckedAdapter, check_adapter_folder
from loramux.config import AdapterLimits, check_adapter_name
from loramux.errors import AdapterError

MAX_UTTERANCES = 500


def check_name(name: str) -> str:
    """Raises: AdapterError: a name clients could not use as `model`."""
    try:
        return check_adapter_name(name)
    except ValueError as exc:
        raise AdapterError(str(exc), param="name") from exc


def adapter_meta(
    department: str | None, description: str | None, utterances: Sequence[str] | None
) -> dict[str, Any]:
    """Adapter metadata to set (a None argument keeps what is stored), cleaned and checked.

    Raises:
        AdapterError: empty or too many utterances.
    """
    meta: dict[str, Any] = {}
    if department is not None:
        meta["department"] = department.strip()
    if description is not None:
        meta["description"] = description.strip()
    if utterances is not None:
        cleaned = tuple(u.strip() for u in utterances)
        if any(not u for u in cleaned) or len(cleaned) > MAX_UTTERANCES:
            raise AdapterError(
                f"utterances must be 0-{MAX_UTTERANCES} non-empty strings", param="utterances"
            )
        meta["utterances"] = cleaned
    return meta


def check_import_root(source: Path, roots: Sequence[Path]) -> None:
    """Raises: AdapterError: `source` is outside every root (when there are roots)."""
    resolved = source.expanduser().resolve()
    if roots and not any(resolved.is_relative_to(r.expanduser().resolve()) for r in roots):
        raise AdapterError(
            f"{source} is outside the folders adapters may be registered from "
            "(registry.import_roots); upload an archive instead",
            param="path",
        )


def stage(
    staging: Path,
    fill: Callable[[Path], Path],
    *,
    name: str,
    base: BaseModelSpec,
    limits: AdapterLimits,
    description: str,
) -> tuple[CheckedAdapter, Path]:
    """Fill a staging folder and check what landed there (blocking: run in a thread).

    Args:
        staging: an empty staging folder.
        fill: copies or extracts the adapter into it; returns the PEFT folder inside.

    Returns:
        The checked adapter and its folder (inside `staging`).

    Raises:
        AdapterError: whatever `fill` or the checks refuse.
    """
    root = fill(staging)
    checked = check_adapter_folder(
        root, name=name, base=base, limits=limits, description=description
    )
    return checked, root


def new_version_change(
    adapter: AdapterRecord | None,
    checked: CheckedAdapter,
    *,
    path: str,
    actor: str,
    meta: dict[str, Any],
    now: float,
) -> Change:
    """What registering a new version writes. An adapter with no traffic (a new one) gives the
    new version all of it and makes it the main version; otherwise the version is staged."""
    v = checked.version
    record = VersionRecord(
        adapter=v.name,
        version=v.version,
        rank=v.rank,
        target_modules=v.target_modules,
        base_model=v.base_model,
        path=path,
        size_bytes=checked.size_bytes,
        card=checked.card,
        status=VersionStatus.STAGED,
        created_at=now,
        created_by=actor,
    )
    current = adapter or AdapterRecord(name=v.name, created_at=now)
    new = dataclasses.replace(current, **meta, revision=current.revision + 1, updated_at=now)
    if not new.traffic:
        record = dataclasses.replace(record, status=VersionStatus.ACTIVE)
        new = dataclasses.replace(
            new,
            traffic={v.version: TOTAL_WEIGHT},
            experiment_id=new_experiment_id(),
            main_version=v.version,
        )
    after = {
        "version": record.version,
        "status": record.status.value,
        "rank": record.rank,
        "target_modules": list(record.target_modules),
        "size_bytes": record.size_bytes,
        "adapter": new.public(),
    }
    return Change(
        adapter=new,
        expected_revision=adapter.revision if adapter else None,
        new_version=record,
        audit=AuditEntry(
            actor, "register", v.name, v.version, adapter.public() if adapter else None, after, now
        ),
    )
