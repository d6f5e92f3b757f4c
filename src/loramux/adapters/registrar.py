"""Registering adapter versions while serving: the orchestration around `registration`'s steps.

`Registrar` takes the registry's lock and the adapter files' lock, stages and checks the files,
publishes them by atomic rename, loads the version into the engine, and only then commits its
rows (a version the engine cannot load is never registered); any failure undoes what was done.
Registering the same files again restores a retired version, updates metadata, or repairs a
stored copy found damaged at load.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.adapters.archive import extract_archive
from loramux.adapters.loading import check_intact
from loramux.adapters.records import AdapterRecord, Change, VersionRecord, VersionStatus
from loramux.adapters.registration import (
    adapter_meta,
    check_import_root,
    check_name,
    new_version_change,
    stage,
)
from loramux.adapters.source import check_source
from loramux.adapters.view import RegistryView
from loramux.errors import AdapterError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """The outcome of `register`."""

    adapter: AdapterRecord
    version: VersionRecord
    created: bool
    """False when these exact files were already registered (nothing was written)."""


class Registrar(RegistryView):
    """The registry's registration operations; see the module docstring."""

    async def register(
        self,
        source: Path,
        *,
        name: str,
        actor: str,
        department: str | None = None,
        description: str | None = None,
        utterances: Sequence[str] | None = None,
        check_root: bool = True,
    ) -> Registration:
        """Register a PEFT folder on this machine as a version of adapter `name`.

        The first version of an adapter gets all its traffic; later versions are staged
        (reachable pinned, `name@version`) until `set_traffic` or `promote`. Registering the
        same files again changes nothing (metadata given is updated).

        Args:
            source: the PEFT folder (its top-level files are copied; it is not modified).
            name: adapter name (what clients ask for as `model`).
            actor: who asks (an admin key's label), for the audit log.
            department, description, utterances: adapter metadata; None keeps what is stored.
            check_root: refuse folders outside `settings.import_roots` (False for the CLI).

        Raises:
            AdapterError: a relative path, not a PEFT LoRA folder (the message says what it is),
                unsafe, does not fit the base model, or the engine cannot load it; nothing is
                changed. Messages name `source`, never the staging copy.
        """
        name = check_name(name)
        check_source(source, name=name)
        if check_root:
            check_import_root(source, self.settings.import_roots)
        limits = self.settings.limits
        return await self._register(
            lambda staging: self.files.copy_folder(source, staging, limits, name=name),
            name=name,
            actor=actor,
            meta=adapter_meta(department, description, utterances),
            shown_as=source,
        )

    async def register_archive(
        self,
        archive: Path,
        *,
        name: str,
        actor: str,
        department: str | None = None,
        description: str | None = None,
        utterances: Sequence[str] | None = None,
    ) -> Registration:
        """Register a zip or tar(.gz) of a PEFT folder (an upload); see `register`.

        Raises:
            ArchiveError: unsafe or unreadable archive; AdapterError as `register`.
        """
        name = check_name(name)
        limits = self.settings.limits
        return await self._register(
            lambda staging: extract_archive(archive, staging, limits, name=name),
            name=name,
            actor=actor,
            meta=adapter_meta(department, description, utterances),
        )

    async def _register(
        self,
        fill: Callable[[Path], Path],
        *,
        name: str,
        actor: str,
        meta: dict[str, Any],
        shown_as: Path | None = None,
    ) -> Registration:
        async with self._lock:
            handle = await asyncio.to_thread(self.files.lock)
            try:
                # Read the state only once the file lock is held: another process sharing the
                # adapter files (the CLI, a gateway of the fleet) may have registered meanwhile,
                # and a stale view would publish over, then discard, its version's folder.
                await self._sync_if_changed()
                return await self._register_locked(
                    fill, name=name, actor=actor, meta=meta, shown_as=shown_as
                )
            finally:
                self.files.unlock(handle)

    async def _register_locked(
        self,
        fill: Callable[[Path], Path],
        *,
        name: str,
        actor: str,
        meta: dict[str, Any],
        shown_as: Path | None,
    ) -> Registration:
        adapter = self._state.adapters.get(name)
        staging = self.files.new_staging()
        final: Path | None = None
        try:
            try:
                checked, root = await asyncio.to_thread(
                    stage,
                    staging,
                    fill,
                    name=name,
                    base=self.base,
                    limits=self.settings.limits,
                    description=meta.get("description", adapter.description if adapter else ""),
                )
            except AdapterError as exc:
                if shown_as is None or str(staging) not in exc.message:
                    raise
                message = exc.message.replace(str(staging), str(shown_as))
                raise type(exc)(message, param=exc.param or "path") from exc
            version_id = checked.version.version
            for existing in self._state.versions.get(name, ()):
                if existing.version == version_id:
                    await self._repair(existing, root)
                    return await self._reregister(existing, actor=actor, meta=meta)
            final = self.files.version_dir(name, version_id)
            await asyncio.to_thread(self.files.publish, root, final)
            version = dataclasses.replace(checked.version, path=final)
            await self.loader.load(version)
            change = new_version_change(
                adapter,
                checked,
                path=self.files.relative(final),
                actor=actor,
                meta=meta,
                now=self.clock(),
            )
            try:
                self.store.apply(change)
            except BaseException:
                await self.loader.unload(version.key)
                raise
        except BaseException:
            if final is not None:  # not registered: the database has no row for it
                self.files.discard(final)
            raise
        finally:
            self.files.discard(staging)
        await self._sync(self.store.load())
        record = self.version(name, version_id)
        logger.info("registered %s (%s) by %s", version.key, record.status, actor)
        return Registration(self._state.adapters[name], record, created=True)

    async def _repair(self, existing: VersionRecord, fresh: Path) -> None:
        """Put good files back under a version whose stored copy no longer matches its id
        (damaged on disk): the same content registered again repairs it."""
        adapter = self._state.adapters[existing.adapter]
        version = self._as_version(existing, adapter)
        try:
            await asyncio.to_thread(check_intact, version)
        except AdapterError:
            pass
        else:
            return
        await asyncio.to_thread(self.files.publish, fresh, version.path)
        if existing.status is not VersionStatus.RETIRED:
            await self.loader.load(version)  # clears the engine's memory of the failure
        await self._sync(self.store.load())
        logger.warning("restored the damaged files of %s from a new registration", version.key)

    async def _reregister(
        self, existing: VersionRecord, *, actor: str, meta: dict[str, Any]
    ) -> Registration:
        """The same files again: restore a retired version, update metadata, or do nothing."""
        adapter, _ = self.get(existing.adapter)
        statuses: dict[str, VersionStatus] = {}
        if existing.status is VersionStatus.RETIRED:
            statuses[existing.version] = VersionStatus.STAGED
            await self.loader.load(self._as_version(existing, adapter))
        changed_meta = {k: v for k, v in meta.items() if getattr(adapter, k) != v}
        if not statuses and not changed_meta:
            return Registration(adapter, existing, created=False)
        now = self.clock()
        new = dataclasses.replace(
            adapter, **changed_meta, revision=adapter.revision + 1, updated_at=now
        )
        action = "restore" if statuses else "update"
        self.store.apply(
            Change(
                adapter=new,
                expected_revision=adapter.revision,
                statuses=statuses,
                audit=self._audit(
                    actor, action, adapter.name, existing.version, adapter.public(), new.public()
                ),
            )
        )
        await self._sync(self.store.load())
        return Registration(
            self._state.adapters[adapter.name],
            self.version(adapter.name, existing.version),
            created=False,
        )
