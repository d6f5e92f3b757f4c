"""`model: "auto"` end to end in the app: real MiniLM, fitted demo router, the demo handbook as
knowledge base, the real registry; generation by the fake engine (which echoes the last user
turn behind a tag naming the adapter, so the answer shows who was chosen)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from loramux.api import create_app
from loramux.config import load_config
from loramux.serve.fake import FakeEngine
from tests.builders import admin_key, write_lora_folder
from tests.conftest import REPO

pytestmark = pytest.mark.asyncio(loop_scope="module")

HR_Q = "How many vacation days do I get per year?"
IT_Q = "My laptop cannot connect to the VPN from home"
ADMIN_KEY = admin_key("test-admin")
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    tmp = tmp_path_factory.mktemp("routing")
    hr = write_lora_folder(tmp / "hr", seed=1)
    it = write_lora_folder(tmp / "it", seed=2)
    config_file = tmp / "loramux.yaml"
    config_file.write_text(
        f"paths: {{data_dir: {tmp / 'data'}}}\n"
        "engine: {kind: fake}\n"
        f"adapters:\n  hr: {{path: {hr}}}\n  it: {{path: {it}}}\n"
        f"router: {{routes: {REPO / 'configs/routes/demo.yaml'}, "
        f"fitted: {REPO / 'configs/routes/demo.fitted.yaml'}}}\n"
        f"kb: {{sources: [{REPO / 'demo/handbook'}], top_k: 2}}\n",
        encoding="utf-8",
    )
    app = create_app(
        load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY}), engine=FakeEngine()
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://loramux", headers=ADMIN
        ) as c:
            yield c


async def auto(client: httpx.AsyncClient, *turns: str, **extra: Any) -> httpx.Response:
    messages = []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return await client.post(
        "/v1/chat/completions", json={"model": "auto", "messages": messages, **extra}
    )


async def test_department_question_goes_to_its_adapter(client: httpx.AsyncClient) -> None:
    r = await auto(client, HR_Q)
    assert r.status_code == 200
    assert r.headers["x-loramux-route"] == "hr"
    assert r.headers["x-loramux-target"] == "adapter"
    assert r.headers["x-loramux-adapter"] == "hr"
    assert float(r.headers["x-loramux-score"]) > 0.5
    assert r.json()["choices"][0]["message"]["content"].startswith("[hr]")
    r = await auto(client, IT_Q)
    assert r.headers["x-loramux-adapter"] == "it"


async def test_handbook_question_gets_a_rag_answer_with_sources(client: httpx.AsyncClient) -> None:
    r = await auto(client, "When does the Brennsby canteen open?")
    assert r.headers["x-loramux-target"] == "rag"
    assert r.headers["x-loramux-adapter"] == "base"
    body = r.json()
    assert body["choices"][0]["message"]["content"].startswith("[base]")
    assert body["sources"][0]["source"].endswith("facilities-and-offices.md")
    assert "facilities-and-offices.md" in r.headers["x-loramux-sources"]


async def test_unrelated_question_goes_to_the_base_model(client: httpx.AsyncClient) -> None:
    r = await auto(client, "Give me a recipe for pancakes with blueberries")
    assert r.headers["x-loramux-target"] == "base"
    assert r.headers["x-loramux-route"] == "none"
    assert "sources" not in r.json()


async def test_route_of_an_adapter_that_is_not_served_is_never_taken(
    client: httpx.AsyncClient,
) -> None:
    # The demo routes include finance, but this server has no finance adapter.
    r = await auto(client, "When is payday this month and where do I find my payslip?")
    assert r.headers["x-loramux-adapter"] not in ("hr", "it")
    assert r.headers["x-loramux-route"] != "finance"


async def test_follow_up_takes_the_route_of_the_conversation(client: httpx.AsyncClient) -> None:
    alone = await client.post(
        "/v1/route", json={"messages": [{"role": "user", "content": "And what about next year?"}]}
    )
    assert alone.json()["target"] != "adapter"
    r = await auto(client, HR_Q, "You get 27 vacation days per year.", "And what about next year?")
    assert r.headers["x-loramux-route"] == "hr"


async def test_route_endpoint_decides_without_generating(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/route", json={"messages": [{"role": "user", "content": IT_Q}]})
    body = r.json()
    assert body["target"] == "adapter"
    assert body["route"] == "it"
    assert len(body["adapter_version"]) == 12
    assert body["alternatives"][0]["route"] == "it"
    assert "choices" not in body
    bad = await client.post("/v1/route", json={"messages": []})
    assert bad.status_code == 400


async def test_stream_carries_sources_in_the_first_chunk(client: httpx.AsyncClient) -> None:
    r = await auto(client, "Which app do I register trips abroad in?", stream=True)
    first = json.loads(r.text.split("\n\n")[0].removeprefix("data: "))
    assert first["sources"][0]["source"].endswith("travel-safety.md")


async def test_models_lists_auto(client: httpx.AsyncClient) -> None:
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert "auto" in ids


async def test_registered_adapter_utterances_join_the_router(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    folder = write_lora_folder(tmp_path / "legal", seed=3)
    question = "Can you review this supplier contract clause about liability caps?"
    before = await client.post(
        "/v1/route", json={"messages": [{"role": "user", "content": question}]}
    )
    assert before.json()["route"] != "legal"
    r = await client.post(
        "/v1/adapters",
        json={
            "name": "legal",
            "path": str(folder),
            "utterances": [
                "Please review this contract clause",
                "Is this NDA standard?",
                "What does the liability cap in our supplier contract mean?",
                "Who signs contracts with customers?",
                "Can legal check the terms and conditions of this agreement?",
            ],
        },
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert r.status_code == 201, r.text
    after = await client.post(
        "/v1/route", json={"messages": [{"role": "user", "content": question}]}
    )
    assert after.json()["route"] == "legal"


async def make_key(client: httpx.AsyncClient, **spec: Any) -> dict[str, str]:
    r = await client.post("/v1/keys", json={"department": "test", **spec})
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}


async def test_auto_never_picks_an_adapter_the_key_may_not_use(client: httpx.AsyncClient) -> None:
    it_only = await make_key(client, adapters=["it"])
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": HR_Q}]},
        headers=it_only,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-loramux-adapter"] != "hr"
    assert r.headers["x-loramux-target"] in ("base", "rag")
    assert not r.json()["choices"][0]["message"]["content"].startswith("[hr]")
    decision = await client.post(
        "/v1/route", json={"messages": [{"role": "user", "content": HR_Q}]}, headers=it_only
    )
    assert decision.json()["adapter"] != "hr"
    assert "hr" not in [alt["route"] for alt in decision.json()["alternatives"]]
    it = await client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": IT_Q}]},
        headers=it_only,
    )
    assert it.headers["x-loramux-adapter"] == "it"


async def test_auto_fallbacks_respect_a_key_without_base_or_rag(client: httpx.AsyncClient) -> None:
    adapters_only = await make_key(client, adapters=["it"], base=False, rag=False)
    canteen = [{"role": "user", "content": "When does the Brennsby canteen open?"}]
    refused = await client.post(
        "/v1/chat/completions", json={"model": "auto", "messages": canteen}, headers=adapters_only
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    rag_only = await make_key(client, adapters=["it"], base=False, rag=True)
    r = await client.post(
        "/v1/chat/completions", json={"model": "auto", "messages": canteen}, headers=rag_only
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-loramux-target"] == "rag"
    no_rag = await make_key(client, adapters=["it"], base=True, rag=False)
    r = await client.post(
        "/v1/chat/completions", json={"model": "auto", "messages": canteen}, headers=no_rag
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-loramux-target"] == "base"
    assert "sources" not in r.json()


# -- /v1/embeddings: the same loaded MiniLM, per key --------------------------------------------


async def _key(client: httpx.AsyncClient, **spec: Any) -> dict[str, str]:
    r = await client.post("/v1/keys", json={"department": "emb", **spec})
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}


async def test_embeddings_are_the_routers_vectors_in_openai_shape(
    client: httpx.AsyncClient,
) -> None:
    models = (await client.get("/v1/models")).json()["data"]
    assert "all-MiniLM-L6-v2" in {m["id"] for m in models}
    r = await client.post(
        "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": [HR_Q, IT_Q, HR_Q]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert body["model"] == "all-MiniLM-L6-v2"
    vectors = [d["embedding"] for d in body["data"]]
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert len(vectors[0]) == 384
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-4
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 10


async def test_embeddings_need_base_access_and_count_against_the_keys_tokens(
    client: httpx.AsyncClient,
) -> None:
    no_base = await _key(client, adapters=["hr"], base=False)
    small = await _key(client, tpm=30)
    other = await _key(client)
    body = {"model": "all-MiniLM-L6-v2", "input": "annual leave " * 8}
    denied = await client.post("/v1/embeddings", json=body, headers=no_base)
    assert denied.status_code == 403
    assert denied.json()["error"]["param"] == "model"
    first = await client.post("/v1/embeddings", json=body, headers=small)
    assert first.status_code == 200, first.text
    used = first.json()["usage"]["total_tokens"]
    assert used == 18  # 16 word pieces and the two special tokens
    again = await client.post("/v1/embeddings", json=body, headers=small)
    assert again.status_code == 429  # 2 x 18 > 30 tokens per minute
    # another department's key is not touched by that
    assert (await client.post("/v1/embeddings", json=body, headers=other)).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gpt-4o", "input": "x"}, 404, "model"),
        ({"model": "all-MiniLM-L6-v2", "input": [1, 2, 3]}, 400, "input"),
        ({"model": "all-MiniLM-L6-v2", "input": []}, 400, "input"),
        ({"model": "all-MiniLM-L6-v2", "input": ["ok", ""]}, 400, "input.1"),
        ({"model": "all-MiniLM-L6-v2", "input": "word " * 400}, 400, "input.0"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "int8"}, 400, None),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "truncate": True}, 400, "truncate"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "user": "u1"}, 400, "user"),
    ],
)
async def test_bad_embedding_requests_name_the_param(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, param: str | None
) -> None:
    r = await client.post("/v1/embeddings", json=body)
    assert r.status_code == status, r.text
    if param is not None:
        assert r.json()["error"]["param"] == param
