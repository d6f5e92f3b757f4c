"""The `remote` engine: one or more vLLM OpenAI servers, with loramux keeping the registry.

Each replica is a vLLM server started with `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`. Every adapter version is loaded onto every replica
(`/v1/load_lora_adapter`, named by its key `name@version`, which never names other weights);
each request goes to the least loaded replica that holds its adapter, and streams back over SSE.

A replica that stops answering is taken out of rotation; a probe every `probe_interval_s` brings
it back and loads the adapters onto it again (a restarted vLLM server has lost them). A replica
that answers "model not found" for an adapter it should hold gets it loaded again, once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from loramux.errors import (
    AdapterError,
    ContextLengthExceededError,
    EngineError,
    EngineUnavailableError,
    InvalidRequestError,
)
from loramux.serve.engine import resolve_max_tokens
from loramux.serve.remote_wire import choice_logprobs, request_fields
from loramux.serve.types import FinishReason, GenerationChunk, GenerationRequest
from loramux.types import AdapterRef

if TYPE_CHECKING:
    from loramux.config import EngineConfig, LoramuxConfig

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048


@dataclass(eq=False)
class Replica:
    url: str
    adapters: set[str] = field(default_factory=set)
    """Adapter keys loaded on this replica."""
    inflight: int = 0
    healthy: bool = False
    context_length: int = DEFAULT_CONTEXT


@dataclass(eq=False)
class _Adapter:
    ref: AdapterRef
    active: int = 0
    removing: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class _Retry(Exception):
    """The replica failed before sending anything: try another one."""


class RemoteEngine:
    """Engine over vLLM OpenAI servers; adapters on every replica, least-loaded routing."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        model_id: str,
        probe_interval_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Build the engine (no connection until `start`).

        Args:
            config: the `engine:` section: the shared limits (`context_length` caps the
                servers' own, `default_max_tokens`, `max_loaded_adapters`) and `remote`.
            model_id: the base model's id (`model.id`), which is the servers' base model name
                unless `engine.remote.model` gives another.
            probe_interval_s: how often replicas out of rotation are probed.
            transport: an httpx transport (tests).
        """
        remote = config.remote
        if not remote.urls:
            raise EngineUnavailableError(
                "the remote engine needs at least one server URL in engine.remote.urls"
            )
        self.config = config
        self.replicas = [Replica(u.rstrip("/")) for u in remote.urls]
        self._model = remote.model or model_id
        self._headers = {"Authorization": f"Bearer {remote.api_key}"} if remote.api_key else {}
        self._timeout = httpx.Timeout(remote.timeout_s, connect=5.0)
        self._context_cap = config.context_length
        self._default_max_tokens = config.default_max_tokens
        self._max_adapters = config.max_loaded_adapters
        self._adapter_dir = remote.adapter_dir
        self._probe_interval = probe_interval_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._adapters: dict[str, _Adapter] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._probe: asyncio.Task[None] | None = None
        self._turn = 0

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
        await asyncio.gather(*(self._check(r) for r in self.replicas))
        healthy = [r.url for r in self.replicas if r.healthy]
        if not healthy:
            await self.stop()
            raise EngineUnavailableError(
                "no vLLM server answered at "
                + ", ".join(r.url for r in self.replicas)
                + f" with model {self._model!r}; start them or fix engine.remote.urls"
            )
        logger.info(
            "remote engine: %d of %d replicas up (%s), context %d tokens",
            len(healthy),
            len(self.replicas),
            ", ".join(healthy),
            self.context_length,
        )
        self._probe = asyncio.create_task(self._probe_loop())

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        for r in self.replicas:
            r.healthy = False
            r.adapters.clear()
        self._adapters.clear()

    async def add_adapter(self, adapter: AdapterRef) -> None:
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
            up = [r for r in self.replicas if r.healthy]
            results = await asyncio.gather(
                *(self._load(r, adapter) for r in up), return_exceptions=True
            )
            failed = [(r.url, e) for r, e in zip(up, results, strict=True) if e is not None]
            if len(failed) == len(up):
                raise AdapterError(
                    f"no replica could load adapter {adapter.key}: "
                    + "; ".join(f"{url}: {err}" for url, err in failed)
                )
            for url, err in failed:
                logger.warning("replica %s could not load %s: %s", url, adapter.key, err)
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
            await asyncio.gather(*(self._unload(r, key) for r in holders), return_exceptions=True)
            del self._adapters[key]
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
        tried: set[int] = set()
        try:
            while True:
                replica = self._pick(key, tried)
                tried.add(id(replica))
                body = await self._body(client, replica, request, key)
                replica.inflight += 1
                try:
                    async for chunk in self._send(client, replica, request, body, key):
                        yield chunk
                    return
                except _Retry:
                    continue
                finally:
                    replica.inflight -= 1
        finally:
            if entry is not None:
                entry.active -= 1
                if entry.active == 0:
                    entry.idle.set()

    def _pick(self, key: str | None, tried: set[int]) -> Replica:
        ready = [
            r
            for r in self.replicas
            if r.healthy and id(r) not in tried and (key is None or key in r.adapters)
        ]
        if not ready:
            if tried:
                raise EngineUnavailableError("every replica failed this request; retry shortly")
            raise EngineUnavailableError(
                f"no healthy replica holds {key or 'the base model'}; retry shortly"
            )
        least = min(r.inflight for r in ready)
        ties = [r for r in ready if r.inflight == least]
        self._turn += 1  # ties take turns, so sequential traffic spreads too
        return ties[self._turn % len(ties)]

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
        except httpx.HTTPError as exc:
            self._down(replica, exc)
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
                        raise _request_error(resp)
                    async for chunk in _chunks(resp, request):
                        yield chunk
                    return
            except httpx.TransportError as exc:
                self._down(replica, exc)
                raise _Retry() from exc

    # -- replicas and adapters -----------------------------------------------------------------

    async def _check(self, replica: Replica) -> bool:
        """Ask a replica for its models; healthy when it serves the base model."""
        assert self._client is not None
        try:
            resp = await self._client.get(f"{replica.url}/v1/models", timeout=5.0)
            resp.raise_for_status()
            models = {m["id"]: m for m in resp.json().get("data", [])}
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            logger.warning("replica %s is not answering: %s", replica.url, exc)
            replica.healthy = False
            return False
        base = models.get(self._model)
        if base is None:
            logger.warning(
                "replica %s serves %s, not %s", replica.url, ", ".join(models), self._model
            )
            replica.healthy = False
            return False
        replica.context_length = int(base.get("max_model_len") or DEFAULT_CONTEXT)
        replica.adapters = {k for k in models if k in self._adapters}
        replica.healthy = True
        return True

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            for replica in self.replicas:
                if replica.healthy:
                    continue
                if await self._check(replica):
                    logger.info(
                        "replica %s is back; loading %d adapters", replica.url, len(self._adapters)
                    )
                    for entry in list(self._adapters.values()):
                        if entry.ref.key not in replica.adapters and not entry.removing:
                            try:
                                await self._load(replica, entry.ref)
                            except AdapterError as exc:
                                logger.warning("%s", exc.message)

    def _down(self, replica: Replica, exc: BaseException) -> None:
        if replica.healthy:
            logger.warning("replica %s is out of rotation: %s", replica.url, exc)
        replica.healthy = False
        replica.adapters.clear()

    async def _load(self, replica: Replica, adapter: AdapterRef) -> None:
        client = self._running()
        path = (
            adapter.path
            if self._adapter_dir is None
            else Path(self._adapter_dir) / adapter.path.name
        )
        body = {"lora_name": adapter.key, "lora_path": str(path)}
        try:
            resp = await client.post(f"{replica.url}/v1/load_lora_adapter", json=body)
        except httpx.HTTPError as exc:
            raise AdapterError(f"replica {replica.url} did not answer: {exc}") from exc
        if resp.status_code != 200 and "already been loaded" not in resp.text:
            raise AdapterError(f"replica {replica.url}: {_message(resp)}")
        replica.adapters.add(adapter.key)

    async def _reload(self, replica: Replica, key: str) -> None:
        entry = self._adapters.get(key)
        replica.adapters.discard(key)
        if entry is None:
            raise EngineError(f"adapter {key} is not loaded in the engine")
        logger.warning("replica %s lost adapter %s; loading it again", replica.url, key)
        await self._load(replica, entry.ref)

    async def _unload(self, replica: Replica, key: str) -> None:
        client = self._running()
        replica.adapters.discard(key)
        resp = await client.post(f"{replica.url}/v1/unload_lora_adapter", json={"lora_name": key})
        if resp.status_code not in (200, 404):
            logger.warning("replica %s could not unload %s: %s", replica.url, key, _message(resp))

    def _running(self) -> httpx.AsyncClient:
        if self._client is None:
            raise EngineUnavailableError("the remote engine is not running; retry shortly")
        return self._client

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())


async def _chunks(resp: httpx.Response, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
    """Turn vLLM's SSE stream into chunks; the last one carries the finish reason and usage."""
    completions = req.prompt is not None
    finish: FinishReason | None = None
    usage: dict[str, Any] = {}
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        event = json.loads(data)
        if "error" in event:
            raise EngineError(f"vLLM failed mid-stream: {event['error'].get('message', event)}")
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            text = choice.get("text") if completions else (choice.get("delta") or {}).get("content")
            lps = choice_logprobs(choice, req.sampling.logprobs, completions=completions)
            if text or lps:
                yield GenerationChunk(
                    text or "",
                    None,
                    int(usage.get("prompt_tokens", 0)),
                    int(usage.get("completion_tokens", 0)),
                    logprobs=lps,
                )
            if choice.get("finish_reason"):
                finish = (
                    FinishReason.LENGTH
                    if choice["finish_reason"] == "length"
                    else FinishReason.STOP
                )
    if finish is None:
        raise EngineError("the vLLM stream ended without a finish reason; retry")
    yield GenerationChunk(
        "",
        finish_reason=finish,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:200]}"
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else None
    return f"HTTP {resp.status_code}: {message or str(body)[:200]}"


def _request_error(resp: httpx.Response) -> Exception:
    message = _message(resp)
    if resp.status_code == 400 and "context length" in message.lower():
        return ContextLengthExceededError(
            f"the prompt does not fit the model's context ({message}); shorten the messages or "
            "lower max_tokens",
            param="max_tokens",
        )
    if resp.status_code in (400, 422):
        return InvalidRequestError(f"vLLM refused the request: {message}")
    if resp.status_code in (502, 503, 504):
        return EngineUnavailableError(f"a vLLM replica is unavailable: {message}")
    return EngineError(f"vLLM failed: {message}")
