"""Swapping in a newly activated router version while serving.

When `router.fitted` names a version store (`router/versions.py`), `RouterReloader.run` looks
at the store's active version every `router.reload_s` seconds. A new one is loaded in a worker
thread, given the routes the registry's adapters added to the old one, and then put in place
with one assignment (`Dispatcher.router`, `AppServices.router`): requests being decided finish
on the old router, the next ones use the new one, nothing waits. A version that fails to load
is logged and the old router keeps serving; `loramux router rollback` activates the previous
version the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from loramux.errors import LoramuxError

if TYPE_CHECKING:
    from loramux.gateway.services import AppServices
    from loramux.router.base import Router
    from loramux.router.versions import RouterVersions

logger = logging.getLogger(__name__)


class RouterReloader:
    """Watches a version store and swaps the served router (see the module docstring).

    Args:
        store: the version store.
        load: builds the router of the active version (runs in a worker thread).
        services: the running gateway's services (its dispatcher and router are swapped).
        interval_s: seconds between looks at the store.
    """

    def __init__(
        self,
        store: RouterVersions,
        load: Callable[[], Router],
        services: AppServices,
        interval_s: float,
    ) -> None:
        self.store = store
        self.load = load
        self.services = services
        self.interval_s = interval_s
        active = store.active()
        self.serving: str | None = active.id if active else None
        """The id of the version being served."""
        self.swaps = 0

    async def check(self) -> bool:
        """Swap in the active version if it is not the one served. True when swapped."""
        try:
            active = await asyncio.to_thread(self.store.active)
        except (LoramuxError, OSError, ValueError) as exc:
            logger.error("router: cannot read the version store %s: %s", self.store.folder, exc)
            return False
        if active is None or active.id == self.serving:
            return False
        try:
            router = await asyncio.to_thread(self.load)
        except (LoramuxError, OSError, ValueError) as exc:
            logger.error(
                "router: version %s cannot be loaded, still serving %s: %s",
                active.id,
                self.serving,
                exc,
            )
            return False
        from loramux.config import RouteSpec

        learned = [  # as at start-up: registered adapters' utterances become routes
            RouteSpec(name=a.name, utterances=list(a.utterances))
            for a in self.services.registry.adapters()
            if a.utterances and a.name not in router.routes
        ]
        if learned:
            await asyncio.to_thread(router.add_routes, learned)
        dispatcher = self.services.dispatcher
        dispatcher.router = router
        self.services.router = router
        self.swaps += 1
        logger.info("router: now serving version %s (was %s)", active.id, self.serving)
        self.serving = active.id
        return True

    async def run(self) -> None:
        """Look every `interval_s` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()
