"""`POST /v1/embeddings`: vectors from the gateway's loaded embedder (all-MiniLM-L6-v2 by
default), in OpenAI's shape.

The embedder is the one the router and the knowledge base use; its id is listed in
`/v1/models`. A key may use it when it may use the base model (`--base`); its tokens count
against the key's tokens per minute. Texts are encoded in small batches so a large request
takes turns with the router's encodings instead of holding the encoder for its whole length.
A text longer than the embedder reads (256 tokens for MiniLM) is refused, never cut silently.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends

from loramux.api import protocol, replies
from loramux.api.access import MeteredCaller
from loramux.api.routes.openai import embedder_id
from loramux.api.state import services
from loramux.errors import InvalidRequestError, ModelNotFoundError, PermissionDeniedError
from loramux.gateway.services import AppServices

router = APIRouter(prefix="/v1", tags=["openai"])

BATCH = 16
"""Texts per encoder call: between two calls the router may encode a routing request."""


@router.post("/embeddings")
async def embeddings(
    body: protocol.EmbeddingRequest,
    svc: Annotated[AppServices, Depends(services)],
    caller: MeteredCaller,
) -> dict[str, Any]:
    """One vector per input text (unit length, float32), with the tokens they took."""
    encoder = svc.encoder
    if encoder is None:
        raise ModelNotFoundError(
            "this server has no embedder loaded (it loads one with a router or a knowledge base)",
            param="model",
        )
    model = embedder_id(svc)
    if body.model != model:
        raise ModelNotFoundError(
            f"model {body.model!r} is not an embedding model on this server; use {model!r}",
            param="model",
        )
    if not caller.access.base:
        raise PermissionDeniedError(
            f"this API key may not use the embedder {model!r} (embeddings need a key with "
            f"the base model, `--base`); it may use: {caller.access.describe()}",
            param="model",
        )
    if body.user is not None:
        raise InvalidRequestError(
            "`user` is not supported on /v1/embeddings (an embedding has no adapter version to "
            "assign per user); leave it out",
            param="user",
        )
    texts = body.texts()
    limit = svc.config.limits.max_embedding_inputs
    if len(texts) > limit:
        raise InvalidRequestError(
            f"the request has {len(texts)} inputs, over this server's limit of {limit}; split it",
            param="input",
        )
    if body.dimensions is not None and body.dimensions != encoder.dim:
        raise InvalidRequestError(
            f"{model} makes {encoder.dim}-dimensional vectors and cannot shorten them; leave "
            f"dimensions out or send {encoder.dim}",
            param="dimensions",
        )
    counts = await asyncio.to_thread(_token_counts, encoder, texts, svc.config.limits)
    if svc.gate is not None:
        charge = svc.gate.charge_tokens(caller, sum(counts))
        if charge is not None:
            charge.settle(sum(counts))
    parts = []
    for start in range(0, len(texts), BATCH):
        parts.append(await asyncio.to_thread(encoder.encode, texts[start : start + BATCH]))
    vectors = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)
    return replies.embeddings(model, vectors, sum(counts), base64=body.encoding_format == "base64")


def _token_counts(encoder: Any, texts: list[str], limits: Any) -> list[int]:
    """Each text's tokens; raises on empty texts and texts the embedder would cut."""
    for i, text in enumerate(texts):
        if not text:
            raise InvalidRequestError(f"input {i} is empty", param=f"input.{i}")
        if len(text) > limits.max_message_chars:
            raise InvalidRequestError(
                f"input {i} has {len(text)} characters, over this server's limit of "
                f"{limits.max_message_chars}",
                param=f"input.{i}",
            )
    counter = getattr(encoder, "count_tokens", None)
    if counter is None:  # an encoder without a tokenizer of its own: count words
        return [len(t.split()) + 2 for t in texts]
    counts: list[int] = counter(texts)
    most = getattr(encoder, "max_tokens", None)
    for i, n in enumerate(counts):
        if most is not None and n > most:
            raise InvalidRequestError(
                f"input {i} has {n} tokens, over the {most} the embedder reads; shorten or "
                "split it",
                param=f"input.{i}",
            )
    return counts
