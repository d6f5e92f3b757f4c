"""The adapter registry: register versions while serving, split traffic, resolve requests.

`AdapterRegistry` ties a `RegistryStore` (SQLite), the adapter files on disk and, optionally,
the serving engine together. Every change is validated first, written once (files by atomic
rename, rows in one transaction, an audit entry with it), then the in-memory resolution table is
rebuilt, so `resolve` never touches the disk. When an engine is attached, new versions are
loaded into it before they are committed (a version the engine cannot load is never
registered) and retired versions are unloaded. Changes made by another process on the same
data dir (the CLI) are picked up by `refresh` (`watch` runs it periodically).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loramux.adapters.archive import extract_archive
from loramux.adapters.experiment import (
    ExperimentReport,
    ExperimentTracker,
    act_on,
)
from loramux.adapters.filestore import AdapterFiles
from loramux.adapters.loading import AdapterHost, EngineLoader
from loramux.adapters.records import (
    AdapterRecord,
    AuditEntry,
    Change,
    FeedbackRecord,
    Rating,
    RegistryState,
    VersionRecord,
    VersionStatus,
)
from loramux.adapters.registration import (
    adapter_meta,
    check_import_root,
    check_name,
    new_version_change,
    stage,
)
from loramux.adapters.resolver import Resolver
from loramux.adapters.store import STORES, RegistryStore
from loramux.adapters.traffic import (
    Assignment,
    check_weights,
    new_experiment_id,
)
from loramux.adapters.validation import BaseModelSpec
from loramux.adapters.version import AdapterVersion
from loramux.config import RegistrySettings
from loramux.errors import (
    AdapterConflictError,
    AdapterError,
    AdapterNotFoundError,
    LoramuxError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """The outcome of `register`."""

    adapter: AdapterRecord
    version: VersionRecord
    created: bool
    """False when these exact files were already registered (nothing was written)."""


class AdapterRegistry:
    """Adapters, versions and traffic splits; see the module docstring."""

    def __init__(
        self,
        store: RegistryStore,
        files: AdapterFiles,
        base: BaseModelSpec,
        settings: RegistrySettings | None = None,
        *,
        engine: AdapterHost | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build a registry (call `start` before use).

        Args:
            store: where state lives.
            files: where adapter files live.
            base: the base model adapters must fit.
            settings: limits and experiment settings.
            engine: loads and unloads versions; None for offline use (the CLI).
            clock: wall clock (tests pass a fake).
        """
        self.store = store
        self.files = files
        self.base = base
        self.settings = settings or RegistrySettings()
        self.clock = clock
        self.experiments = ExperimentTracker(store, self.settings.experiment, clock)
        self._lock = asyncio.Lock()
        self.loader = EngineLoader(engine)
        self._state = RegistryState({}, {})
        self._resolver = Resolver(base.name, {})

    @classmethod
    def open(
        cls,
        data_dir: Path,
        base: BaseModelSpec,
        settings: RegistrySettings | None = None,
        *,
        engine: AdapterHost | None = None,
    ) -> AdapterRegistry:
        """A registry over the store `settings.store` names (`<data_dir>/registry.sqlite3`) and
        the adapter files in `<data_dir>/adapters/`."""
        data_dir = data_dir.expanduser()
        settings = settings or RegistrySettings()
        store = STORES[settings.store](data_dir)
        return cls(store, AdapterFiles(data_dir), base, settings, engine=engine)

    async def start(self) -> None:
        """Remove leftovers of interrupted registrations, load state, load versions into the
        engine (a version that fails to load is logged and left out of resolution)."""
        state = self.store.load()
        registered = [v.path for vs in state.versions.values() for v in vs]
        await asyncio.to_thread(self.files.cleanup, registered)
        async with self._lock:
            await self._sync(state)

    async def close(self) -> None:
        """Write buffered experiment records and close the store."""
        self.experiments.flush()
        self.store.close()

    async def refresh(self) -> bool:
        """Pick up changes committed by another process; True when there were some."""
        if not self.store.changed():
            return False
        async with self._lock:
            await self._sync(self.store.load())
        return True

    async def watch(self) -> None:
        """Run forever (cancel to stop): `refresh` and flush experiment records periodically."""
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            try:
                await self.refresh()
                if self.experiments.pending:
                    await asyncio.to_thread(self.experiments.flush)
            except Exception:
                logger.exception("registry refresh failed; retrying")

    # -- reads -----------------------------------------------------------------------------

    def adapters(self) -> list[AdapterRecord]:
        return [self._state.adapters[n] for n in sorted(self._state.adapters)]

    def get(self, name: str) -> tuple[AdapterRecord, tuple[VersionRecord, ...]]:
        """An adapter and its versions, oldest first.

        Raises:
            AdapterNotFoundError: no such adapter.
        """
        adapter = self._state.adapters.get(name)
        if adapter is None:
            known = ", ".join(sorted(self._state.adapters)) or "none yet"
            raise AdapterNotFoundError(
                f"no adapter named {name!r}; registered adapters: {known}", param="name"
            )
        return adapter, self._state.versions.get(name, ())

    def version(self, name: str, version: str) -> VersionRecord:
        """Raises: AdapterNotFoundError: no such adapter or version."""
        _, versions = self.get(name)
        for record in versions:
            if record.version == version:
                return record
        known = ", ".join(v.version for v in versions) or "none"
        raise AdapterNotFoundError(
            f"adapter {name!r} has no version {version!r}; its versions: {known}",
            param="version",
        )

    def audit_log(self, name: str | None = None, limit: int = 100) -> list[AuditEntry]:
        return self.store.audit_log(name, limit)

    def served_versions(self) -> list[AdapterVersion]:
        """The main version of every adapter that gets traffic (what `/v1/models` lists)."""
        return self._resolver.served_versions()

    def assign(self, model: str, user: str | None = None) -> Assignment | None:
        """Which adapter version serves a request for `model`; None for the base model.

        In memory only; see `Resolver.assign` (pins, sticky split by `user`).

        Raises:
            ModelNotFoundError: unknown adapter or version, retired version, or no traffic.
            EngineUnavailableError: the split picked a version the engine could not load.
        """
        return self._resolver.assign(model, user)

    def resolve(self, model: str, user: str | None = None) -> AdapterVersion | None:
        """`assign(model, user).version`; None for the base model (raises as `assign`)."""
        assignment = self._resolver.assign(model, user)
        return assignment.version if assignment else None

    # -- registration ----------------------------------------------------------------------

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
            AdapterError: the folder is unsafe, does not fit the base model, or the engine
                cannot load it; nothing is changed.
        """
        name = check_name(name)
        if check_root:
            check_import_root(source, self.settings.import_roots)
        limits = self.settings.limits
        return await self._register(
            lambda staging: self.files.copy_folder(source, staging, limits, name=name),
            name=name,
            actor=actor,
            meta=adapter_meta(department, description, utterances),
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
    ) -> Registration:
        async with self._lock:
            await self._sync_if_changed()
            handle = await asyncio.to_thread(self.files.lock)
            try:
                return await self._register_locked(fill, name=name, actor=actor, meta=meta)
            finally:
                self.files.unlock(handle)

    async def _register_locked(
        self, fill: Callable[[Path], Path], *, name: str, actor: str, meta: dict[str, Any]
    ) -> Registration:
        adapter = self._state.adapters.get(name)
        staging = self.files.new_staging()
        final: Path | None = None
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
        """Put good files back under a version whose stored copy failed its check at load
        (damaged on disk): the same content registered again repairs it."""
        adapter = self._state.adapters[existing.adapter]
        version = self._as_version(existing, adapter)
        if version.key not in self.loader.failed:
            return
        await asyncio.to_thread(self.files.publish, fresh, version.path)
        why = self.loader.failed.pop(version.key)
        if existing.status is not VersionStatus.RETIRED:
            try:
                await self.loader.load(version)
            except AdapterError:
                self.loader.failed[version.key] = why
                raise
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

    # -- traffic ---------------------------------------------------------------------------

    async def set_traffic(
        self, name: str, weights: Mapping[str, object], *, actor: str, reason: str = ""
    ) -> AdapterRecord:
        """Split an adapter's traffic: version -> integer weight, summing to 100.

        The main version stays unless it loses all traffic (then the heaviest version is
        main). A changed split starts a new experiment (new id, users reshuffled once).

        Raises:
            AdapterNotFoundError: unknown adapter or version.
            AdapterError: retired version, bad weight, or weights not summing to 100.
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, versions = self.get(name)
            clean = check_weights(name, weights, {v.version: v.status for v in versions})
            main = adapter.main_version
            if main not in clean:
                main = max(clean, key=lambda v: (clean[v], v))
            return await self._change_traffic(
                adapter, versions, clean, main, actor=actor, action="set_traffic", reason=reason
            )

    async def promote(
        self, name: str, version: str, *, actor: str, reason: str = ""
    ) -> AdapterRecord:
        """Send all of an adapter's traffic to `version` and make it the main version; other
        versions stay registered (staged) for a quick rollback.

        Raises:
            AdapterNotFoundError: unknown adapter or version.
            AdapterError: the version is retired.
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, versions = self.get(name)
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

    async def retire(self, name: str, version: str, *, actor: str) -> VersionRecord:
        """Retire a version: unreachable, unloaded from the engine; its record and files stay.

        Raises:
            AdapterNotFoundError: unknown adapter or version.
            AdapterConflictError: the version still has traffic (shift it first).
        """
        async with self._lock:
            await self._sync_if_changed()
            adapter, _ = self.get(name)
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

    # -- experiments -----------------------------------------------------------------------

    def experiment(self, name: str) -> ExperimentReport:
        """Results of the adapter's current experiment and a recommendation.

        Raises:
            AdapterNotFoundError: no such adapter.
        """
        adapter, _ = self.get(name)
        return self.experiments.report(adapter)

    async def record_feedback(
        self, request_id: str, rating: Rating, comment: str = ""
    ) -> FeedbackRecord:
        """Store a user's rating of a request; then, when automatic promotion or rollback is
        on, act on the experiment's verdict (logged in the audit as `auto-experiment`).

        Raises:
            UnknownRequestError: no adapter-served request with that id is remembered.
        """
        feedback = await asyncio.to_thread(
            self.experiments.add_feedback, request_id, rating, comment
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

    # -- internals -------------------------------------------------------------------------

    def _audit(
        self, actor: str, action: str, adapter: str, version: str | None, before: Any, after: Any
    ) -> AuditEntry:
        return AuditEntry(actor, action, adapter, version, before, after, self.clock())

    def _as_version(self, record: VersionRecord, adapter: AdapterRecord) -> AdapterVersion:
        return AdapterVersion(
            name=record.adapter,
            version=record.version,
            path=self.files.absolute(record.path),
            rank=record.rank,
            target_modules=record.target_modules,
            base_model=record.base_model,
            description=adapter.description,
        )

    async def _sync_if_changed(self) -> None:
        if self.store.changed():
            await self._sync(self.store.load())

    async def _sync(self, state: RegistryState) -> None:
        """Adopt `state`: load its new versions into the engine, swap the resolution table,
        then unload versions it no longer serves (call with `_lock` held, or at start)."""
        wanted = [
            self._as_version(record, state.adapters[name])
            for name, versions in state.versions.items()
            for record in versions
            if record.status is not VersionStatus.RETIRED
        ]
        await self.loader.load_missing(wanted)
        self._state = state
        self._resolver = Resolver.build(state, self.base.name, self._as_version, self.loader.failed)
        await self.loader.unload_except(v.key for v in wanted)
