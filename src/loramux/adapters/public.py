"""The public view of registry records: the JSON that the admin API, the CLI and the dashboard show.

One shape for all three, so `loramux adapters show` prints what `GET /v1/adapters/{name}` returns.
Server file paths are not part of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from loramux.adapters.records import AdapterRecord, AuditEntry, VersionRecord, training_summary


def adapter_json(adapter: AdapterRecord, versions: tuple[VersionRecord, ...]) -> dict[str, Any]:
    """An adapter with its versions, as `GET /v1/adapters/{name}` and `adapters show` give it."""
    return {
        "object": "adapter",
        "name": adapter.name,
        "department": adapter.department,
        "description": adapter.description,
        "utterances": list(adapter.utterances),
        "traffic": dict(adapter.traffic),
        "main_version": adapter.main_version,
        "experiment_id": adapter.experiment_id,
        "pinned": adapter.pinned,
        "revision": adapter.revision,
        "created_at": adapter.created_at,
        "updated_at": adapter.updated_at,
        "versions": [version_json(v, adapter) for v in versions],
    }


def version_json(record: VersionRecord, adapter: AdapterRecord) -> dict[str, Any]:
    """One version, with its weight in the adapter's traffic split and its training summary."""
    return {
        "object": "adapter.version",
        "id": record.version,
        "adapter": record.adapter,
        "status": record.status.value,
        "weight": adapter.traffic.get(record.version, 0),
        "rank": record.rank,
        "target_modules": list(record.target_modules),
        "base_model": record.base_model,
        "size_bytes": record.size_bytes,
        "created_at": record.created_at,
        "created_by": record.created_by,
        "training": training_summary(record.card),
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """One audit log entry."""
    return dataclasses.asdict(entry)
