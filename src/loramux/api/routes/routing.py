"""`POST /v1/route`: the routing decision for a conversation, without generating."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field

from loramux.api.access import MeteredCaller
from loramux.api.protocol import ChatMessageIn, _Strict, to_chat_messages
from loramux.api.state import services
from loramux.gateway.dispatch import AUTO_MODEL
from loramux.gateway.limits import check_messages
from loramux.gateway.services import AppServices

router = APIRouter(prefix="/v1", tags=["routing"])


class RouteRequest(_Strict):
    messages: list[ChatMessageIn] = Field(min_length=1)
    """The conversation; the last user turn is routed, earlier user turns are its history."""
    model: str = AUTO_MODEL
    """`auto` to ask the router; any other model shows how that name resolves."""
    user: str | None = Field(default=None, max_length=256)
    """Who asks, for the sticky A/B version assignment."""


@router.post("/route")
async def route(
    body: RouteRequest, svc: Annotated[AppServices, Depends(services)], caller: MeteredCaller
) -> dict[str, Any]:
    """Which route, target, adapter version (and RAG sources) a chat request would get, within
    what the caller's API key may use."""
    messages = to_chat_messages(body.messages)
    check_messages(messages, svc.config.limits)
    dispatch = await svc.dispatcher.dispatch(
        body.model, messages, user=body.user or caller.user, access=caller.access
    )
    assignment = dispatch.assignment
    return {
        **dispatch.decision.to_dict(),
        "adapter_version": assignment.version.version if assignment else None,
        "experiment": assignment.experiment_id if assignment and not assignment.pinned else None,
        "sources": [s.to_dict() for s in dispatch.sources],
    }
