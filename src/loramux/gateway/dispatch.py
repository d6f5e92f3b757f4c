"""Which model answers a request: an explicit `model`, or the router's choice for `auto`.

`Dispatcher.dispatch` turns (model, messages, user) into a `Dispatch`: the route decision, the
adapter version the traffic split assigns (sticky per user), and for RAG answers the messages
with retrieved passages added and their sources. Routing never picks an adapter the caller's
`Access` does not list, and never one that is not registered: such a request falls back to RAG
or the base model as if the route did not exist. The fallbacks respect `Access` too: without RAG
an abstained request goes to the base model, and without the base model it is refused (403).
Concurrent `auto` requests are decided together, in one encoder pass per batch (`RouteBatcher`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loramux.adapters.registry import AdapterRegistry
from loramux.adapters.traffic import Assignment
from loramux.errors import LoramuxError, ModelNotFoundError, PermissionDeniedError
from loramux.keys.records import EVERYTHING, Access
from loramux.router.batcher import RouteBatcher
from loramux.router.decision import RouteDecision, RouteTarget
from loramux.types import ChatMessage

if TYPE_CHECKING:
    from loramux.rag.knowledge_base import KnowledgeBase
    from loramux.rag.prompt import Source
    from loramux.router.base import Router

logger = logging.getLogger(__name__)

AUTO_MODEL = "auto"
"""The `model` that lets loramux choose: an adapter, the base model, or a RAG answer."""


@dataclass(frozen=True)
class Dispatch:
    """Who answers one request, and with which messages."""

    decision: RouteDecision
    assignment: Assignment | None
    """The adapter version (and experiment) serving it; None for the base model and RAG."""
    messages: tuple[ChatMessage, ...]
    sources: list[Source] = field(default_factory=list)
    """Knowledge-base passages the answer may cite (RAG only)."""
    propensity: float = 1.0
    """Probability of this choice given the request: the chosen version's traffic weight / 100
    under an A/B split; 1.0 for deterministic choices (the router, a pinned or only version)."""
    quote: str | None = None
    """RAG with `kb.quote`: the passage sentence that answers the question, verbatim with its
    citation (`rag.quote`), which ends the answer."""

    def headers(self) -> dict[str, str]:
        d = self.decision
        headers = {
            "x-loramux-route": d.route or "none",
            "x-loramux-target": d.target.value,
            "x-loramux-score": f"{d.score:.4f}",
            "x-loramux-adapter": self.assignment.version.name if self.assignment else "base",
        }
        if self.assignment is not None:
            headers["x-loramux-adapter-version"] = self.assignment.version.version
            if not self.assignment.pinned:
                headers["x-loramux-experiment"] = self.assignment.experiment_id
        if self.sources:
            headers["x-loramux-sources"] = ", ".join(
                f"[{s.index}] {s.source}" for s in self.sources
            )
        return headers


def explicit_decision(model: str, assignment: Assignment | None) -> RouteDecision:
    """The decision recorded when the client named the model itself."""
    if assignment is None:
        return RouteDecision(
            RouteTarget.BASE, None, None, 1.0, 1.0, (), "the request named the base model"
        )
    name = assignment.version.name
    return RouteDecision(
        RouteTarget.ADAPTER, name, name, 1.0, 1.0, (), f"the request named {model!r}"
    )


class Dispatcher:
    """Resolves explicit models through the registry and `auto` through the router.

    Args:
        registry: the adapters served.
        router: decides `auto` requests (None: they go to the base model).
        kb: the knowledge base for RAG answers.
        top_k: passages added to a RAG prompt.
        quote: end RAG answers with the quoted sentence that answers them (`kb.quote`).
        max_batch: most `auto` requests decided in one encoder pass.
    """

    def __init__(
        self,
        registry: AdapterRegistry,
        router: Router | None = None,
        kb: KnowledgeBase | None = None,
        *,
        top_k: int = 4,
        max_batch: int = 64,
        quote: bool = True,
    ) -> None:
        self.registry = registry
        self.router = router
        self.kb = kb
        self.top_k = top_k
        self.max_batch = max_batch
        self.quote = quote
        """End RAG answers with the passage sentence that answers the question (`kb.quote`)."""
        # Batches the router's decisions; `decide` builds a new one if `router` is replaced.
        self.batcher = RouteBatcher(router, max_batch=max_batch) if router is not None else None
        self._open_routes: dict[tuple[frozenset[str], frozenset[str] | None], frozenset[str]] = {}
        """(served adapters, the caller's adapters) -> the routes such a request may take, for
        `_routes_of`: built once per change of the registry or the routes, not per request."""
        self._routes_of: tuple[Router | None, int] = (router, 0)
        self._route_changes = 0

    async def dispatch(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        user: str | None = None,
        access: Access = EVERYTHING,
    ) -> Dispatch:
        """Decide who answers.

        Args:
            model: the request's `model` (`auto`, the base model id, `name`, `name@version`).
            messages: the conversation.
            user: who asks (API key or the `user` field), for sticky A/B assignment.
            access: what the caller may use (its API key's adapters, base model, RAG).

        Raises:
            ModelNotFoundError: an explicit model that is not served.
            PermissionDeniedError: the caller may not use the model, or (`auto`) nothing it
                may use fits the request.
        """
        if model != AUTO_MODEL:
            assignment = self.registry.assign(
                model, user, visible=access.may_use_adapter, base_visible=access.base
            )
            if assignment is None:
                access.require_base(model)
            else:
                access.require_adapter(assignment.version.name)
            return Dispatch(
                explicit_decision(model, assignment),
                assignment,
                tuple(messages),
                propensity=self._propensity(assignment),
            )
        decision = await self.decide(messages, allowed=access.adapters)
        if decision.target is RouteTarget.ADAPTER and decision.adapter:
            try:
                assignment = self.registry.assign(decision.adapter, user)
            except ModelNotFoundError:
                logger.warning(
                    "route %s names adapter %s, which is not served; using the base model",
                    decision.route,
                    decision.adapter,
                )
                decision = _fallback(decision, f"adapter {decision.adapter!r} is not served")
                return Dispatch(_permitted(decision, access), None, tuple(messages))
            return Dispatch(
                decision, assignment, tuple(messages), propensity=self._propensity(assignment)
            )
        decision = _permitted(decision, access)
        if decision.target is RouteTarget.RAG and self.kb is not None:
            return await self._with_passages(decision, messages)
        return Dispatch(decision, None, tuple(messages))

    def _propensity(self, assignment: Assignment | None) -> float:
        """The chosen version's share of its adapter's traffic (1.0 when pinned)."""
        if assignment is None or assignment.pinned:
            return 1.0
        try:
            adapter, _ = self.registry.get(assignment.version.name)
        except LoramuxError:
            return 1.0
        total = sum(adapter.traffic.values())
        weight = adapter.traffic.get(assignment.version.version, 0)
        return weight / total if total else 1.0

    async def learn_route(self, name: str, utterances: Sequence[str]) -> bool:
        """Let the router send requests to adapter `name`, from its example utterances.

        A route the router already has (from the routes file or a fitted router) is kept as it
        is: re-fit the router to change it. Returns True when a route was added.
        """
        return bool(await self.learn_routes([(name, utterances)]))

    async def learn_routes(self, adapters: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
        """`learn_route` for many adapters in one retrain of the router (start-up).

        Returns:
            The names of the routes added.
        """
        router = self.router
        if router is None:
            return []
        from loramux.config import RouteSpec

        specs = [
            RouteSpec(name=name, utterances=list(utterances))
            for name, utterances in adapters
            if utterances and name not in router.routes
        ]
        if specs:
            await asyncio.to_thread(router.add_routes, specs)
            self._route_changes += 1
            logger.info(
                "router: added %d routes (%d utterances)",
                len(specs),
                sum(len(s.utterances) for s in specs),
            )
        return [s.name for s in specs]

    async def forget_route(self, name: str) -> bool:
        """Stop routing to a deleted adapter: drop the router's route of that name when it
        targets the adapter by its name (a route learned from its utterances). True when one
        was dropped."""
        router = self.router
        spec = router.routes.get(name) if router is not None else None
        if router is None or spec is None or spec.adapter not in (None, name):
            return False
        await asyncio.to_thread(router.remove_route, name)
        self._route_changes += 1
        logger.info("router: removed route %s (its adapter was deleted)", name)
        return True

    async def decide(
        self, messages: Sequence[ChatMessage], *, allowed: Iterable[str] | None = None
    ) -> RouteDecision:
        """The router's decision for the conversation's last user turn (earlier user turns
        are its history); the base model when no router is configured. Concurrent calls are
        decided in batches (`RouteBatcher`)."""
        router = self.router
        if router is None:
            return RouteDecision(
                RouteTarget.BASE, None, None, 0.0, 0.0, (), "no router is configured"
            )
        users = [m.content for m in messages if m.role == "user" and m.content.strip()]
        text, history = users[-1], tuple(users[:-1])
        routes = self._open_routes_for(router, allowed)
        if self.batcher is None or self.batcher.router is not router:
            self.batcher = RouteBatcher(router, max_batch=self.max_batch)
        return await self.batcher.route(text, history=history, allowed=routes)

    def _open_routes_for(self, router: Router, allowed: Iterable[str] | None) -> frozenset[str]:
        """The routes a request may take: to an adapter that is served and that the caller may
        use, or to no adapter. Cached per (served set, caller's set) until the registry, the
        router or its routes change, so a decision does not walk every registered adapter."""
        if self._routes_of != (router, self._route_changes):
            self._open_routes.clear()
            self._routes_of = (router, self._route_changes)
        served = self.registry.served_names()  # a new set only when the registry changed
        may = None if allowed is None else frozenset(allowed)
        key = (served, may)
        found = self._open_routes.get(key)
        if found is None:
            permitted = served if may is None else served & may
            found = frozenset(
                name
                for name, spec in router.routes.items()
                if spec.adapter is None or spec.adapter in permitted
            )
            if len(self._open_routes) >= 1024:  # stale sets of earlier registry states
                self._open_routes.clear()
            self._open_routes[key] = found
        return found

    async def _with_passages(
        self, decision: RouteDecision, messages: Sequence[ChatMessage]
    ) -> Dispatch:
        from loramux.rag.prompt import build_rag_messages, retrieval_query

        assert self.kb is not None
        plain = [{"role": m.role, "content": m.content} for m in messages]
        kb = self.kb
        query = retrieval_query(plain)
        passages = await asyncio.to_thread(kb.retrieve, query, self.top_k)
        prompt = build_rag_messages(plain, passages)
        # The passages' system message, then the client's turns as they were (tool calls and
        # tool results kept); a client system message is inside the new one already.
        rest = messages[1:] if messages and messages[0].role == "system" else messages
        system = ChatMessage("system", prompt.messages[0]["content"])
        quote = None
        if self.quote:
            from loramux.rag.quote import best_quote

            found = await asyncio.to_thread(best_quote, query, passages, kb.encoder)
            quote = found.render() if found else None
        return Dispatch(decision, None, (system, *rest), prompt.sources, quote=quote)


def _permitted(decision: RouteDecision, access: Access) -> RouteDecision:
    """A base or RAG decision within what the caller may use: RAG becomes the base model
    when the caller may not use RAG.

    Raises:
        PermissionDeniedError: the answer would come from the base model, which the caller may
            not use.
    """
    if decision.target is RouteTarget.RAG and not access.rag:
        decision = _fallback(decision, "this API key may not use RAG answers")
    if decision.target is RouteTarget.BASE and not access.base:
        rag = "no RAG answer fits it" if access.rag else "the key may not use RAG answers"
        raise PermissionDeniedError(
            f"model `auto` found no adapter this API key may use for this request, {rag}, and "
            f"the key may not use the base model; it may use: {access.describe()}. Name an "
            "adapter as `model`, or ask an admin for a key with `--base`",
            param="model",
        )
    return decision


def _fallback(decision: RouteDecision, why: str) -> RouteDecision:
    return RouteDecision(
        RouteTarget.BASE,
        decision.route,
        None,
        decision.score,
        decision.margin,
        decision.alternatives,
        f"{decision.reason}; {why}",
    )
