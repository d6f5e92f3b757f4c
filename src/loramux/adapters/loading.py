"""What the registry asks of a serving engine: load a version now, unload retired ones, pin.

Registered is not loaded: the engine (`serve.paging.PagedEngine` over any engine) keeps a bounded,
least-recently-used set of versions and loads the others when a request needs one. The registry
only loads a version at once when it is registered (a trial load: a version the engine cannot
load is refused), unloads versions it no longer serves (retired), and tells the engine which
versions are pinned. Without an engine (the CLI), every operation is a no-op.

Before a version reaches the engine its files are hashed again (`check_intact`, the pager's
`verify`): a version id is the content hash of its config and weights, so files damaged or
changed on disk since registration are refused (never served) with a message that says to
re-register them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from loramux.adapters.version import AdapterVersion, content_version
from loramux.errors import AdapterError, LoramuxError
from loramux.types import AdapterRef

logger = logging.getLogger(__name__)


class AdapterHost(Protocol):
    """What the registry needs of an engine (every `loramux.serve.engine.Engine` is one)."""

    async def add_adapter(self, adapter: AdapterRef) -> None: ...

    async def remove_adapter(self, key: str) -> None: ...

    def loaded_adapters(self) -> list[str]: ...


@runtime_checkable
class PinningHost(Protocol):
    """An engine that can keep versions loaded for good (`serve.paging.PagedEngine`)."""

    async def set_pinned(self, adapters: Iterable[AdapterRef]) -> None: ...


class EngineLoader:
    """Loads, unloads and pins adapter versions on one engine (or none)."""

    def __init__(self, engine: AdapterHost | None) -> None:
        self.engine = engine

    async def load(self, version: AdapterVersion) -> None:
        """Load one version now (idempotent): the trial load of a registration.

        Raises:
            AdapterError: the engine could not load it.
        """
        if self.engine is None:
            return
        try:
            await self.engine.add_adapter(version.ref())
        except LoramuxError as exc:
            if isinstance(exc, AdapterError):
                raise
            raise AdapterError(f"the engine could not load {version.key}: {exc.message}") from exc
        except Exception as exc:
            raise AdapterError(
                f"the engine could not load {version.key}: {type(exc).__name__}: {exc}"
            ) from exc

    async def unload(self, key: str) -> None:
        """Unload one version (waits for requests using it); failures are only logged."""
        if self.engine is None or key not in self.engine.loaded_adapters():
            return
        try:
            await self.engine.remove_adapter(key)
        except Exception:
            logger.exception("could not unload adapter %s", key)

    async def unload_except(self, keep: Iterable[str]) -> None:
        """Unload every loaded version whose key is not in `keep` (no longer served)."""
        if self.engine is None:
            return
        for key in sorted(set(self.engine.loaded_adapters()) - set(keep)):
            await self.unload(key)

    async def pin(self, versions: Iterable[AdapterVersion]) -> None:
        """Keep exactly these versions loaded (an engine without pins ignores this).

        Raises:
            AdapterConflictError: the pins would take every slot of the engine.
        """
        if isinstance(self.engine, PinningHost):
            await self.engine.set_pinned([v.ref() for v in versions])


def check_intact(version: AdapterVersion) -> None:
    """Check that a version's files still hash to its id (blocking: run in a thread).

    Raises:
        AdapterError: the files are missing, unreadable, or not the registered content.
    """
    check_ref_intact(version.ref())


def check_ref_intact(ref: AdapterRef) -> None:
    """`check_intact` for an engine's `AdapterRef` (`name@version`, folder): the pager's check
    before every load (blocking: run in a thread).

    Raises:
        AdapterError: the files are missing, unreadable, or not the registered content.
    """
    expected = ref.key.partition("@")[2]
    try:
        found = content_version(ref.path)
    except (OSError, AdapterError) as exc:
        why = exc.message if isinstance(exc, AdapterError) else f"{type(exc).__name__}: {exc}"
        raise AdapterError(
            f"the files of {ref.key} are missing or unreadable ({why}); re-register it"
        ) from exc
    if found != expected:
        raise AdapterError(
            f"the files of {ref.key} changed on disk since it was registered (they now hash "
            f"to {found}); it is not served: register the adapter again"
        )
