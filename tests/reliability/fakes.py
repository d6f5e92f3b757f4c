"""A fake engine with fault switches, written by hand for the fault-injection tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from loramux.serve.fake import FakeEngine
from loramux.serve.types import GenerationChunk, GenerationRequest


class FaultyEngine(FakeEngine):
    """The echo engine, plus one-shot faults and a record of cancelled generations.

    - `crash_after = n`: the next stream dies after n chunks, and the engine says it is no
      longer ready (as when the hf worker thread dies); a restart (`stop` + `start`) heals it.
    - `hang_after = n`: the next stream stops producing after n chunks, forever; the engine
      still says it is ready (a stuck forward pass).
    - `fail_starts = n`: the next n calls of `start` raise.
    - `start_delay_s`: `start` takes this long (a model load), so tests can watch a restart.
    """

    def __init__(
        self, *, token_delay_s: float = 0.0, start_delay_s: float = 0.0, context_length: int = 2048
    ) -> None:
        super().__init__(context_length=context_length, token_delay_s=token_delay_s)
        self.start_delay_s = start_delay_s
        self.crash_after: int | None = None
        self.hang_after: int | None = None
        self.fail_starts = 0
        self.starts = 0
        self.cancelled: list[str] = []
        """Request ids whose generation was closed or cancelled before its last chunk."""
        self.finished: list[str] = []

    async def start(self) -> None:
        self.starts += 1
        if self.start_delay_s:
            await asyncio.sleep(self.start_delay_s)
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("injected start failure")
        await super().start()

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._faulty(request)

    async def _faulty(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        crash, hang = self.crash_after, self.hang_after
        produced = 0
        try:
            async for chunk in self._stream(request):
                if crash is not None and produced >= crash:
                    self.crash_after = None
                    self._ready = False
                    raise RuntimeError("injected engine crash")
                if hang is not None and produced >= hang:
                    self.hang_after = None
                    await asyncio.Event().wait()  # never set: hangs until cancelled
                produced += 1
                if chunk.finish_reason is not None:
                    self.finished.append(request.request_id)
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            if request.request_id not in self.finished:  # closed after the end is no cancel
                self.cancelled.append(request.request_id)
            raise
