"""Semantic router behaviour with the real MiniLM encoder, fitted on the demo calibration data."""

from __future__ import annotations

from typing import Any

import pytest

from loramux.config import RouteSpec
from loramux.router.decision import RouteTarget
from loramux.router.semantic import SemanticRouter, Thresholds
from tests.builders import small_routes


@pytest.mark.parametrize(
    ("text", "route"),
    [
        ("My laptop battery dies after an hour, can I get a replacement?", "it"),
        ("I forgot my login and now my account is locked.", "it"),
        ("How many days off do I get for my wedding?", "hr"),
        ("I'd like to reduce my working hours after my parental leave.", "hr"),
        ("I paid for a client dinner myself, how do I get the money back?", "finance"),
        ("When will my salary arrive this month?", "finance"),
    ],
)
def test_held_out_phrasings_route_to_their_department(demo_fit: Any, text: str, route: str) -> None:
    decision = demo_fit.router.route(text)
    assert decision.route == route, decision.reason
    assert decision.target is RouteTarget.ADAPTER
    assert decision.adapter == route
    assert decision.alternatives[0][0] == route


@pytest.mark.parametrize(
    "text",
    ["What's the capital of Peru?", "Write a haiku about the sea.", "How do I bake sourdough?"],
)
def test_unrelated_question_abstains_to_base(demo_fit: Any, text: str) -> None:
    decision = demo_fit.router.route(text)
    assert decision.abstained
    assert decision.target is RouteTarget.BASE
    assert decision.adapter is None


def test_ambiguous_followup_alone_abstains(demo_fit: Any) -> None:
    assert demo_fit.router.route("Can it be extended?").abstained


def test_followup_takes_the_conversation_route(demo_fit: Any) -> None:
    decision = demo_fit.router.route(
        "Can it be extended?", history=["How long is the probation period for new starters?"]
    )
    assert decision.route == "hr"
    assert "follow-up" in decision.reason


def test_allowed_excludes_routes(demo_fit: Any) -> None:
    text = "How many vacation days do I get per year?"
    assert demo_fit.router.route(text).route == "hr"
    restricted = demo_fit.router.route(text, allowed={"it", "finance"})
    assert restricted.route is None
    assert all(route != "hr" for route, _ in restricted.alternatives)
    assert demo_fit.router.route(text, allowed=set()).target is RouteTarget.BASE


def test_abstained_request_goes_to_rag_when_the_knowledge_base_matches(demo_fit: Any) -> None:
    router = demo_fit.router
    text = "Where do I pick up a visitor badge?"
    try:
        router.kb_probe = lambda query: 0.9
        close = router.route(text)
        router.kb_probe = lambda query: 0.1
        far = router.route(text)
    finally:
        router.kb_probe = None
    assert close.target is RouteTarget.RAG
    assert close.route is None
    assert far.target is RouteTarget.BASE


def test_route_batch_gives_the_same_decisions_as_route(demo_fit: Any) -> None:
    texts = ["When is payday?", "The wifi keeps dropping.", "Tell me a joke."]
    batch = demo_fit.router.route_batch(texts)
    assert [d.route for d in batch] == [demo_fit.router.route(t).route for t in texts]


def test_route_added_at_run_time_is_routed_and_removed_route_is_not(encoder: Any) -> None:
    router = SemanticRouter(encoder, small_routes(), thresholds=Thresholds(probability=0.5))
    question = "Can you check whether this NDA clause is enforceable?"
    assert router.route(question).route != "legal"
    router.add_routes(
        [
            RouteSpec(
                name="legal",
                utterances=[
                    "Can I sign this NDA?",
                    "Please review this contract clause.",
                    "Is this non-compete clause legal?",
                    "Who checks supplier contracts before signing?",
                ],
            )
        ]
    )
    assert router.route(question).route == "legal"
    router.remove_route("legal")
    assert "legal" not in router.routes
    assert router.route(question).route != "legal"


def test_route_with_base_target_sends_to_the_base_model(encoder: Any) -> None:
    routes = [
        *small_routes(),
        RouteSpec(
            name="chitchat",
            target="base",
            utterances=["Hi!", "Hello there", "How are you?", "Good morning!"],
        ),
    ]
    router = SemanticRouter(encoder, routes, thresholds=Thresholds(probability=0.4, margin=0.0))
    decision = router.route("Hello, how are you doing?")
    assert decision.route == "chitchat"
    assert decision.target is RouteTarget.BASE
    assert decision.adapter is None


def test_decision_to_dict_is_json_ready(demo_fit: Any) -> None:
    data = demo_fit.router.route("When is payday?").to_dict()
    assert data["target"] == "adapter"
    assert data["route"] == "finance"
    assert data["abstained"] is False
    assert isinstance(data["alternatives"][0]["score"], float)
