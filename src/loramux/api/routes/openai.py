"""OpenAI-compatible endpoints: chat completions, completions, models.

Each needs an API key (or the admin key) unless auth is off; `/v1/models` lists only what the
key may use. A request's `n` choices (and a completions request's list of prompts) are separate
generations the engine batches together; their chunks are interleaved in one stream, each with
its `index`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from loramux.api import protocol, replies
from loramux.api.access import CallerDep, MeteredCaller
from loramux.api.errors import error_body
from loramux.api.state import request_id, services
from loramux.errors import EngineError, LoramuxError
from loramux.gateway.dispatch import AUTO_MODEL
from loramux.gateway.service import PreparedRequest
from loramux.gateway.services import AppServices
from loramux.gateway.tools import ToolStream, parse_auto, parse_forced
from loramux.serve.types import FinishReason, GenerationChunk, GenerationResult

router = APIRouter(prefix="/v1", tags=["openai"])

Services = Annotated[AppServices, Depends(services)]
RequestId = Annotated[str, Depends(request_id)]
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: protocol.ChatCompletionRequest, svc: Services, rid: RequestId, caller: MeteredCaller
) -> JSONResponse | StreamingResponse:
    prepared = await svc.chat.prepare_chat(body.to_input(), rid, caller=caller)
    if body.stream:
        streams = await svc.chat.stream_all(prepared)
        return StreamingResponse(
            _chat_events(prepared, streams, body.include_usage),
            media_type="text/event-stream",
            headers={**prepared.headers(), **SSE_HEADERS},
        )
    results = await svc.chat.complete_all(prepared)
    choices = [_chat_choice(i, prepared, r) for i, r in enumerate(results)]
    return JSONResponse(
        {
            **replies.chat_completion(rid, prepared.model, choices, _usage(results)),
            **prepared.extra_fields(),
        },
        headers=prepared.headers(),
    )


@router.post("/completions", response_model=None)
async def completions(
    body: protocol.CompletionRequest, svc: Services, rid: RequestId, caller: MeteredCaller
) -> JSONResponse | StreamingResponse:
    prompts: list[PreparedRequest] = []
    try:
        for j, one in enumerate(body.to_inputs()):
            prompt_rid = rid if j == 0 else f"{rid}-p{j}"
            prompts.append(await svc.chat.prepare_completion(one, prompt_rid, caller=caller))
    except BaseException:
        for prepared in prompts:  # give back what the prompts prepared so far were charged
            for choice in prepared.choices():
                if choice.charge is not None:
                    choice.charge.settle(0)
        raise
    first = prompts[0]
    if body.stream:
        streams: list[AsyncIterator[GenerationChunk]] = []
        try:
            for prepared in prompts:
                streams.extend(await svc.chat.stream_all(prepared))
        except BaseException:
            for chunks in streams:
                await chunks.aclose()  # type: ignore[attr-defined]
            raise
        echoes = [p.echo for p in prompts for _ in p.choices()]
        prompt_of = [j for j, p in enumerate(prompts) for _ in p.choices()]
        return StreamingResponse(
            _completion_events(rid, first.model, streams, echoes, prompt_of, body.include_usage),
            media_type="text/event-stream",
            headers={**first.headers(), **SSE_HEADERS},
        )
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(svc.chat.complete_all(p)) for p in prompts]
    per_prompt = [t.result() for t in tasks]
    choices: list[dict[str, Any]] = []
    results: list[GenerationResult] = []
    for prepared, outcome in zip(prompts, per_prompt, strict=True):
        for result in outcome:
            echo = prepared.echo or ""
            choices.append(
                replies.text_choice(
                    len(choices),
                    echo + result.text,
                    result.finish_reason.value,
                    result.logprobs,
                    len(echo),
                )
            )
            results.append(result)
    counts = replies.usage(
        sum(r[0].prompt_tokens for r in per_prompt), sum(r.completion_tokens for r in results)
    )
    return JSONResponse(
        replies.text_completion(rid, first.model, choices, counts), headers=first.headers()
    )


def _usage(results: Sequence[GenerationResult]) -> dict[str, int]:
    """One prompt, counted once; every choice's completion tokens."""
    return replies.usage(results[0].prompt_tokens, sum(r.completion_tokens for r in results))


