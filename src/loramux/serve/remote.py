"""The `remote` engine: a pool of vLLM OpenAI servers, with loramux keeping the registry.

Each replica is a vLLM server started with `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`. Each adapter version (named on the servers by its key
`name@version`, which never names other weights) is placed on `engine.remote.replicas_per_adapter`
replicas chosen by rendezvous hashing of the key over the live replicas' URLs, more for hot
versions (`serve/placement.py`); it is loaded there on demand and the least recently used
versions past a replica's budget are unloaded (`serve/replicas.py`).

A request goes to the least loaded (fewest running requests) replica that holds its version or
should hold it; one that should but does not yet gets the version loaded first. A replica that
fails before the first token (connection refused or reset) leaves rotation and the request is
sent to the next one, so no request fails while another replica can serve it. A request whose
answer is collected before it reaches the client (no `stream`, `GenerationRequest.buffered`) is
also sent again from the start when its replica dies mid-answer; once a streamed request's tokens
have reached the client, the failure is the request's. A probe every `probe_interval_s` takes
failed replicas out and brings answering ones back. A replica that answers "model not found" for
a version it should hold (it restarted) gets it loaded again, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from loramux.errors import (
    AdapterError,
    EngineError,
    EngineUnavailableError,
)
from loramux.serve.engine import resolve_max_tokens
from loramux.serve.remote_wire import request_error, request_fields, sse_chunks
from loramux.serve.replicas import DEFAULT_CONTEXT, Replica, ReplicaDown, ReplicaPool
from loramux.serve.replicas import message_of as _message
from loramux.serve.types import GenerationChunk, GenerationRequest
from loramux.types import AdapterRef

if TYPE_CHECKING:
    from loramux.config import EngineConfig, LoramuxConfig

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CONTEXT", "RemoteEngine", "Replica"]


@dataclass(eq=False)
class _Adapter:
    ref: AdapterRef
    active: int = 0
    removing: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class _Retry(Exception):
    """The replica failed before sending anything: try another one."""


class RemoteEngine:
    """Engine over vLLM OpenAI servers; adapters placed on k replicas, least-loaded routing."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        model_id: str,
        probe_interval_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Build the engine (no connection until `start`).

        Args:
            config: the `engine:` section: the shared limits (`context_length` caps the
                servers' own, `default_max_tokens`, `max_loaded_adapters`) and `remote`.
            model_id: the base model's id (`model.id`), which is the servers' base model name
                unless `engine.remote.model` gives another.
            probe_interval_s: how often replicas are probed (default
                `engine.remote.probe_interval_s`).
            transport: an httpx transport (tests).
        """
        remote = config.remote
        if not remote.urls:
            raise EngineUnavailableError(
                "the remote engine needs at least one server URL in engine.remote.urls"
            )
        urls = [u.rstrip("/") for u in remote.urls]  # each once: the config checks it
        self.config = config
        self._model = remote.model or model_id
        k = remote.replicas_per_adapter
        self.pool = ReplicaPool(
            urls,
            model=self._model,
            replicas_per_adapter=None if k == "all" else k,
            budget=remote.max_adapters_per_replica or config.max_loaded_adapters,
            traffic_window=remote.traffic_window,
            adapter_dir=remote.adapter_dir,
            client=self._running,
        )
        self.replicas = self.pool.replicas
        self._headers = {"Authorization": f"Bearer {remote.api_key}"} if remote.api_key else {}
        self._timeout = httpx.Timeout(remote.timeout_s, connect=5.0)
        self._context_cap = config.context_length
        self._default_max_tokens = config.default_max_tokens
        self._max_adapters = config.max_loaded_adapters
        self._probe_interval = probe_interval_s or remote.probe_interval_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._adapters: dict[str, _Adapter] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._probe: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(cls, config: LoramuxConfig) -> RemoteEngine:
        return cls(config.engine, model_id=config.model.id)

    # -- Engine protocol ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "remote"

    @property
    def ready(self) -> bool:
        return self._client is not None and any(r.healthy for r in self.replicas)

    @property
    def context_length(self) -> int:
        lengths = [r.context_length for r in self.replicas if r.healthy] or [DEFAULT_CONTEXT]
        return min([*lengths, self._context_cap or min(lengths)])

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            timeout=self._timeout, headers=self._headers, transport=self._transport
        )
        await asyncio.gather(*(self.pool.check(r) for r in self.replicas))
        healthy = [r.url for r in self.replicas if r.healthy]
        if not healthy:
            await self.stop()
            raise EngineUnavailableError(
                "no vLLM server answered at "
                + ", ".join(r.url for r in self.replicas)
                + f" with model {self._model!r}; start them or fix engine.remote.urls"
            )
        logger.info(
            "remote engine: %d of %d replicas up (%s), context %d tokens, %s replicas per "
            "adapter, at most %d adapters per replica",
            len(healthy),
            len(self.replicas),
            ", ".join(healthy),
            self.context_length,
            self.pool.k or "all",
            self.pool.budget,
        )
        self._probe = asyncio.create_task(self._probe_loop())

    async def stop(self) -> None:
        loads = [t for r in self.replicas for t in r.loading.values()]
        tasks = [t for t in (self._probe, *self._background, *loads) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._probe = None
        self._background.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        for r in self.replicas:
            r.healthy = False
            r.adapters.clear()
        self._adapters.clear()
        self.pool.refs.clear()

    async def add_adapter(self, adapter: AdapterRef) -> None:
        """Know a version and place it on its replicas now (a registration's trial load).

        Raises:
            AdapterError: no replica could load it, or the engine holds too many versions.
        """
        self._running()
        async with self._lock(adapter.key):
            known = self._adapters.get(adapter.key)
            if known is not None and not known.removing:
                return
            if len(self._adapters) >= self._max_adapters:
                raise AdapterError(
                    f"the engine already holds {len(self._adapters)} adapters "
                    f"(engine.max_loaded_adapters); retire one before loading {adapter.key}",
                    code="too_many_adapters",
                )
            self.pool.refs[adapter.key] = adapter
            try:
                await self.pool.place(adapter)
            except BaseException:
                del self.pool.refs[adapter.key]
                raise
            self._adapters[adapter.key] = _Adapter(adapter)

    async def remove_adapter(self, key: str) -> None:
        self._running()
        async with self._lock(key):
            entry = self._adapters.get(key)
            if entry is None:
                return
            entry.removing = True
            if entry.active:
                await entry.idle.wait()
            holders = [r for r in self.replicas if key in r.adapters]
            await asyncio.gather(
                *(self.pool.unload(r, key) for r in holders), return_exceptions=True
            )
            del self._adapters[key]
            self.pool.refs.pop(key, None)
            logger.info("unloaded adapter %s from %d replicas", key, len(holders))

    def loaded_adapters(self) -> list[str]:
        return sorted(k for k, a in self._adapters.items() if not a.removing)

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._stream(request)

    # -- requests ------------------------------------------------------------------------------

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        client = self._running()
        entry: _Adapter | None = None
        if request.adapter is not None:
            entry = self._adapters.get(request.adapter.key)
            if entry is None or entry.removing:
                raise EngineError(f"adapter {request.adapter.key} is not loaded in the engine")
        key = entry.ref.key if entry else None
        if entry is not None:
            entry.active += 1
            entry.idle.clear()
            self.pool.traffic.record(entry.ref.key)
        tried: set[int] = set()
        try:
            while True:
                replica = await self._pick(entry, tried)  # its counts are taken for us
                tried.add(id(replica))
                try:
                    body = await self._body(client, replica, request, key)
                    async for chunk in self._send(client, replica, request, body, key):
                        yield chunk
                    return
                except _Retry:
                    continue
                finally:
                    self._release(replica, key)
        finally:
            if entry is not None:
                entry.active -= 1
                if entry.active == 0:
                    entry.idle.set()

    async def _pick(self, entry: _Adapter | None, tried: set[int]) -> Replica:
        """The replica for the next try, with its running counts taken (`_release` gives them
        back): the least loaded one that holds the version or should hold it (holders first on
        a tie; ties take turns), loaded first when it does not hold it yet."""
        refusal: AdapterError | None = None
        while True:
            replica = self.pool.choose(entry.ref.key if entry else None, tried)
            if replica is None:
                if refusal is not None:
                    raise refusal
                if tried:
                    raise EngineUnavailableError("every replica failed this request; retry shortly")
                raise EngineUnavailableError(
                    f"no healthy replica serves {entry.ref.key if entry else 'the base model'}; "
                    "retry shortly"
                )
            replica.inflight += 1
            if entry is None:
                return replica
            replica.using[entry.ref.key] += 1
            try:
                await self.pool.ensure(replica, entry.ref)
            except (ReplicaDown, AdapterError) as exc:
                self._release(replica, entry.ref.key)
                tried.add(id(replica))
                if isinstance(exc, AdapterError):
                    refusal = exc
                continue
            except BaseException:
                self._release(replica, entry.ref.key)
                raise
            return replica

    def _release(self, replica: Replica, key: str | None) -> None:
        replica.inflight -= 1
        if key is None:
            return
        replica.using[key] -= 1
        if not replica.using[key]:
            del replica.using[key]
        if len(replica.adapters) > self.pool.budget:
            self._spawn(self.pool.trim(replica))

    async def _body(
        self,
        client: httpx.AsyncClient,
        replica: Replica,
        request: GenerationRequest,
        key: str | None,
    ) -> dict[str, Any]:
        s = request.sampling
        context = min(replica.context_length, self._context_cap or replica.context_length)
        if s.max_tokens is None:  # cap the default by the room the prompt leaves
            prompt_tokens = await self._count(client, replica, request)
            max_tokens = resolve_max_tokens(prompt_tokens, None, context, self._default_max_tokens)
        else:
            max_tokens = s.max_tokens
        body: dict[str, Any] = {
            "model": key or self._model,
            "max_tokens": max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "stream": True,
            # usage on every chunk (a vLLM extension), so a stream cut short is charged
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if s.seed is not None:
            body["seed"] = s.seed
        if s.ignore_eos:
            body["ignore_eos"] = True  # a vLLM extension of the OpenAI API
        body.update(request_fields(s, completions=request.prompt is not None))
        if request.prompt is not None:
            body["prompt"] = request.prompt
        else:
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        return body

    async def _count(
        self, client: httpx.AsyncClient, replica: Replica, request: GenerationRequest
    ) -> int:
        body: dict[str, Any] = {"model": self._model}
        if request.prompt is not None:
            body["prompt"] = request.prompt
        else:
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            body["add_generation_prompt"] = True
        try:
            resp = await client.post(f"{replica.url}/tokenize", json=body)
        except httpx.TransportError as exc:
            self._lost(replica, exc)
            raise _Retry() from exc
        except httpx.HTTPError as exc:
            raise EngineUnavailableError("a vLLM replica stopped answering; retry") from exc
        if resp.status_code != 200:
            raise EngineError(f"vLLM could not count the prompt's tokens: {_message(resp)}")
        return int(resp.json()["count"])

    async def _send(
        self,
        client: httpx.AsyncClient,
        replica: Replica,
        request: GenerationRequest,
        body: dict[str, Any],
        key: str | None,
    ) -> AsyncIterator[GenerationChunk]:
        path = "/v1/completions" if request.prompt is not None else "/v1/chat/completions"
        reloaded = False
        sent = False
        while True:
            try:
                async with client.stream("POST", replica.url + path, json=body) as resp:
                    if resp.status_code == 404 and key is not None and not reloaded:
                        await resp.aread()
                        reloaded = True
                        await self._reload(replica, key)  # the replica restarted and lost it
                        continue
                    if resp.status_code != 200:
                        await resp.aread()
                        raise request_error(resp)
                    # Buffered (no client stream): held until the replica finished, so a
                    # replica that dies mid-answer costs a new start elsewhere, not the request.
                    held: list[GenerationChunk] = []
                    async for chunk in sse_chunks(resp, request):
                        if request.buffered:
                            held.append(chunk)
                            continue
                        sent = True
                        yield chunk
                    for chunk in held:
                        yield chunk
                    return
            except (httpx.TransportError, ReplicaDown) as exc:
                if isinstance(exc, httpx.TransportError):
                    self._lost(replica, exc)
                if sent:  # tokens reached the client: another replica cannot continue them
                    raise EngineUnavailableError(
                        f"the vLLM replica {replica.url} stopped answering in the middle of "
                        "this answer; send the request again"
                    ) from exc
                raise _Retry() from exc

    # -- replicas ------------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            await self.pool.probe(on_back=lambda r: self._spawn(self.pool.place_home(r)))

    def _lost(self, replica: Replica, exc: httpx.TransportError) -> None:
        """A request's connection failed: out of rotation now, and asked again at once unless
        the connection was refused (a reset may be one stale connection, not a dead server)."""
        self.pool.down(replica, exc)
        if not isinstance(exc, httpx.ConnectError):
            self._spawn(self._recheck(replica))

    async def _recheck(self, replica: Replica) -> None:
        if not replica.healthy and await self.pool.check(replica):
            logger.info("replica %s answers again; back in rotation", replica.url)

    def _spawn(self, coro: Any) -> None:
        """Run replica upkeep (trims, loads home) in the background; failures are logged."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("replica upkeep failed: %s", task.exception())

    async def _reload(self, replica: Replica, key: str) -> None:
        entry = self._adapters.get(key)
        replica.adapters.pop(key, None)
        if entry is None:
            raise EngineError(f"adapter {key} is not loaded in the engine")
        logger.warning("replica %s lost adapter %s; loading it again", replica.url, key)
        await self.pool.ensure(replica, entry.ref)

    def _running(self) -> httpx.AsyncClient:
        if self._client is None:
            raise EngineUnavailableError("the remote engine is not running; retry shortly")
        return self._client

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())
