"""Keeps a serving engine holding exactly the registry's servable adapter versions.

The registry tells an `EngineLoader` which versions should be loaded; the loader adds the
missing ones and removes the others. A version the engine fails to load at start is remembered
(with the reason) and left out of resolution instead of stopping the server; a version that
fails to load while it is being registered is refused. Without an engine (the CLI), every
operation is a no-op.

Before a version reaches the engine its files are hashed again: a version id is the content hash
of its config and weights, so files damaged or changed on disk since registration are refused
(never served) with a message that says to re-register them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from loramux.adapters.version import AdapterVersion, content_version
from loramux.errors import AdapterError, LoramuxError
from loramux.types import AdapterRef

logger = logging.getLogger(__name__)


class AdapterHost(Protocol):
    """What the registry needs of an engine (every `loramux.serve.engine.Engine` is one)."""

    async def add_adapter(self, adapter: AdapterRef) -> None: ...

    async def remove_adapter(self, key: str) -> None: ...


class EngineLoader:
    """Loads and unloads adapter versions on one engine (or none)."""

    def __init__(self, engine: AdapterHost | None) -> None:
        self.engine = engine
        self.loaded: set[str] = set()
        self.failed: dict[str, str] = {}
        """Version key -> why the engine could not load it (kept until restart)."""

    async def load(self, version: AdapterVersion) -> None:
        """Load one version; idempotent.

        Raises:
            AdapterError: the engine could not load it.
        """
        if self.engine is None or version.key in self.loaded:
            return
        await asyncio.to_thread(check_intact, version)
        try:
            await self.engine.add_adapter(version.ref())
        except LoramuxError:
            raise
        except Exception as exc:
            raise AdapterError(
                f"the engine could not load {version.key}: {type(exc).__name__}: {exc}"
            ) from exc
        self.loaded.add(version.key)

    async def unload(self, key: str) -> None:
        """Unload one version (waits for requests using it); failures are only logged."""
        if self.engine is None or key not in self.loaded:
            return
        self.loaded.discard(key)
        try:
            await self.engine.remove_adapter(key)
        except Exception:
            logger.exception("could not unload adapter %s", key)

    async def load_missing(self, wanted: Iterable[AdapterVersion]) -> None:
        """Load every wanted version not loaded yet; failures are recorded in `failed`."""
        for version in wanted:
            if version.key in self.loaded or version.key in self.failed:
                continue
            try:
                await self.load(version)
            except AdapterError as exc:
                self.failed[version.key] = exc.message
                logger.error("cannot serve %s: %s", version.key, exc.message)

    async def unload_except(self, keep: Iterable[str]) -> None:
        """Unload every loaded version whose key is not in `keep`."""
        for key in sorted(self.loaded - set(keep)):
            await self.unload(key)


def check_intact(version: AdapterVersion) -> None:
    """Check that a version's files still hash to its id (blocking: run in a thread).

    Raises:
        AdapterError: the files are missing, unreadable, or not the registered content.
    """
    try:
        found = content_version(version.path)
    except (OSError, AdapterError) as exc:
        why = exc.message if isinstance(exc, AdapterError) else f"{type(exc).__name__}: {exc}"
        raise AdapterError(
            f"the files of {version.key} are missing or unreadable ({why}); re-register it"
        ) from exc
    if found != version.version:
        raise AdapterError(
            f"the files of {version.key} changed on disk since it was registered (they now hash "
            f"to {found}); it is not served: register the adapter again"
        )
