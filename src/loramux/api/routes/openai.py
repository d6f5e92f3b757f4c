"""OpenAI-compatible endpoints: chat completions, completions, models.

Each needs an API key (or the admin key) unless auth is off; `/v1/models` lists only what the
key may use.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from loramux.api import protocol
from loramux.api.access import CallerDep, MeteredCaller
from loramux.api.errors import error_body
from loramux.api.state import request_id, services
from loramux.errors import EngineError, LoramuxError
from loramux.gateway.dispatch import AUTO_MODEL
from loramux.gateway.service import PreparedRequest
from loramux.gateway.services import AppServices
from loramux.serve.types import GenerationChunk, GenerationResult

router = APIRouter(prefix="/v1", tags=["openai"])

Services = Annotated[AppServices, Depends(services)]
RequestId = Annotated[str, Depends(request_id)]
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: protocol.ChatCompletionRequest, svc: Services, rid: RequestId, caller: MeteredCaller
) -> JSONResponse | StreamingResponse:
    protocol.log_unknown_fields(body, rid)
    prepared = await svc.chat.prepare_chat(body.to_input(), rid, caller=caller)
    return await _respond(svc, prepared, body, _chat_events, _chat_body)


@router.post("/completions", response_model=None)
async def completions(
    body: protocol.CompletionRequest, svc: Services, rid: RequestId, caller: MeteredCaller
) -> JSONResponse | StreamingResponse:
    protocol.log_unknown_fields(body, rid)
    prepared = await svc.chat.prepare_completion(body.to_input(), rid, caller=caller)
    return await _respond(svc, prepared, body, _completion_events, _completion_body)


EventsFn = Callable[[PreparedRequest, AsyncIterator[GenerationChunk], bool], AsyncIterator[str]]
BodyFn = Callable[[PreparedRequest, GenerationResult], dict[str, Any]]


async def _respond(
    svc: AppServices,
    prepared: PreparedRequest,
    body: protocol.ChatCompletionRequest | protocol.CompletionRequest,
    events: EventsFn,
    make_body: BodyFn,
) -> JSONResponse | StreamingResponse:
    """An SSE stream when the request asks for one, else the whole answer as JSON."""
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = await svc.chat.stream(prepared)
        return StreamingResponse(
            events(prepared, chunks, include_usage),
            media_type="text/event-stream",
            headers={**prepared.headers(), **SSE_HEADERS},
        )
    result = await svc.chat.complete(prepared)
    return JSONResponse(make_body(prepared, result), headers=prepared.headers())


def _chat_body(prepared: PreparedRequest, result: GenerationResult) -> dict[str, Any]:
    return {
        **protocol.chat_completion(
            prepared.generation.request_id,
            prepared.model,
            result.text,
            result.finish_reason.value,
            result.prompt_tokens,
            result.completion_tokens,
        ),
        **prepared.extra_fields(),
    }


def _completion_body(prepared: PreparedRequest, result: GenerationResult) -> dict[str, Any]:
    return protocol.text_completion(
        prepared.generation.request_id,
        prepared.model,
        result.text,
        result.finish_reason.value,
        protocol.usage(result.prompt_tokens, result.completion_tokens),
    )


@router.get("/models")
async def list_models(svc: Services, caller: CallerDep) -> dict[str, Any]:
    """The base model, `auto` and the served adapters: those the caller's key may use."""
    created = int(svc.started_at)
    base = svc.config.model.id
    access = caller.access
    data = [protocol.model_card(base, parent=None, created=created)] if access.base else []
    data.append(
        protocol.model_card(
            AUTO_MODEL,
            parent=None,
            created=created,
            description="loramux chooses: a department's adapter, a RAG answer, or the base model",
        )
    )
    for version in svc.registry.served_versions():
        if not access.may_use_adapter(version.name):
            continue
        data.append(
            protocol.model_card(
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


async def _chat_events(
    prepared: PreparedRequest, chunks: AsyncIterator[GenerationChunk], include_usage: bool
) -> AsyncIterator[str]:
    rid, model = prepared.generation.request_id, prepared.model
    yield _sse(
        {
            **protocol.chat_chunk(rid, model, {"role": "assistant", "content": ""}),
            **prepared.extra_fields(),
        }
    )
    async for chunk, error in _guarded(chunks):
        if error is not None:
            yield _sse(error)
            break
        assert chunk is not None
        if chunk.text:
            yield _sse(protocol.chat_chunk(rid, model, {"content": chunk.text}))
        if chunk.finish_reason is not None:
            yield _sse(protocol.chat_chunk(rid, model, {}, finish=chunk.finish_reason.value))
            if include_usage:
                counts = protocol.usage(chunk.prompt_tokens, chunk.completion_tokens)
                yield _sse(protocol.chat_chunk(rid, model, {}, usage_counts=counts))
    yield "data: [DONE]\n\n"


async def _completion_events(
    prepared: PreparedRequest, chunks: AsyncIterator[GenerationChunk], include_usage: bool
) -> AsyncIterator[str]:
    rid, model = prepared.generation.request_id, prepared.model
    async for chunk, error in _guarded(chunks):
        if error is not None:
            yield _sse(error)
            break
        assert chunk is not None
        if chunk.text:
            yield _sse(protocol.text_completion(rid, model, chunk.text, None))
        if chunk.finish_reason is not None:
            counts = protocol.usage(chunk.prompt_tokens, chunk.completion_tokens)
            finish = chunk.finish_reason.value
            yield _sse(
                protocol.text_completion(rid, model, "", finish, counts if include_usage else None)
            )
    yield "data: [DONE]\n\n"
