"""End to end: `loramux serve` (fake engine, two adapter slots) with more adapters registered
than it holds, the official `openai` client asking each in turn, and the cold starts it paid
visible in the response headers and in /metrics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.builders import write_lora_folder
from tests.reliability.harness import ADMIN, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("paging")
    config = "engine: {kind: fake, max_loaded_adapters: 2}\nauth: {enabled: false}\n"
    with running_server(state, config) as served:
        for i, name in enumerate(("hr", "it", "finance", "legal")):
            folder = write_lora_folder(state / "src" / name, seed=i)
            body = {"name": name, "path": str(folder)}
            r = httpx.post(f"{served.url}/v1/adapters", json=body, headers=ADMIN)
            assert r.status_code == 201, r.text
        yield served.url


def test_four_adapters_answer_through_two_slots_and_cold_starts_show(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    cold = []
    for name in ("hr", "it", "finance", "legal", "legal"):
        raw = client.chat.completions.with_raw_response.create(
            model=name, messages=[{"role": "user", "content": "hello"}], max_tokens=4
        )
        answer = raw.parse().choices[0].message.content or ""
        assert answer.startswith(f"[{name}]")
        cold.append("x-loramux-adapter-load-ms" in raw.headers)
    # After the registrations finance and legal are loaded; hr pushes finance out, it pushes
    # legal out, finance and legal come back in turn: four cold starts, then a warm request.
    assert cold == [True, True, True, True, False]
    metrics = httpx.get(f"{server}/metrics").text
    assert 'loramux_adapter_slots{engine="fake"} 2.0' in metrics
    assert 'loramux_adapters_loaded{engine="fake"} 2.0' in metrics
    assert 'loramux_adapter_evictions_total{engine="fake"} 6.0' in metrics  # 2 + 4
    assert 'loramux_adapter_cold_requests_total{engine="fake"} 4.0' in metrics
