"""The `Dispatcher` decides concurrent `auto` requests in batches (`RouteBatcher`), over a real
registry with the fake engine and a hand-written keyword router; `router.batch_size` reaches it
from the config, and `embedder.device: auto` picks the device."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from loramux.adapters.registry import AdapterRegistry
from loramux.api import create_app
from loramux.config import load_config
from loramux.gateway.dispatch import Dispatcher
from loramux.keys.records import Access
from loramux.serve.fake import FakeEngine
from loramux.types import ChatMessage
from tests.builders import write_lora_folder
from tests.conftest import REPO
from tests.fakes import KeywordRouter


@pytest.fixture
async def registry(registry: AdapterRegistry, tmp_path: Path) -> AdapterRegistry:
    """tests/api/conftest.py's registry with the adapters hr and it registered."""
    for seed, name in enumerate(("hr", "it"), start=1):
        await registry.register(
            write_lora_folder(tmp_path / name, seed=seed), name=name, actor="test"
        )
    return registry


def _ask(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


async def test_concurrent_auto_requests_share_route_batch_calls(
    registry: AdapterRegistry,
) -> None:
    router = KeywordRouter(["hr", "it", "finance"])
    dispatcher = Dispatcher(registry, router)
    only_it = Access(adapters=frozenset({"it"}))
    asks = [(f"question {i} for {'hr' if i % 2 else 'it'}", i % 3 == 0) for i in range(30)]
    results = await asyncio.gather(
        *(
            dispatcher.dispatch(
                "auto", _ask(text), user=f"u{i}", access=only_it if it else Access()
            )
            for i, (text, it) in enumerate(asks)
        )
    )
    for (text, it_only), got in zip(asks, results, strict=True):
        want = "it" if "for it" in text else None if it_only else "hr"
        assert got.decision.adapter == want, text
        assert (got.assignment.version.name if got.assignment else None) == want
    # Two API keys, two `allowed` sets (finance is not served, so no key may route to it).
    assert sorted(router.calls, key=lambda c: c[0]) == [
        (10, frozenset({"it"})),
        (20, frozenset({"hr", "it"})),
    ]
    assert dispatcher.batcher is not None
    assert (dispatcher.batcher.stats.batches, dispatcher.batcher.stats.decisions) == (1, 30)


async def test_dispatcher_batches_at_most_max_batch_requests(registry: AdapterRegistry) -> None:
    router = KeywordRouter(["hr", "it"])
    dispatcher = Dispatcher(registry, router, max_batch=4)
    results = await asyncio.gather(
        *(dispatcher.dispatch("auto", _ask(f"hr {i}")) for i in range(10))
    )
    assert [r.decision.route for r in results] == ["hr"] * 10
    assert [n for n, _ in router.calls] == [4, 4, 2]


async def test_router_batch_size_from_the_config_reaches_the_dispatcher(tmp_path: Path) -> None:
    config_file = tmp_path / "loramux.yaml"
    config_file.write_text(
        f"paths: {{data_dir: {tmp_path / 'data'}}}\n"
        "engine: {kind: fake}\n"
        "auth: {enabled: false}\n"
        "embedder: {device: cpu}\n"
        f"router: {{routes: {REPO / 'configs/routes/demo.yaml'}, batch_size: 3}}\n",
        encoding="utf-8",
    )
    app = create_app(load_config(config_file, environ={}), engine=FakeEngine())
    texts = [f"How many vacation days do I get in year {2020 + i}?" for i in range(8)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loramux") as c:
            answers = await asyncio.gather(
                *(
                    c.post("/v1/route", json={"messages": [{"role": "user", "content": t}]})
                    for t in texts
                )
            )
        batcher = app.state.services.dispatcher.batcher
    assert [a.status_code for a in answers] == [200] * len(texts)
    assert batcher.max_batch == 3
    assert batcher.stats.decisions == len(texts)
    assert batcher.stats.largest <= 3


def test_embedder_device_auto_takes_a_gpu_only_when_torch_sees_one() -> None:
    import torch

    from loramux.config import EmbedderConfig
    from loramux.embed.device import embedder_device
    from loramux.errors import ConfigError

    gpu = torch.cuda.is_available()
    assert embedder_device(EmbedderConfig(device="cpu")) == "cpu"
    assert embedder_device(EmbedderConfig()) == ("cuda" if gpu else "cpu")
    if gpu:
        assert embedder_device(EmbedderConfig(device="cuda")) == "cuda"
    else:
        with pytest.raises(ConfigError, match=r"`embedder.device: cuda`"):
            embedder_device(EmbedderConfig(device="cuda"))
