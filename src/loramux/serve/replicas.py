"""The remote engine's pool of vLLM replicas: health, placement, loads and unloads per replica.

`ReplicaPool` knows, for each replica, whether it is in rotation, which adapter versions it holds
(least recently used first) and how many requests run on it. It answers "which replicas should
hold this version" with `serve.placement` (rendezvous hashing over the live replicas' URLs, more
replicas for hot versions) and does the moving with vLLM's own endpoints:

- `ensure(replica, ref)` loads a version onto a replica (`/v1/load_lora_adapter`), one load per
  (replica, version) however many requests wait, first unloading the replica's least recently
  used version past `max_adapters_per_replica` that no running request on it uses. When every
  version there is in use the load goes ahead over budget and `trim` unloads the surplus as soon
  as those requests end.
- A replica that fails at the transport level (connection refused, reset) is taken out of
  rotation at once and loses its placements; the probe (`/v1/models` every `probe_interval_s`)
  takes it back when it answers, and loads onto it the versions whose ranking now puts it first.
- A replica that refuses a version (HTTP 4xx on load) is not asked for it again until it
  restarts: the version's ranking skips it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loramux.errors import AdapterError
from loramux.serve.placement import TrafficShare, rank, replicas_wanted
from loramux.types import AdapterRef

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048
PROBE_FAILURES = 3
"""Probes in a row without a good answer (other than a refused connection) that take a replica
out of rotation."""


class ReplicaDown(Exception):
    """A replica failed at the transport level (refused, reset, timed out) and left rotation."""


@dataclass(eq=False)
class Replica:
    """One vLLM server as the gateway sees it."""

    url: str
    adapters: OrderedDict[str, None] = field(default_factory=OrderedDict)
    """Adapter keys loaded on this replica, least recently used first."""
    inflight: int = 0
    """Requests running on this replica."""
    using: Counter[str] = field(default_factory=Counter)
    """Requests running on this replica, per adapter key (those keys are never unloaded)."""
    healthy: bool = False
    context_length: int = DEFAULT_CONTEXT
    refused: set[str] = field(default_factory=set)
    """Adapter keys this replica refused to load (cleared when it comes back from down)."""
    loading: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    failed_probes: int = 0
    changes: int = 0
    """Loads and unloads started here (a probe's answer older than one of them is not used to
    correct `adapters`)."""
    """Probes in a row that got no good answer."""
    loads: int = 0
    unloads: int = 0
    load_failures: int = 0


class ReplicaPool:
    """The replicas of one remote engine and where each adapter version is placed."""

    def __init__(
        self,
        urls: list[str],
        *,
        model: str,
        replicas_per_adapter: int | None,
        budget: int,
        traffic_window: int,
        adapter_dir: str | None,
        client: Callable[[], httpx.AsyncClient],
    ) -> None:
        """Build the pool (no connection yet).

        Args:
            urls: the replicas' base URLs.
            model: the servers' base model name.
            replicas_per_adapter: k (None: every replica).
            budget: most versions loaded per replica (`max_adapters_per_replica`).
            traffic_window: requests over which hotness is counted.
            adapter_dir: where the servers see the adapter folders, when elsewhere.
            client: returns the engine's running HTTP client (raises when stopped).
        """
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        self.k = replicas_per_adapter
        self.budget = budget
        self.traffic = TrafficShare(traffic_window)
        self.refs: dict[str, AdapterRef] = {}
        """Every version the engine serves, by key (placed or not)."""
        self._model = model
        self._adapter_dir = adapter_dir
        self._client = client
        self._turn = 0

    # -- placement -------------------------------------------------------------------------------

    def live(self, key: str | None = None) -> list[Replica]:
        """Replicas in rotation (for `key`: those that did not refuse it)."""
        return [r for r in self.replicas if r.healthy and (key is None or key not in r.refused)]

    def targets(self, key: str, exclude: frozenset[int] = frozenset()) -> list[Replica]:
        """The replicas that should hold `key` now, best first (the ranking's first n)."""
        live = [r for r in self.live(key) if id(r) not in exclude]
        by_url = {r.url: r for r in live}
        n = replicas_wanted(self.traffic.share(key), self.k, len(live))
        return [by_url[url] for url in rank(key, list(by_url))[:n]]

    def ranking(self, key: str) -> list[Replica]:
        """Every live replica that did not refuse `key`, in the order `key` prefers them."""
        by_url = {r.url: r for r in self.live(key)}
        return [by_url[url] for url in rank(key, list(by_url))]

    def choose(self, key: str | None, tried: set[int]) -> Replica | None:
        """The replica for a request's next try: among the replicas in rotation not yet tried,
        those that hold `key` or should hold it (any, for the base model), the one with the
        fewest running requests; on a tie one that holds it, then each in turn.

        Returns:
            The replica, or None when no replica is left.
        """
        if key is None:
            candidates = [r for r in self.replicas if r.healthy and id(r) not in tried]
        else:
            holders = [
                r for r in self.replicas if r.healthy and id(r) not in tried and key in r.adapters
            ]
            targets = self.targets(key, frozenset(tried))
            candidates = holders + [r for r in targets if r not in holders]
        if not candidates:
            return None
        self._turn += 1  # ties take turns, so sequential traffic spreads too
        n = len(candidates)
        return min(
            enumerate(candidates),
            key=lambda ic: (
                ic[1].inflight,
                key is not None and key not in ic[1].adapters,
                (ic[0] - self._turn) % n,
            ),
        )[1]

    async def place(self, adapter: AdapterRef) -> None:
        """Load `adapter` onto the first replicas of its ranking that accept it (as many as it
        should have), all at once.

        Raises:
            AdapterError: no replica could load it.
        """
        want = len(self.targets(adapter.key))
        ranking = self.ranking(adapter.key)
        failed: list[tuple[str, BaseException]] = []
        placed = 0
        while ranking and placed < want:
            batch, ranking = ranking[: want - placed], ranking[want - placed :]
            results = await asyncio.gather(
                *(self.ensure(r, adapter) for r in batch), return_exceptions=True
            )
            for replica, result in zip(batch, results, strict=True):
                if result is None:
                    placed += 1
                elif isinstance(result, (AdapterError, ReplicaDown)):
                    failed.append((replica.url, result))
                else:
                    raise result
        for url, err in failed:
            logger.warning("replica %s could not load %s: %s", url, adapter.key, err)
        if not placed:
            raise AdapterError(
                f"no replica could load adapter {adapter.key}: "
                + ("; ".join(f"{url}: {err}" for url, err in failed) or "no replica is up")
            )

    def touch(self, replica: Replica, key: str) -> None:
        """`key` was just used on `replica` (most recently used now)."""
        if key in replica.adapters:
            replica.adapters.move_to_end(key)

    # -- loads and unloads -----------------------------------------------------------------------

    async def ensure(self, replica: Replica, ref: AdapterRef) -> None:
        """Have `ref` loaded on `replica` (one load per pair however many wait).

        Raises:
            ReplicaDown: the replica stopped answering (it is out of rotation now).
            AdapterError: the replica refused the version (it will not be asked again).
        """
        if ref.key in replica.adapters:
            self.touch(replica, ref.key)
            return
        task = replica.loading.get(ref.key)
        if task is None:
            task = asyncio.create_task(self._load_task(replica, ref))
            # Its waiters see its failure; this keeps one whose waiters all left from warning.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            replica.loading[ref.key] = task
        await asyncio.shield(task)

    async def _load_task(self, replica: Replica, ref: AdapterRef) -> None:
        try:
            await self._make_room(replica, ref.key)
            await self._load(replica, ref)
        finally:
            replica.loading.pop(ref.key, None)

    async def _make_room(self, replica: Replica, key: str) -> None:
        while len(replica.adapters) + len(replica.loading) > self.budget:
            victim = self._victim(replica, key)
            if victim is None:
                logger.info(
                    "replica %s: every one of its %d adapters is in use; loading %s over its "
                    "budget of %d until one is free",
                    replica.url,
                    len(replica.adapters),
                    key,
                    self.budget,
                )
                return
            await self.unload(replica, victim)

    def _victim(self, replica: Replica, key: str) -> str | None:
        """The least recently used key on `replica` that no request there uses."""
        for candidate in replica.adapters:
            if candidate != key and not replica.using[candidate]:
                return candidate
        return None

    async def trim(self, replica: Replica) -> None:
        """Unload the surplus of a replica that went over budget (after its requests ended)."""
        while replica.healthy and len(replica.adapters) > self.budget:
            victim = self._victim(replica, "")
            if victim is None:
                return
            try:
                await self.unload(replica, victim)
            except ReplicaDown:
                return

    async def _load(self, replica: Replica, ref: AdapterRef) -> None:
        client = self._client()
        path = ref.path if self._adapter_dir is None else Path(self._adapter_dir) / ref.path.name
        body = {"lora_name": ref.key, "lora_path": str(path)}
        replica.changes += 1
        try:
            resp = await client.post(f"{replica.url}/v1/load_lora_adapter", json=body)
        except httpx.TransportError as exc:
            replica.load_failures += 1
            self.down(replica, exc)
            raise ReplicaDown(replica.url) from exc
        except httpx.HTTPError as exc:
            replica.load_failures += 1
            raise AdapterError(f"replica {replica.url} did not answer: {exc}") from exc
        if resp.status_code != 200 and "already been loaded" not in resp.text:
            replica.load_failures += 1
            replica.refused.add(ref.key)
            raise AdapterError(f"replica {replica.url}: {message_of(resp)}")
        replica.loads += 1
        replica.adapters[ref.key] = None
        replica.adapters.move_to_end(ref.key)
        logger.info("loaded adapter %s on replica %s", ref.key, replica.url)

    async def unload(self, replica: Replica, key: str) -> None:
        """Unload `key` from `replica` (forgotten here first, whatever the replica answers).

        Raises:
            ReplicaDown: the replica stopped answering.
        """
        replica.adapters.pop(key, None)
        replica.changes += 1
        client = self._client()
        try:
            resp = await client.post(
                f"{replica.url}/v1/unload_lora_adapter", json={"lora_name": key}
            )
        except httpx.TransportError as exc:
            self.down(replica, exc)
            raise ReplicaDown(replica.url) from exc
        replica.unloads += 1
        if resp.status_code not in (200, 404):
            logger.warning("replica %s could not unload %s: %s", replica.url, key, message_of(resp))

    # -- health ----------------------------------------------------------------------------------

    def down(self, replica: Replica, exc: BaseException) -> None:
        """Take a replica out of rotation; its placements go to the next replica of each
        version's ranking."""
        if replica.healthy:
            logger.warning("replica %s is out of rotation: %s", replica.url, _why(exc))
        replica.healthy = False
        replica.adapters.clear()

    async def check(self, replica: Replica) -> bool:
        """Ask a replica for its models; healthy when it serves the base model. Its adapter list
        is taken from the answer (another gateway may have loaded or unloaded some)."""
        client = self._client()
        changes = replica.changes
        try:
            resp = await client.get(f"{replica.url}/v1/models", timeout=5.0)
            resp.raise_for_status()
            models = {m["id"]: m for m in resp.json().get("data", [])}
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            replica.failed_probes += 1
            # Refused: it is gone. A slow or bad answer from a replica in rotation (busy with a
            # burst of requests) takes it out only the third time in a row.
            gone = isinstance(exc, httpx.ConnectError) or replica.failed_probes >= PROBE_FAILURES
            if replica.healthy and gone:
                self.down(replica, exc)
            elif replica.healthy:
                logger.info("replica %s did not answer its probe: %s", replica.url, _why(exc))
            return False
        replica.failed_probes = 0
        base = models.get(self._model)
        if base is None:
            logger.warning(
                "replica %s serves %s, not %s", replica.url, ", ".join(models), self._model
            )
            self.down(replica, RuntimeError(f"it does not serve {self._model}"))
            return False
        replica.context_length = int(base.get("max_model_len") or DEFAULT_CONTEXT)
        there = {k for k in models if k in self.refs}
        if replica.changes != changes or replica.loading:
            there = set(replica.adapters)  # a load or unload crossed the answer: keep ours
        for key in [k for k in replica.adapters if k not in there]:
            del replica.adapters[key]
        for key in there - set(replica.adapters):  # loaded elsewhere: least recently used here
            replica.adapters[key] = None
            replica.adapters.move_to_end(key, last=False)
        if not replica.healthy:
            replica.refused.clear()
        replica.healthy = True
        return True

    async def probe(self, on_back: Callable[[Replica], None] | None = None) -> None:
        """Check every replica once; `on_back` is called for each that came back."""
        was = {id(r): r.healthy for r in self.replicas}
        await asyncio.gather(*(self.check(r) for r in self.replicas))
        for r in self.replicas:
            if r.healthy and not was[id(r)]:
                logger.info("replica %s is back in rotation", r.url)
                if on_back is not None:
                    on_back(r)

    async def place_home(self, replica: Replica) -> None:
        """Load onto a replica that came back the versions whose ranking now puts it among
        their holders (at most its budget)."""
        for key, ref in list(self.refs.items()):
            if len(replica.adapters) >= self.budget or not replica.healthy:
                return
            if key in replica.adapters or replica not in self.targets(key):
                continue
            try:
                await self.ensure(replica, ref)
            except AdapterError as exc:
                logger.warning("%s", exc.message)
            except ReplicaDown:
                return

    def stats(self) -> list[dict[str, float | str | bool]]:
        """Per replica: URL, in rotation, placements, running requests, loads, unloads and load
        failures since start (read by the Prometheus collector)."""
        return [
            {
                "url": r.url,
                "healthy": r.healthy,
                "placements": len(r.adapters),
                "inflight": r.inflight,
                "loads": r.loads,
                "unloads": r.unloads,
                "load_failures": r.load_failures,
            }
            for r in self.replicas
        ]


def message_of(resp: httpx.Response) -> str:
    """A vLLM error response in one line (`HTTP 400: ...`)."""
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:200]}"
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else None
    return f"HTTP {resp.status_code}: {message or str(body)[:200]}"


def _why(exc: BaseException) -> str:
    """An exception in one line, its type named (httpx's timeouts have no message)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
