"""The gateway's request service: parsed request -> who answers -> engine -> result.

HTTP handlers convert the body at the edge (`ChatInput`, `CompletionInput`) and call one method
here. This is where the request is checked against the server's limits and becomes a
`GenerationRequest`, where the `Dispatcher` picks the adapter (or RAG, or
the base model) within what the caller's API key may use, where the caller's tokens per minute
are charged (an estimate up front, settled to the real count at the end: a stream that the
client cancels, or that fails, is charged the prompt and every token generated before it ended,
as the engine's running counts on each chunk say), and where each finished request is recorded
for its A/B experiment. It logs one line per request (ids, route,
adapter, token counts, latency) and never the prompt or completion.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from loramux.config import LoramuxConfig
from loramux.errors import InvalidRequestError, LoramuxError
from loramux.gateway.access import ANONYMOUS, Caller, Gate
from loramux.gateway.admission import AdmissionQueue, Ticket, admitted_stream
from loramux.gateway.decisions import DecisionLog, decision_record
from loramux.gateway.dispatch import Dispatch, Dispatcher
from loramux.gateway.limits import check_messages, check_prompt
from loramux.gateway.quoting import rag_quote, with_quote
from loramux.gateway.requests import ChatInput, CompletionInput, SamplingInput
from loramux.gateway.tools import ToolsInput, render, reply_format
from loramux.gateway.tools import check as check_tools
from loramux.keys.ratelimit import TokenCharge, estimate_prompt_tokens, estimate_tokens
from loramux.serve.engine import Engine
from loramux.serve.types import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    TokenLogprob,
)
from loramux.types import ChatMessage

if TYPE_CHECKING:
    from loramux.gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)


@dataclass
class PreparedRequest:
    """A request ready for the engine, with what the response must say about it."""

    generation: GenerationRequest
    model: str
    """The `model` echoed in the response (what the client asked for)."""
    dispatch: Dispatch | None
    """Who answers (None for raw completions of the base model)."""
    charge: TokenCharge | None = None
    """Tokens charged to the caller's per-minute limit; settled when the request ends."""
    adapter_load_s: float | None = None
    """Set at the first chunk: seconds the request waited for its adapter to load (cold)."""
    key_id: str | None = None
    """The caller's key id (`admin:<label>`, `anonymous`): kept with the request's record (only
    that key may rate it) and in the decision log."""
    ticket: Ticket = field(default_factory=Ticket)
    """Whom admission's fair share counts it for (tenant, weight, prompt estimate)."""
    tools: ToolsInput | None = None
    """The request's tools: how its reply becomes `tool_calls` (None: it sent none)."""
    echo: str | None = None
    """Completions with `echo`: the prompt, put in front of the text."""
    siblings: list[PreparedRequest] = field(default_factory=list)
    """Choices 1 .. n-1 of a request with `n` > 1: each its own generation (and charge)."""

    def choices(self) -> list[PreparedRequest]:
        """Every choice of the request, this one first."""
        return [self, *self.siblings]

    def headers(self) -> dict[str, str]:
        headers = (
            {"x-loramux-adapter": "base"} if self.dispatch is None else self.dispatch.headers()
        )
        if self.adapter_load_s is not None:
            headers["x-loramux-adapter-load-ms"] = f"{1000 * self.adapter_load_s:.1f}"
        return headers

    def extra_fields(self) -> dict[str, Any]:
        """Non-OpenAI fields added to the response body: the RAG sources."""
        if self.dispatch is None or not self.dispatch.sources:
            return {}
        return {"sources": [s.to_dict() for s in self.dispatch.sources]}


