"""The engine supervisor: notices a failed or hung engine and rebuilds it, without an operator.

`SupervisedEngine` is itself an `Engine` that wraps the real one. A watchdog task checks it every
`probe_interval_s`, and at once after a stream failed with an unexpected error:

- failed: the engine says it is no longer ready (the hf worker thread died, vLLM's engine core
  errored, a fake was told to crash);
- hung: requests have been waiting on it and it produced no token for `hang_timeout_s`.

Then the supervisor marks itself not ready (`/ready` answers 503, new requests get 503
`engine_unavailable` with `Retry-After`), fails every generation in flight on the engine with
the same error (an SSE error event for streams; `serve.interrupt` breaks their waits), stops the
engine (abandoning it after `stop_timeout_s`), builds a new one with the same factory, starts it,
loads the adapters the old one held, and serves again. A failed attempt is retried with
exponential backoff.

Engines that heal themselves (`remote`: its replicas come and go) are only reported not ready,
never rebuilt, when they lose readiness; a hang still rebuilds them.

A hung in-process engine cannot be killed: its worker thread is abandoned (it is a daemon
thread) and the new engine is built beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from loramux.errors import EngineUnavailableError, LoramuxError
from loramux.serve.interrupt import Interrupted, Interruptible
from loramux.serve.types import GenerationChunk, GenerationRequest
from loramux.types import AdapterRef

if TYPE_CHECKING:
    from loramux.config import LoramuxConfig, SupervisorSettings
    from loramux.serve.engine import Engine

logger = logging.getLogger(__name__)

SELF_HEALING = frozenset({"remote"})
"""Engines whose readiness comes and goes on its own; losing it does not rebuild them."""


class EngineState(StrEnum):
    STOPPED = "stopped"
    READY = "ready"
    RECOVERING = "recovering"


@dataclass
class _Stream:
    """One open stream of the engine."""

    guard: Interruptible = field(default_factory=Interruptible)
    since: float | None = None
    """When its current wait for a chunk began; None while it is not waiting on the engine."""


class SupervisedEngine:
    """An `Engine` that rebuilds the engine it wraps when that one fails or hangs."""

    def __init__(
        self,
        factory: Callable[[], Engine],
        settings: SupervisorSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the first engine (not started yet).

        Args:
            factory: makes a new engine, not started; called again for every rebuild (it may
                return the same instance, which is then stopped and started again).
            settings: probe interval, hang timeout, backoff.
            clock: monotonic seconds (tests pass a fake).
        """
        self._factory = factory
        self.settings = settings
        self._clock = clock
        self._engine = factory()
        self._state = EngineState.STOPPED
        self._adapters: dict[str, AdapterRef] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_stream = 0
        self._last_progress = clock()
        self._wake = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        self.restarts = 0
        """Rebuilds since start."""
        self.last_failure: str | None = None
        """Why the engine was last rebuilt."""

    # -- Engine protocol ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._engine.name

    @property
    def ready(self) -> bool:
        return self._state is EngineState.READY and self._engine.ready

    @property
    def context_length(self) -> int:
        return self._engine.context_length

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def engine(self) -> Engine:
        """The engine serving now (it changes on every rebuild)."""
        return self._engine

    async def start(self) -> None:
        if self._state is not EngineState.STOPPED:
            return
        await self._engine.start()
        self._state = EngineState.READY
        self._last_progress = self._clock()
        self._watchdog = asyncio.create_task(self._watch(), name="engine-watchdog")

    async def stop(self) -> None:
        self._state = EngineState.STOPPED
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        self._abort_streams("the engine is stopping")
        await self._stop_quietly(self._engine)

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._stream(request)

    async def add_adapter(self, adapter: AdapterRef) -> None:
        """Load an adapter and remember it for rebuilds.

        Raises:
            EngineUnavailableError: the engine is being rebuilt; retry.
        """
        if not self.ready:
            raise self._unavailable()
        known = adapter.key in self._adapters
        self._adapters[adapter.key] = adapter  # first, so a rebuild meanwhile loads it too
        try:
            await self._engine.add_adapter(adapter)
        except BaseException:
            if not known:
                self._adapters.pop(adapter.key, None)
            raise

    async def remove_adapter(self, key: str) -> None:
        self._adapters.pop(key, None)
        if self._state is EngineState.READY:
            await self._engine.remove_adapter(key)

    def loaded_adapters(self) -> list[str]:
        if self._state is EngineState.READY:
            return self._engine.loaded_adapters()
        return sorted(self._adapters)

    def status(self) -> dict[str, Any]:
        """What `/ready` shows about supervision."""
        return {
            "state": self._state.value,
            "restarts": self.restarts,
            "last_failure": self.last_failure,
        }

    # -- streams -----------------------------------------------------------------------------

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if not self.ready:
            raise self._unavailable()
        chunks = self._engine.stream(request)
        key = self._next_stream
        self._next_stream += 1
        stream = self._streams[key] = _Stream()
        try:
            while True:
                stream.since = self._clock()
                try:
                    with stream.guard:
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except Interrupted as exc:
                    raise self._unavailable(exc.reason) from None
                except LoramuxError as exc:
                    if exc.status >= 500:
                        self._wake.set()
                    raise
                except Exception:
                    self._wake.set()  # unexpected: check the engine now
                    raise
                finally:
                    stream.since = None
                self._last_progress = self._clock()
                yield chunk
                if chunk.finish_reason is not None:
                    return
        finally:
            self._streams.pop(key, None)
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                try:
                    async with asyncio.timeout(self.settings.stop_timeout_s):
                        await aclose()
                except (TimeoutError, RuntimeError):  # a hung or already-running generator
                    logger.warning("could not close a stream of the failed engine")

    def _abort_streams(self, why: str) -> None:
        """Fail every open stream of the engine now, waiting or not (they get a 503)."""
        for stream in list(self._streams.values()):
            stream.guard.interrupt(why)

    def _unavailable(self, why: str | None = None) -> EngineUnavailableError:
        if why is None:
            why = (
                f"the {self.name} engine is restarting after a failure"
                if self._state is EngineState.RECOVERING
                else f"the {self.name} engine is not running"
            )
        return EngineUnavailableError(
            f"{why}; retry in {self.settings.retry_after_s} s",
            retry_after_s=self.settings.retry_after_s,
        )

    # -- watchdog ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.probe_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._state is not EngineState.READY:
                continue
            problem = self.diagnose()
            if problem is not None:
                await self._recover(problem)

    def diagnose(self) -> str | None:
        """Why the engine needs a rebuild, or None when it is healthy."""
        if not self._engine.ready and self._engine.name not in SELF_HEALING:
            return "the engine stopped serving (not ready)"
        waits = [s.since for s in self._streams.values() if s.since is not None]
        if not waits:
            return None
        quiet = self._clock() - max(self._last_progress, min(waits))
        if quiet > self.settings.hang_timeout_s:
            return (
                f"the engine produced no token for {quiet:.0f} s while "
                f"{len(waits)} requests waited (hung)"
            )
        return None

    async def _recover(self, reason: str) -> None:
        """Fail waiting requests, stop the engine, build and start a new one, reload adapters."""
        self._state = EngineState.RECOVERING
        self.restarts += 1
        self.last_failure = reason
        logger.error("engine %s: %s; restarting it", self.name, reason)
        self._abort_streams("the engine failed while generating this answer and is being restarted")
        await self._stop_quietly(self._engine)
        delay = self.settings.backoff_s
        attempt = 1
        while True:
            started = self._clock()
            engine: Engine | None = None
            try:
                engine = self._factory()
                async with asyncio.timeout(self.settings.start_timeout_s):
                    await engine.start()
                await self._reload_adapters(engine)
            except Exception as exc:
                logger.error(
                    "engine restart attempt %d failed (%s: %s); next attempt in %.0f s",
                    attempt,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                if engine is not None:
                    await self._stop_quietly(engine)
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.settings.max_backoff_s)
                attempt += 1
                continue
            self._engine = engine
            self._last_progress = self._clock()
            self._state = EngineState.READY
            logger.warning(
                "engine %s is serving again (attempt %d, %.1f s, %d adapters reloaded)",
                engine.name,
                attempt,
                self._clock() - started,
                len(self._adapters),
            )
            return

    async def _reload_adapters(self, engine: Engine) -> None:
        for ref in list(self._adapters.values()):
            try:
                await engine.add_adapter(ref)
            except Exception:
                logger.exception("could not reload adapter %s into the new engine", ref.key)
        for key in set(engine.loaded_adapters()) - set(self._adapters):
            await engine.remove_adapter(key)  # removed while the engine was rebuilt

    async def _stop_quietly(self, engine: Engine) -> None:
        try:
            async with asyncio.timeout(self.settings.stop_timeout_s):
                await engine.stop()
        except TimeoutError:
            logger.error(
                "engine %s did not stop within %.0f s; abandoning it",
                engine.name,
                self.settings.stop_timeout_s,
            )
        except Exception:
            logger.exception("engine %s failed while stopping", engine.name)


def supervise(config: LoramuxConfig, engine: Engine | None = None) -> Engine:
    """The engine the app serves with, under supervision unless `supervisor.enabled` is off.

    Args:
        config: the serving config (`engine` picks the kind, `supervisor` the watchdog).
        engine: an engine to use instead of the configured kind (tests); a rebuild stops and
            starts this same instance again.

    Returns:
        A `SupervisedEngine`, or the bare engine when supervision is off.
    """
    from loramux.serve.engine import create_engine

    def factory() -> Engine:
        return engine if engine is not None else create_engine(config)

    if not config.supervisor.enabled:
        return factory()
    return SupervisedEngine(factory, config.supervisor)
