"""Registry rows <-> records: what the stores write for a record and read back.

Lists and dicts are stored as JSON text, statuses by value, booleans as 0/1 and times as
seconds, in SQLite and PostgreSQL alike (a row is anything indexed by column name: a
`sqlite3.Row` or psycopg's dict row); the SQL itself stays in `sqlite_store` and `pg_store`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from loramux.adapters.records import (
    AdapterRecord,
    AuditEntry,
    RequestRecord,
    UsageDelta,
    VersionRecord,
    VersionStatus,
)


class Row(Protocol):
    """A row by column name (`sqlite3.Row` and psycopg's dict rows both are)."""

    def __getitem__(self, key: str, /) -> Any: ...


Params = tuple[Any, ...]
"""The `?` parameters of one statement, in its column order."""


def adapter_params(a: AdapterRecord) -> Params:
    """The `adapters` columns of a record (name, department, ... updated_at, pinned); traffic
    goes apart."""
    return (
        a.name,
        a.department,
        a.description,
        json.dumps(list(a.utterances)),
        a.experiment_id,
        a.main_version,
        a.revision,
        a.created_at,
        a.updated_at,
        int(a.pinned),
    )


def version_params(v: VersionRecord) -> Params:
    """The `versions` columns of a record, in table order."""
    return (
        v.adapter,
        v.version,
        v.rank,
        json.dumps(list(v.target_modules)),
        v.base_model,
        v.path,
        v.size_bytes,
        json.dumps(dict(v.card), default=str),
        v.status.value,
        v.created_at,
        v.created_by,
    )


def audit_params(e: AuditEntry) -> Params:
    """The `audit` columns of an entry (at, actor, action, adapter, version, before, after)."""
    return (
        e.at,
        e.actor,
        e.action,
        e.adapter,
        e.version,
        json.dumps(e.before, default=str),
        json.dumps(e.after, default=str),
    )


def usage_params(u: UsageDelta) -> Params:
    """The `usage` columns of a delta, in table order."""
    return (
        u.adapter,
        u.version,
        u.experiment_id,
        u.requests,
        u.errors,
        u.prompt_tokens,
        u.completion_tokens,
    )


def adapter_record(row: Row, traffic: Mapping[str, int]) -> AdapterRecord:
    """An `adapters` row with the adapter's traffic weights (version -> weight)."""
    return AdapterRecord(
        name=row["name"],
        department=row["department"],
        description=row["description"],
        utterances=tuple(json.loads(row["utterances"])),
        traffic=dict(sorted(traffic.items())),
        experiment_id=row["experiment_id"],
        main_version=row["main_version"],
        revision=int(row["revision"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        pinned=bool(row["pinned"]),
    )


def version_record(row: Row) -> VersionRecord:
    """A `versions` row (a card that is not a JSON object reads as empty)."""
    card: Any = json.loads(row["card"])
    return VersionRecord(
        adapter=row["adapter"],
        version=row["version"],
        rank=int(row["rank"]),
        target_modules=tuple(json.loads(row["target_modules"])),
        base_model=row["base_model"],
        path=row["path"],
        size_bytes=int(row["size_bytes"]),
        card=card if isinstance(card, dict) else {},
        status=VersionStatus(row["status"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
    )


def audit_entry(r: Row) -> AuditEntry:
    """An `audit` row."""
    return AuditEntry(
        actor=r["actor"],
        action=r["action"],
        adapter=r["adapter"],
        version=r["version"],
        before=json.loads(r["before"]) if r["before"] else None,
        after=json.loads(r["after"]) if r["after"] else None,
        at=r["at"],
        id=r["id"],
    )


def request_record(r: Row) -> RequestRecord:
    """A `requests` row."""
    return RequestRecord(
        r["request_id"], r["adapter"], r["version"], r["experiment_id"], r["at"], r["key_id"]
    )


def usage_delta(adapter: str, experiment_id: str, r: Row) -> UsageDelta:
    """A `usage` row of one adapter's experiment."""
    return UsageDelta(
        adapter,
        r["version"],
        experiment_id,
        r["requests"],
        r["errors"],
        r["prompt_tokens"],
        r["completion_tokens"],
    )
