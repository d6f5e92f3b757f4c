"""The quoted sentence that ends a RAG answer (`kb.quote`, picked by `rag.quote` at dispatch):
when it is added, and how it joins the model's last chunk."""

from __future__ import annotations

from dataclasses import replace

from loramux.gateway.dispatch import Dispatch
from loramux.gateway.tools import ToolsInput
from loramux.serve.types import GenerationChunk, SamplingParams


def rag_quote(
    dispatch: Dispatch | None, sampling: SamplingParams, tools: ToolsInput | None
) -> str | None:
    """The quote that ends this answer, unless the reply is JSON, tool calls or token
    logprobs, which text added after the model's would break."""
    if dispatch is None or dispatch.quote is None:
        return None
    if sampling.structured is not None or sampling.logprobs is not None:
        return None
    if tools is not None and tools.active:
        return None
    return dispatch.quote


def with_quote(chunk: GenerationChunk, quote: str | None) -> GenerationChunk:
    """The last chunk of a RAG answer carries its quote after the model's text."""
    if quote is None or chunk.finish_reason is None:
        return chunk
    return replace(chunk, text=f"{chunk.text}\n\n{quote}")