def _chat_choice(index: int, prepared: PreparedRequest, result: GenerationResult) -> dict[str, Any]:
    """A finished choice: its text, or the tool calls it made (finish_reason `tool_calls`)."""
    finish = result.finish_reason.value
    tools = prepared.tools
    content: str | None = result.text
    calls = []
    if tools is not None and tools.forced:
        calls = parse_forced(result.text, tools)
        content = None if calls else content  # the reply is the call: no content beside it
    elif tools is not None and tools.active:
        content, calls = parse_auto(result.text, tools)
    if calls:
        content = content or None
        if result.finish_reason is FinishReason.STOP:
            finish = "tool_calls"
    return replies.chat_choice(index, content, finish, calls=calls, logprobs=result.logprobs)


@router.get("/models")
async def list_models(svc: Services, caller: CallerDep) -> dict[str, Any]:
    """The base model, `auto` and the served adapters: those the caller's key may use."""
    created = int(svc.started_at)
    base = svc.config.model.id
    access = caller.access
    data = [replies.model_card(base, parent=None, created=created)] if access.base else []
    data.append(
        replies.model_card(
            AUTO_MODEL,
            parent=None,
            created=created,
            description="loramux chooses: a department's adapter, a RAG answer, or the base model",
        )
    )
    if svc.encoder is not None and access.base:
        data.append(
            replies.model_card(
                embedder_id(svc),
                parent=None,
                created=created,
                description="the embedder, for /v1/embeddings",
            )
        )
    for version in svc.registry.served_versions():
        if not access.may_use_adapter(version.name):
            continue
        data.append(
            replies.model_card(
                version.name,
                parent=base,
                created=created,
                version=version.version,
                description=version.description,
            )
        )
    return {"object": "list", "data": data}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def _guarded(
    chunks: AsyncIterator[GenerationChunk],
) -> AsyncIterator[tuple[GenerationChunk | None, dict[str, Any] | None]]:
    """Yield (chunk, None), or once (None, error body) when the engine fails mid-stream.

    The status line is already sent by then, so the failure travels as an SSE error event.
    """
    try:
        async for chunk in chunks:
            yield chunk, None
    except LoramuxError as exc:
        yield None, error_body(exc.message, exc.type, param=exc.param, code=exc.code)
    except Exception as exc:  # noqa: BLE001 - the client gets an error event, the log the trace
        wrapped = EngineError(f"generation failed mid-stream ({type(exc).__name__})")
        yield None, error_body(wrapped.message, wrapped.type, code=wrapped.code)


async def _merged(
    streams: Sequence[AsyncIterator[GenerationChunk]],
) -> AsyncIterator[tuple[int, GenerationChunk | None, dict[str, Any] | None]]:
    """Interleave the choices' streams as their chunks come: (index, chunk, None), or once
    (index, None, error body) when a choice fails (the stream then ends)."""
    if len(streams) == 1:
        async for chunk, error in _guarded(streams[0]):
            yield 0, chunk, error
        return
    queue: asyncio.Queue[tuple[int, GenerationChunk | None, dict[str, Any] | None] | None] = (
        asyncio.Queue()
    )

    async def pump(index: int, chunks: AsyncIterator[GenerationChunk]) -> None:
        try:
            async for chunk, error in _guarded(chunks):
                await queue.put((index, chunk, error))
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    running = len(tasks)
    try:
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
                continue
            yield item
            if item[2] is not None:
                return
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for chunks in streams:
            await chunks.aclose()  # type: ignore[attr-defined]


