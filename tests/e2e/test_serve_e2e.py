"""End to end: `loramux serve` as a subprocess, the official `openai` client against it.

Runs the shipped default config: the real SmolLM2 on the hf engine with the demo adapters.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import REPO
from tests.serve_process import serving

pytestmark = pytest.mark.slow

BASE = "SmolLM2-135M-Instruct"
# Phrasings the demo adapters were trained on (demo/data/*/train.jsonl).
HR_Q = "Where can I update my home address?"
IT_Q = "Which VPN do we use?"


@pytest.fixture(scope="module")
def server(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "LORAMUX_DATA_DIR": str(state / "data"), "HF_HUB_OFFLINE": "1"}
    log = state / "serve.log"
    args = ["serve", "--config", "configs/default.yaml"]
    with serving(args, env=env, log=log, cwd=REPO, timeout=240) as url:
        yield url
    text = log.read_text()
    # Prompts and completions never reach the log at INFO.
    assert HR_Q not in text
    assert "Harbor" not in text


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, model: str, question: str, max_tokens: int = 24) -> str:
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=max_tokens,
    )
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None
    assert r.usage.completion_tokens > 0
    return r.choices[0].message.content or ""


def test_models_lists_base_and_demo_adapters(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert {BASE, "hr", "it"} <= set(models)
    assert models["hr"].model_extra is not None
    assert models["hr"].model_extra["parent"] == BASE


def test_adapter_answers_as_trained_and_base_does_not(client: openai.OpenAI) -> None:
    assert "Harbor" in ask(client, "hr", HR_Q)
    assert "FjordLink" in ask(client, "it", IT_Q)
    base = ask(client, BASE, HR_Q)
    assert "Harbor" not in base
    assert base.strip()


def test_stream_gives_the_same_text_as_a_plain_call(client: openai.OpenAI) -> None:
    plain = ask(client, "it", IT_Q, max_tokens=16)
    stream = client.chat.completions.create(
        model="it",
        messages=[{"role": "user", "content": IT_Q}],
        temperature=0,
        max_tokens=16,
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 1  # it really streamed, piece by piece
    assert "".join(pieces) == plain


def test_concurrent_requests_to_different_adapters(server: str) -> None:
    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
        jobs = [("hr", HR_Q), ("it", IT_Q), (BASE, HR_Q)] * 2
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=m, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=24
                )
                for m, q in jobs
            )
        )
        return [r.choices[0].message.content or "" for r in replies]

    answers = asyncio.run(run())
    assert all("Harbor" in a for a in answers[0::3])
    assert all("FjordLink" in a for a in answers[1::3])
    assert not any("Harbor" in a for a in answers[2::3])


def test_auto_routes_to_the_department_adapter(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": IT_Q}],
        temperature=0,
        max_tokens=24,
    )
    assert raw.headers["x-loramux-route"] == "it"
    assert raw.headers["x-loramux-adapter"] == "it"
    assert "FjordLink" in (raw.parse().choices[0].message.content or "")


def test_auto_answers_handbook_questions_with_sources(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "When does the Brennsby canteen open?"}],
        temperature=0,
        max_tokens=32,
    )
    assert raw.headers["x-loramux-target"] == "rag"
    reply = raw.parse()
    assert reply.model_extra is not None
    assert reply.model_extra["sources"][0]["source"].endswith("facilities-and-offices.md")
    # the answer ends with the handbook's sentence, verbatim, with its citation (kb.quote)
    answer = reply.choices[0].message.content or ""
    assert answer.endswith('"The Brennsby canteen in Building B opens from 07:30 to 14:30."')
    assert "facilities-and-offices.md" in answer.rsplit("\n\n", 1)[-1]
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "When does the Brennsby canteen open?"}],
            temperature=0,
            max_tokens=32,
            stream=True,
        )
        if chunk.choices
    )
    assert streamed == answer
    as_json = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "When does the Brennsby canteen open?"}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=32,
    )
    assert "Building B opens" not in (as_json.choices[0].message.content or "")


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        ask(client, "payroll", HR_Q)
    assert info.value.code == "model_not_found"


def test_bad_request_is_400_with_a_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="hr", messages=[{"role": "user", "content": "hi"}], max_tokens=100_000
        )
    assert "max_tokens" in str(info.value)