class ChatService:
    def __init__(
        self,
        config: LoramuxConfig,
        engine: Engine,
        dispatcher: Dispatcher,
        gate: Gate | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.dispatcher = dispatcher
        self.gate = gate
        """Charges callers' tokens per minute (`auth`); None: no token limits."""
        self.metrics = metrics
        """Counts each finished request (Prometheus, dashboard); None: not counted."""
        self.admission = AdmissionQueue.from_settings(config.limits, config.engine.max_batch_size)
        """Generation slots and the bounded queue in front of the engine."""
        self.decisions = DecisionLog.from_settings(config.decisions, config.paths.data_dir)
        """One JSON line per finished generation (`decisions`); None: not written."""

    async def prepare_chat(
        self,
        body: ChatInput,
        request_id: str,
        *,
        user: str | None = None,
        caller: Caller = ANONYMOUS,
    ) -> PreparedRequest:
        """Check a chat request, charge its tokens to the caller, decide who answers it.

        Raises:
            ModelNotFoundError: unknown model.
            InvalidRequestError: limits or message structure.
            PermissionDeniedError: the caller may not use the model.
            RateLimitError: the caller is over its tokens per minute.
        """
        messages = body.messages
        check_tools(body.tools or ToolsInput(), messages)
        check_messages(messages, self.config.limits)
        sampling = replace(
            self._sampling(body.sampling), structured=reply_format(body.tools, body.response_format)
        ).normalized()
        charge = self._charge(caller, sum(len(m.content) for m in messages), sampling.max_tokens)
        dispatch = await self._dispatch(body.model, messages, body.user or user, caller, charge)
        forced = body.tools is not None and body.tools.forced  # the reply is a call, not JSON
        instruction = None if forced else body.format_instruction
        rendered = render(dispatch.messages, body.tools, instruction)
        generation = GenerationRequest(
            request_id=request_id,
            sampling=sampling,
            messages=rendered,
            adapter=dispatch.assignment.version.ref() if dispatch.assignment else None,
        )
        chars = sum(len(m.content) for m in rendered)
        prepared = PreparedRequest(
            generation,
            body.model,
            dispatch,
            charge,
            key_id=caller.id,
            ticket=self._ticket(caller, chars),
            tools=body.tools,
        )
        return self._fan_out(prepared, body.sampling.n, caller, chars)

    def _fan_out(
        self, prepared: PreparedRequest, n: int, caller: Caller, chars: int
    ) -> PreparedRequest:
        """Add choices 1 .. n-1 as siblings: the same dispatch, their own request ids, seeds
        (seed + i, so a seeded request repeats) and token charges.

        Raises:
            RateLimitError: the caller's tokens per minute do not cover every choice (nothing
                stays charged).
        """
        base = prepared.generation
        try:
            for i in range(1, n):
                seed = base.sampling.seed
                if seed is not None:
                    seed = (seed + i + 2**63) % 2**64 - 2**63  # stays a signed 64-bit integer
                generation = replace(
                    base,
                    request_id=f"{base.request_id}-{i}",
                    sampling=replace(base.sampling, seed=seed),
                )
                charge = self._charge(caller, chars, base.sampling.max_tokens)
                prepared.siblings.append(
                    replace(
                        prepared,
                        generation=generation,
                        charge=charge,
                        ticket=self._ticket(caller, chars),
                        siblings=[],
                    )
                )
        except BaseException:
            for choice in prepared.choices():
                if choice.charge is not None:
                    choice.charge.settle(0)
            raise
        return prepared

    async def prepare_completion(
        self,
        body: CompletionInput,
        request_id: str,
        *,
        user: str | None = None,
        caller: Caller = ANONYMOUS,
    ) -> PreparedRequest:
        """Check a completions request and resolve its model (raises as `prepare_chat`).

        `auto` is not accepted here: routing needs a conversation.
        """
        prompt = body.prompt
        if not prompt:
            raise InvalidRequestError("prompt must not be empty", param="prompt")
        check_prompt(prompt, self.config.limits)
        sampling = self._sampling(body.sampling)
        if body.model == "auto":
            raise InvalidRequestError(
                "model `auto` routes chat conversations; use /v1/chat/completions, or name a "
                "model here",
                param="model",
            )
        charge = self._charge(caller, len(prompt), sampling.max_tokens)
        dispatch = await self._dispatch(body.model, (), body.user or user, caller, charge)
        generation = GenerationRequest(
            request_id=request_id,
            sampling=sampling,
            prompt=prompt,
            adapter=dispatch.assignment.version.ref() if dispatch.assignment else None,
        )
        prepared = PreparedRequest(
            generation,
            body.model,
            dispatch,
            charge,
            key_id=caller.id,
            ticket=self._ticket(caller, len(prompt)),
            echo=prompt if body.echo else None,
        )
        return self._fan_out(prepared, body.sampling.n, caller, len(prompt))

    @staticmethod
    def _ticket(caller: Caller, prompt_chars: int) -> Ticket:
        return Ticket(caller.tenant, caller.weight, estimate_prompt_tokens(prompt_chars))

    async def _dispatch(
        self,
        model: str,
        messages: tuple[ChatMessage, ...],
        user: str | None,
        caller: Caller,
        charge: TokenCharge | None,
    ) -> Dispatch:
        """Who answers, within what the caller may use; a refusal gives the charge back."""
        try:
            return await self.dispatcher.dispatch(
                model, messages, user=user or caller.user, access=caller.access
            )
        except BaseException:
            if charge is not None:
                charge.settle(0)
            raise

    def _charge(
        self, caller: Caller, prompt_chars: int, max_tokens: int | None
    ) -> TokenCharge | None:
        """Charge an estimate of a request's tokens to the caller (settled in `_record`)."""
        if self.gate is None:
            return None
        most = max_tokens or self.config.engine.default_max_tokens
        return self.gate.charge_tokens(caller, estimate_tokens(prompt_chars, most))

    def _sampling(self, body: SamplingInput) -> SamplingParams:
        """The request's sampling with the server's defaults filled in, greedy normalised to
        temperature 0 (`SamplingParams.normalized`); raises over limits."""
        max_tokens = body.max_tokens
        limit = self.config.engine.max_new_tokens
        if max_tokens is not None and max_tokens > limit:
            raise InvalidRequestError(
                f"max_tokens is {max_tokens}, over this server's limit of {limit}; "
                f"ask for at most {limit}",
                param="max_tokens",
            )
        e = self.config.engine
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=e.default_temperature if body.temperature is None else body.temperature,
            top_p=e.default_top_p if body.top_p is None else body.top_p,
            stop=body.stop,
            seed=body.seed,
            logprobs=body.logprobs,
        ).normalized()

    async def complete(self, prepared: PreparedRequest) -> GenerationResult:
        """Generate the whole answer (one choice)."""
        parts: list[str] = []
        logprobs: list[TokenLogprob] | None = None
        last: GenerationChunk | None = None
        async for chunk in await self.stream(prepared, buffered=True):
            parts.append(chunk.text)
            if chunk.logprobs is not None:
                logprobs = [*(logprobs or []), *chunk.logprobs]
            last = chunk
        assert last is not None
        return GenerationResult(
            text="".join(parts),
            finish_reason=last.finish_reason or FinishReason.STOP,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            logprobs=logprobs,
        )

    async def complete_all(self, prepared: PreparedRequest) -> list[GenerationResult]:
        """Every choice of the request, generated side by side (batched by the engine); one
        that fails cancels the others."""
        choices = prepared.choices()
        if len(choices) == 1:
            return [await self.complete(prepared)]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.complete(c)) for c in choices]
        return [t.result() for t in tasks]

    async def stream_all(self, prepared: PreparedRequest) -> list[AsyncIterator[GenerationChunk]]:
        """`stream` for every choice; if one is refused, those started are closed."""
        started: list[AsyncIterator[GenerationChunk]] = []
        try:
            for choice in prepared.choices():
                started.append(await self.stream(choice))
        except BaseException:
            for chunks in started:
                await chunks.aclose()  # type: ignore[attr-defined]
            raise
        return started

    async def stream(
        self, prepared: PreparedRequest, *, buffered: bool = False
    ) -> AsyncIterator[GenerationChunk]:
        """Start generating; input errors are raised here, before any response is sent, and so
        are a full queue (503) and a timeout before the first chunk (504). `buffered`: the
        caller collects the whole answer first (see `GenerationRequest.buffered`)."""
        started = time.perf_counter()
        generation = prepared.generation
        if buffered:
            generation = replace(generation, buffered=True)
        chunks = admitted_stream(
            self.admission,
            lambda: self.engine.stream(generation),
            timeout_s=self.config.limits.request_timeout_s,
            ticket=prepared.ticket,
        )
        try:
            first = await anext(chunks)
        except BaseException as exc:
            # Admitted, its prompt reached the engine: charged, even if nothing came back (but
            # not when the engine refused it as invalid, a 4xx).
            refused = is_client_error(exc)
            charged = None
            if prepared.ticket.admitted and not refused:
                charged = GenerationChunk("", prompt_tokens=prepared.ticket.cost)
            self._record(
                prepared,
                started,
                None,
                charged,
                error=isinstance(exc, Exception),
                client_error=refused,
            )
            raise
        prepared.adapter_load_s = first.adapter_load_s
        return self._tracked(prepared, first, chunks, started, time.perf_counter())

    async def _tracked(
        self,
        prepared: PreparedRequest,
        first: GenerationChunk,
        rest: AsyncIterator[GenerationChunk],
        started: float,
        first_at: float,
    ) -> AsyncIterator[GenerationChunk]:
        last = first
        texts = 1 if first.text else 0
        error = client_error = False
        quote = rag_quote(prepared.dispatch, prepared.generation.sampling, prepared.tools)
        try:
            yield with_quote(first, quote)
            if first.finish_reason is None:
                async for chunk in rest:
                    last = chunk
                    texts += 1 if chunk.text else 0
                    yield with_quote(chunk, quote)
        except Exception as exc:
            error, client_error = True, is_client_error(exc)
            raise
        finally:
            await rest.aclose()  # type: ignore[attr-defined]
            if last.finish_reason is None:  # cut short: charge what was generated so far
                last = GenerationChunk(
                    "",
                    prompt_tokens=last.prompt_tokens or prepared.ticket.cost,
                    completion_tokens=max(last.completion_tokens, texts),
                )
            self._record(prepared, started, first_at, last, error=error, client_error=client_error)

    def _record(
        self,
        prepared: PreparedRequest,
        started: float,
        first_at: float | None,
        last: GenerationChunk | None,
        *,
        error: bool,
        client_error: bool = False,
    ) -> None:
        """Settle the caller's token charge to what `last` counts, log the request and count
        it for its adapter version's experiment.

        A client that disconnects early is not an error of the version, and neither is a request
        the engine refused because of the request itself (`client_error`: a 4xx such as a prompt
        over the context length): it is logged and counted as a client error, and left out of
        the version's experiment (requests, errors, latency) and of `loramux_ab_errors_total`.
        """
        now = time.perf_counter()
        prompt_tokens = last.prompt_tokens if last else 0
        completion_tokens = last.completion_tokens if last else 0
        if prepared.charge is not None:
            prepared.charge.settle(prompt_tokens + completion_tokens)
        dispatch = prepared.dispatch
        assignment = dispatch.assignment if dispatch else None
        logger.info(
            "request %s model=%s route=%s target=%s adapter=%s prompt_tokens=%d "
            "completion_tokens=%d ttft_ms=%s ms=%.1f%s%s",
            prepared.generation.request_id,
            prepared.model,
            (dispatch.decision.route if dispatch else None) or "-",
            dispatch.decision.target.value if dispatch else "base",
            assignment.version.key if assignment else "base",
            prompt_tokens,
            completion_tokens,
            f"{1000 * (first_at - started):.1f}" if first_at else "-",
            1000 * (now - started),
            f" adapter_load_ms={1000 * prepared.adapter_load_s:.1f}"
            if prepared.adapter_load_s is not None
            else "",
            (" client_error" if client_error else " error") if error else "",
        )
        if self.metrics is not None:
            self.metrics.observe_request(
                prepared,
                ttft_s=(first_at - started) if first_at else None,
                total_s=now - started,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                error=error and not client_error,
                client_error=error and client_error,
            )
        if self.decisions is not None:
            outcome = "client_error" if error and client_error else "error" if error else "ok"
            if not error and (last is None or last.finish_reason is None):
                outcome = "cancelled"
            self.decisions.write(
                decision_record(
                    prepared,
                    ttft_s=(first_at - started) if first_at else None,
                    total_s=now - started,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    outcome=outcome,
                    keep_text=self.config.dashboard.show_texts,
                )
            )
        if assignment is not None and not (error and client_error):
            self.dispatcher.registry.experiments.record(
                prepared.generation.request_id,
                assignment,
                ttft_s=(first_at - started) if first_at else None,
                total_s=now - started,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                error=error,
                key_id=prepared.key_id,
            )


def is_client_error(exc: BaseException) -> bool:
    """True when a failed generation was the request's fault (a 4xx `LoramuxError`: context too
    long, bad parameters), not the engine's or the server's."""
    return isinstance(exc, LoramuxError) and 400 <= exc.status < 500
