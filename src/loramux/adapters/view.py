"""The registry's in-memory view: the state loaded from its store, kept in step with the engine.

`RegistryView` holds what `AdapterRegistry` serves from: the adapters and versions last read
from the `RegistryStore` and the `Resolver` built from them, so `resolve` never touches the
disk. Adopting a state (`_sync`) swaps the resolution table, unloads the versions it no longer
serves and pins the versions of pinned adapters in the engine; every other version is loaded by
the engine when a request needs it (registered is not loaded). Changes committed by another
process on the same data dir (the CLI) or another gateway on the same PostgreSQL database are
picked up by `refresh`; `watch` runs it periodically and whenever the store announces a change.
The changes themselves are made by the subclasses (`registrar`, `registry`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from loramux.adapters.experiment import ExperimentTracker
from loramux.adapters.filestore import AdapterFiles
from loramux.adapters.loading import AdapterHost, EngineLoader
from loramux.adapters.records import (
    AdapterRecord,
    AuditEntry,
    RegistryState,
    VersionRecord,
    VersionStatus,
)
from loramux.adapters.resolver import Resolver, Visible
from loramux.adapters.store import RegistryStore
from loramux.adapters.traffic import Assignment
from loramux.adapters.validation import BaseModelSpec
from loramux.adapters.version import AdapterVersion
from loramux.config import RegistrySettings
from loramux.errors import AdapterNotFoundError, LoramuxError

logger = logging.getLogger(__name__)


class RegistryView:
    """The registry's state and reads; see the module docstring."""

    def __init__(
        self,
        store: RegistryStore,
        files: AdapterFiles,
        base: BaseModelSpec,
        settings: RegistrySettings | None = None,
        *,
        engine: AdapterHost | None = None,
        pins: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build a registry (call `start` before use).

        Args:
            store: where state lives.
            files: where adapter files live.
            base: the base model adapters must fit.
            settings: limits and experiment settings.
            engine: loads and unloads versions; None for offline use (the CLI).
            pins: adapters (`name` or `name@version`) pinned by the config
                (`engine.pinned_adapters`), besides those pinned in the registry.
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
        self.config_pins = tuple(pins)
        self._state = RegistryState({}, {})
        self._resolver = Resolver(base.name, {})

    async def start(self) -> None:
        """Remove leftovers of interrupted registrations, load state, pin what is pinned.

        The state is read under the adapter files' lock, so a version another process (a
        gateway sharing the files) registers meanwhile is not taken for a leftover."""
        loaded: list[RegistryState] = []

        def registered() -> list[str]:
            loaded.append(self.store.load())
            return [v.path for vs in loaded[-1].versions.values() for v in vs]

        await asyncio.to_thread(self.files.cleanup, registered)
        state = loaded[-1] if loaded else self.store.load()
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
        """Run forever (cancel to stop): `refresh` and flush experiment records every
        `watch_interval_s`, and `refresh` at once when the store announces a change (another
        gateway's commit, over PostgreSQL's NOTIFY)."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        self.store.subscribe(wake)
        while True:
            try:
                await asyncio.wait_for(woken.wait(), self.settings.watch_interval_s)
            except TimeoutError:
                pass
            woken.clear()
            try:
                await self.refresh()
                if self.experiments.pending:
                    await asyncio.to_thread(self.experiments.flush)
            except LoramuxError as exc:  # e.g. the shared database is down: one line
                logger.warning("registry refresh failed (%s); retrying", exc.message)
            except Exception:
                logger.exception("registry refresh failed; retrying")

    # -- reads -----------------------------------------------------------------------------

    def adapters(self, visible: Visible | None = None) -> list[AdapterRecord]:
        """Every adapter by name, or those `visible` accepts (a department key's)."""
        return [
            self._state.adapters[n]
            for n in sorted(self._state.adapters)
            if visible is None or visible(n)
        ]

    def get(
        self, name: str, visible: Visible | None = None
    ) -> tuple[AdapterRecord, tuple[VersionRecord, ...]]:
        """An adapter and its versions, oldest first.

        Args:
            name: the adapter.
            visible: which adapters the caller may see (None: all); one it may not see is
                reported as missing, and the message names only those it may see.

        Raises:
            AdapterNotFoundError: no such adapter (or not one the caller may see).
        """
        adapter = self._state.adapters.get(name)
        if adapter is None or (visible is not None and not visible(name)):
            names = sorted(n for n in self._state.adapters if visible is None or visible(n))
            known = ", ".join(names) or "none yet"
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

    def served_names(self) -> frozenset[str]:
        """The names of the adapters in `served_versions`, cached until the registry changes."""
        return self._resolver.served_names

    def servable_versions(self) -> list[AdapterVersion]:
        """Every version a request may reach (not retired); the engine loads them on use."""
        return self._resolver.servable_versions()

    def assign(
        self,
        model: str,
        user: str | None = None,
        *,
        visible: Visible | None = None,
        base_visible: bool = True,
    ) -> Assignment | None:
        """Which adapter version serves a request for `model`; None for the base model.

        In memory only; see `Resolver.assign` (pins, sticky split by `user`; `visible` and
        `base_visible` choose which models a 404 names).

        Raises:
            ModelNotFoundError: unknown adapter or version, retired version, or no traffic.
            EngineUnavailableError: the split picked a version the engine could not load.
        """
        return self._resolver.assign(model, user, visible=visible, base_visible=base_visible)

    def resolve(self, model: str, user: str | None = None) -> AdapterVersion | None:
        """`assign(model, user).version`; None for the base model (raises as `assign`)."""
        assignment = self._resolver.assign(model, user)
        return assignment.version if assignment else None

    # -- following the store and the engine ------------------------------------------------

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
        self._state = state
        self._resolver = Resolver.build(state, self.base.name, self._as_version)
        await self.loader.unload_except(v.key for v in wanted)
        try:
            await self.loader.pin(self.pinned_versions())
        except LoramuxError as exc:
            logger.error("cannot pin the pinned adapters: %s", exc.message)

    def pinned_versions(self) -> list[AdapterVersion]:
        """The versions the engine must keep loaded: every version with traffic (or the main
        version) of a pinned adapter, and the config's `engine.pinned_adapters`."""
        state = self._state
        found: dict[str, AdapterVersion] = {}
        wanted = {(pin.partition("@")[0], pin.partition("@")[2]) for pin in self.config_pins}
        for name, adapter in state.adapters.items():
            versions = {
                r.version: r
                for r in state.versions.get(name, ())
                if r.status is not VersionStatus.RETIRED
            }
            chosen = set()
            if adapter.pinned or (name, "") in wanted:
                chosen |= set(adapter.traffic) or {adapter.main_version or ""}
            chosen |= {v for n, v in wanted if n == name and v}
            for version in sorted(chosen & set(versions)):
                found[f"{name}@{version}"] = self._as_version(versions[version], adapter)
        return list(found.values())