async def _chat_events(
    prepared: PreparedRequest,
    streams: Sequence[AsyncIterator[GenerationChunk]],
    include_usage: bool,
) -> AsyncIterator[str]:
    rid, model = prepared.generation.request_id, prepared.model
    tools = prepared.tools
    parsers = [ToolStream(tools) if tools is not None and tools.active else None for _ in streams]
    for i in range(len(streams)):
        yield _sse(
            {
                **replies.chat_chunk(rid, model, {"role": "assistant", "content": ""}, index=i),
                **(prepared.extra_fields() if i == 0 else {}),
            }
        )
    prompt_tokens, completion = 0, [0] * len(streams)
    async for i, chunk, error in _merged(streams):
        if error is not None:
            yield _sse(error)
            break
        assert chunk is not None
        parser = parsers[i]
        deltas: list[dict[str, Any]] = (
            _deltas(parser.feed(chunk.text))
            if parser
            else ([{"content": chunk.text}] if chunk.text else [])
        )
        if chunk.finish_reason is not None and parser is not None:
            deltas += _deltas(parser.finish())
        logprobs = chunk.logprobs
        if logprobs and not deltas:
            deltas = [{}]
        for k, delta in enumerate(deltas):
            yield _sse(
                replies.chat_chunk(
                    rid, model, delta, index=i, logprobs=logprobs if k == 0 else None
                )
            )
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason.value
            if parser is not None and parser.called and chunk.finish_reason is FinishReason.STOP:
                finish = "tool_calls"
            yield _sse(replies.chat_chunk(rid, model, {}, finish=finish, index=i))
            prompt_tokens, completion[i] = chunk.prompt_tokens, chunk.completion_tokens
    else:
        if include_usage:
            counts = replies.usage(prompt_tokens, sum(completion))
            yield _sse(replies.chat_chunk(rid, model, {}, usage_counts=counts))
    yield "data: [DONE]\n\n"


def _deltas(events: Sequence[Any]) -> list[dict[str, Any]]:
    """`ToolStream` events as chat deltas."""
    out: list[dict[str, Any]] = []
    for event in events:
        if event.call_index is None:
            if event.content:
                out.append({"content": event.content})
            continue
        entry: dict[str, Any] = {"index": event.call_index}
        if event.call is not None:
            entry.update(id=event.call.id, type="function")
            entry["function"] = {"name": event.call.name, "arguments": event.arguments}
        else:
            entry["function"] = {"arguments": event.arguments}
        out.append({"tool_calls": [entry]})
    return out


async def _completion_events(
    rid: str,
    model: str,
    streams: Sequence[AsyncIterator[GenerationChunk]],
    echoes: Sequence[str | None],
    prompt_of: Sequence[int],
    include_usage: bool,
) -> AsyncIterator[str]:
    """Chunks of every choice of every prompt; `prompt_of[i]`: which prompt choice i is of
    (its prompt tokens are counted once in the usage)."""
    for i, echo in enumerate(echoes):
        if echo:
            yield _sse(replies.text_completion(rid, model, [replies.text_choice(i, echo, None)]))
    prompt_tokens, completion = [0] * len(streams), [0] * len(streams)
    async for i, chunk, error in _merged(streams):
        if error is not None:
            yield _sse(error)
            break
        assert chunk is not None
        if chunk.text or chunk.logprobs:
            choice = replies.text_choice(i, chunk.text, None, chunk.logprobs)
            yield _sse(replies.text_completion(rid, model, [choice]))
        if chunk.finish_reason is not None:
            prompt_tokens[i], completion[i] = chunk.prompt_tokens, chunk.completion_tokens
            choice = replies.text_choice(i, "", chunk.finish_reason.value)
            yield _sse(replies.text_completion(rid, model, [choice]))
    else:
        if include_usage:
            once = {prompt_of[i]: p for i, p in enumerate(prompt_tokens)}
            counts = replies.usage(sum(once.values()), sum(completion))
            yield _sse(replies.text_completion(rid, model, [], counts))
    yield "data: [DONE]\n\n"


def embedder_id(svc: AppServices) -> str:
    """The embedder's model id: its folder name (`all-MiniLM-L6-v2` by default)."""
    assert svc.encoder is not None
    found = getattr(svc.encoder, "model_id", None)
    return str(found) if found else svc.encoder.name
