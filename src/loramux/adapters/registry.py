"""The adapter registry: register versions while serving, split traffic, resolve requests.

`AdapterRegistry` ties a `RegistryStore` (`STORES[registry.store]`), the adapter files on disk
and, optionally, the serving engine together. Every change is validated first, written once
(files by atomic rename, rows in one transaction, an audit entry with it), then the in-memory
resolution table is rebuilt, so `resolve` never touches the disk. When an engine is attached,
new versions are loaded into it before they are committed (a version the engine cannot load is
never registered) and retired versions are unloaded. Changes made by another process on the
same data dir (the CLI) are picked up by `refresh` (`watch` runs it periodically).

This module holds the traffic operations (split, promote, retire) and experiments; the class
builds on `registrar.Registrar` (registration) and `view.RegistryView` (state, reads, refresh).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loramux.adapters.experiment import ExperimentReport, act_on
from loramux.adapters.filestore import AdapterFiles
from loramux.adapters.loading import AdapterHost
from loramux.adapters.records import (
    AdapterRecord,
    AuditEntry,
    Change,
    FeedbackRecord,
    Rating,
    VersionRecord,
    VersionStatus,
)
from loramux.adapters.registrar import Registrar
from loramux.adapters.store import STORES
from loramux.adapters.traffic import check_weights, new_experiment_id
from loramux.adapters.validation import BaseModelSpec
from loramux.config import RegistrySettings
from loramux.errors import AdapterConflictError, LoramuxError

logger = logging.getLogger(__name__)


class AdapterRegistry(Registrar):
    """Adapters, versions and traffic splits; see the module docstring."""

    @classmethod
    def open(
        cls,
        data_dir: Path,
        base: BaseModelSpec,
        settings: RegistrySettings | None = None,
        *,
        engine: AdapterHost | None = None,
        pins: Sequence[str] = (),
    ) -> AdapterRegistry:
        """A registry over the store `settings.store` names (`<data_dir>/registry.sqlite3`, or
        PostgreSQL at `settings.database_url`) and the adapter files in `<data_dir>/adapters/`;
        `pins` are the config's pinned adapters."""
        data_dir = data_dir.expanduser()
        settings = settings or RegistrySettings()
        store = STORES[settings.store](data_dir, settings)
        return cls(store, AdapterFiles(data_dir), base, settings, engine=engine, pins=pins)

    # -- traffic ---------------------------------------------------------------------------

    async def set_traffic(
        self,
        name: str,
        weights: Mapping[str, object],
        *,
        actor: str,
        reason: str = "",
        revision: int | None = None,
    ) -> AdapterRecord:
        """Split an adapter's traffic: version -> integer weight, summing to 100.

        The main version stays unless it loses all traffic (then the heaviest version is
        main). A changed split starts a new experiment (new id, users reshuffled once).

        Args:
            revision: the adapter's revision the caller decided from (`GET /v1/adapters/{name}`);
                None: the newest. The operations below take it alike.

        Raises:
            AdapterNotFoundError: unknown adapter or version.
            AdapterError: retired version, bad weight, or weights not summing to 100.
            AdapterConflictError: the adapter is no longer at `revision` (another gateway or
                admin changed it), or changed while this change was written.
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, versions = self._at_revision(name, revision)
            clean = check_weights(name, weights, {v.version: v.status for v in versions})
            main = adapter.main_version
            if main not in clean:
                main = max(clean, key=lambda v: (clean[v], v))
            return await self._change_traffic(
                adapter, versions, clean, main, actor=actor, action="set_traffic", reason=reason
            )

    async def promote(
        self, name: str, version: str, *, actor: str, reason: str = "", revision: int | None = None
    ) -> AdapterRecord:
        """Send all of an adapter's traffic to `version` and make it the main version; other
        versions stay registered (staged) for a quick rollback.

        Raises:
            AdapterNotFoundError: unknown adapter or version.
            AdapterError: the version is retired.
            AdapterConflictError: the adapter is no longer at `revision`.
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, versions = self._at_revision(name, revision)
            clean = check_weights(name, {version: 100}, {v.version: v.status for v in versions})
            return await self._change_traffic(
                adapter, versions, clean, version, actor=actor, action="promote", reason=reason
            )

    async def _change_traffic(
        self,
        adapter: AdapterRecord,
        versions: Sequence[VersionRecord],
        weights: dict[str, int],
        main: str,
        *,
        actor: str,
        action: str,
        reason: str,
    ) -> AdapterRecord:
        if weights == dict(adapter.traffic) and main == adapter.main_version:
            return adapter
        statuses = {
            v.version: want
            for v in versions
            if v.status is not VersionStatus.RETIRED
            and v.status
            is not (want := VersionStatus.ACTIVE if v.version in weights else VersionStatus.STAGED)
        }
        new = dataclasses.replace(
            adapter,
            traffic=weights,
            experiment_id=new_experiment_id(),
            main_version=main,
            revision=adapter.revision + 1,
            updated_at=self.clock(),
        )
        after: dict[str, Any] = new.public()
        if reason:
            after["reason"] = reason
        self.store.apply(
            Change(
                adapter=new,
                expected_revision=adapter.revision,
                statuses=statuses,
                audit=self._audit(actor, action, adapter.name, main, adapter.public(), after),
            )
        )
        await self._sync(self.store.load())
        logger.info("%s %s: traffic %s by %s", action, adapter.name, weights, actor)
        return self._state.adapters[adapter.name]

    async def retire(
        self, name: str, version: str, *, actor: str, revision: int | None = None
    ) -> VersionRecord:
        """Retire a version: unreachable, unloaded from the engine; its record and files stay.

        Raises:
            AdapterNotFoundError: unknown adapter or version.
            AdapterConflictError: the version still has traffic (shift it first), or the
                adapter is no longer at `revision`.
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, _ = self._at_revision(name, revision)
            record = self.version(name, version)
            if record.status is VersionStatus.RETIRED:
                return record
            weight = adapter.traffic.get(version, 0)
            if weight:
                others = [v for v in adapter.traffic if v != version]
                hint = (
                    f'e.g. {{"versions": {{"{others[0]}": 100}}}}'
                    if others
                    else "to another version"
                )
                raise AdapterConflictError(
                    f"version {version} of adapter {name!r} still gets {weight}% of its traffic; "
                    f"shift it first (PUT /v1/adapters/{name}/traffic, {hint}), then retire it",
                    param="version",
                )
            main = adapter.main_version
            if main == version:
                main = max(adapter.traffic, key=lambda v: adapter.traffic[v], default=None)
            new = dataclasses.replace(
                adapter, main_version=main, revision=adapter.revision + 1, updated_at=self.clock()
            )
            self.store.apply(
                Change(
                    adapter=new,
                    expected_revision=adapter.revision,
                    statuses={version: VersionStatus.RETIRED},
                    audit=self._audit(
                        actor,
                        "retire",
                        name,
                        version,
                        {"status": record.status.value},
                        {"status": VersionStatus.RETIRED.value},
                    ),
                )
            )
            await self._sync(self.store.load())
            logger.info("retired %s@%s by %s", name, version, actor)
            return self.version(name, version)

    async def set_pinned(self, name: str, pinned: bool, *, actor: str) -> AdapterRecord:
        """Pin an adapter (its versions with traffic are never evicted from the engine, and are
        loaded now) or unpin it.

        Raises:
            AdapterNotFoundError: no such adapter.
            AdapterConflictError: the pins would take every adapter slot of the engine;
                nothing is changed then.
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, _ = self.get(name)
            if adapter.pinned == pinned:
                return adapter
            new = dataclasses.replace(
                adapter, pinned=pinned, revision=adapter.revision + 1, updated_at=self.clock()
            )
            before = self._state
            self._state = dataclasses.replace(before, adapters={**before.adapters, name: new})
            try:
                await self.loader.pin(self.pinned_versions())  # refuses before committing
            finally:
                self._state = before
            self.store.apply(
                Change(
                    adapter=new,
                    expected_revision=adapter.revision,
                    audit=self._audit(
                        actor,
                        "pin" if pinned else "unpin",
                        name,
                        None,
                        {"pinned": adapter.pinned},
                        {"pinned": pinned},
                    ),
                )
            )
            await self._sync(self.store.load())
            logger.info("%s %s by %s", "pinned" if pinned else "unpinned", name, actor)
            return self._state.adapters[name]

    async def rollback(
        self, name: str, *, actor: str, reason: str = "", revision: int | None = None
    ) -> AdapterRecord:
        """Send all of an adapter's traffic back to its previous main version, as the audit log
        remembers it (the main version before the latest change of main version).

        Raises:
            AdapterNotFoundError: no such adapter.
            AdapterConflictError: the audit log knows no earlier main version, or it was retired
                (register its files again to restore it); or it is no longer at `revision`.
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, versions = self._at_revision(name, revision)
            statuses = {v.version: v.status for v in versions}
            previous = _previous_main(self.store.audit_log(name, limit=1000), adapter.main_version)
            if previous is None:
                raise AdapterConflictError(
                    f"adapter {name!r} has had one main version ({adapter.main_version}) as far as "
                    "its audit log goes; there is nothing to roll back to",
                    param="name",
                )
            if statuses.get(previous) in (None, VersionStatus.RETIRED):
                raise AdapterConflictError(
                    f"the previous main version of {name!r}, {previous}, is retired; register its "
                    "files again to restore it, or promote another version",
                    param="name",
                )
            clean = check_weights(name, {previous: 100}, statuses)
            why = reason or f"rollback from {adapter.main_version}"
            return await self._change_traffic(
                adapter, versions, clean, previous, actor=actor, action="rollback", reason=why
            )

    async def delete(
        self, name: str, *, actor: str, force: bool = False, revision: int | None = None
    ) -> AdapterRecord:
        """Delete an adapter: every version, its traffic, experiment records and files (the
        audit log keeps its history, with a `delete` entry). Its versions are unloaded.

        Args:
            force: delete even while it serves traffic (a request in the last
                `registry.delete_idle_s`, or pinned).

        Returns:
            The adapter as it was.

        Raises:
            AdapterNotFoundError: no such adapter.
            AdapterConflictError: it serves traffic and `force` is not set, or it is no longer
                at `revision`.
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, versions = self._at_revision(name, revision)
            if not force:
                self._check_idle(adapter)
            audit = self._audit(
                actor,
                "delete",
                name,
                None,
                {**adapter.public(), "versions": [v.version for v in versions]},
                {"deleted": True, "forced": force},
            )
            self.store.delete_adapter(name, adapter.revision, audit)
            self.experiments.forget(name)
            await self._sync(self.store.load())
            await asyncio.to_thread(self.files.discard, self.files.root / name)
            logger.info("deleted adapter %s (%d versions) by %s", name, len(versions), actor)
            return adapter

    def _at_revision(
        self, name: str, revision: int | None
    ) -> tuple[AdapterRecord, tuple[VersionRecord, ...]]:
        """`get(name)`, refused when the caller decided from another revision than the current.

        Raises:
            AdapterNotFoundError: no such adapter.
            AdapterConflictError: `revision` is not the adapter's revision.
        """
        adapter, versions = self.get(name)
        if revision is not None and revision != adapter.revision:
            raise AdapterConflictError(
                f"adapter {name!r} was changed by someone else meanwhile (revision "
                f"{adapter.revision}, the change was made from {revision}); look at it again "
                f"(GET /v1/adapters/{name}) and retry",
                param="revision",
            )
        return adapter, versions

    def _check_idle(self, adapter: AdapterRecord) -> None:
        """Raises: AdapterConflictError: the adapter serves traffic (recent requests, a pin)."""
        name = adapter.name
        hint = (
            f"move its clients to another model first, or force it (DELETE /v1/adapters/{name}"
            f"?force=true, `loramux adapters delete {name} --force`)"
        )
        if adapter.pinned or any(v.name == name for v in self.pinned_versions()):
            raise AdapterConflictError(f"adapter {name!r} is pinned; unpin it, or {hint}")
        last = self.experiments.last_request_at(name)
        idle = self.settings.delete_idle_s
        if last is not None and self.clock() - last < idle:
            ago = self.clock() - last
            raise AdapterConflictError(
                f"adapter {name!r} served a request {ago:.0f} s ago, less than "
                f"registry.delete_idle_s ({idle:g} s): it still serves traffic; {hint}",
                param="name",
            )

    # -- experiments -----------------------------------------------------------------------

    def experiment(self, name: str) -> ExperimentReport:
        """Results of the adapter's current experiment and a recommendation.

        Raises:
            AdapterNotFoundError: no such adapter.
        """
        adapter, _ = self.get(name)
        return self.experiments.report(adapter)

    async def record_feedback(
        self, request_id: str, rating: Rating, comment: str = "", *, key_id: str | None = None
    ) -> FeedbackRecord:
        """Store a user's rating of a request; then, when automatic promotion or rollback is
        on, act on the experiment's verdict (logged in the audit as `auto-experiment`).

        Args:
            request_id: the server's id of the rated request.
            rating: thumbs up or down.
            comment: free text.
            key_id: the rating API key: only the key that made the request may rate it; None
                for any request (the admin key, or auth off).

        Raises:
            UnknownRequestError: no adapter-served request with that id is remembered (or
                another key made it).
        """
        feedback = await asyncio.to_thread(
            self.experiments.add_feedback, request_id, rating, comment, key_id=key_id
        )
        settings = self.settings.experiment
        adapter = self._state.adapters.get(feedback.adapter)
        if (
            (settings.auto_promote or settings.auto_rollback)
            and adapter is not None
            and adapter.experiment_id == feedback.experiment_id
        ):
            try:
                report = self.experiments.report(adapter)
                await act_on(report, adapter, self, settings)
            except LoramuxError as exc:
                logger.warning("automatic action on %s failed: %s", adapter.name, exc.message)
        return feedback


def _previous_main(entries: Sequence[AuditEntry], current: str | None) -> str | None:
    """The newest main version in the audit log (newest first) other than `current`, since
    the adapter was last created (a `delete` entry ends its history)."""
    for entry in entries:
        if entry.action == "delete":
            return None
        main = _main_after(entry.after)
        if main is not None and main != current:
            return main
    return None


def _main_after(after: Any) -> str | None:
    """The main version an audit entry's `after` names (traffic changes and registrations)."""
    if not isinstance(after, dict):
        return None
    main = after.get("main_version")
    if main is None and isinstance(after.get("adapter"), dict):
        main = after["adapter"].get("main_version")
    return main if isinstance(main, str) else None
