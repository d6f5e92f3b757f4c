"""Tenancy end to end: a real `loramux serve` (fake engine, auth on), two departments' keys, the
official `openai` client. Each key sees and names only its own models, cannot use the other's,
and cannot rate the other's answers, even when both send the same `x-request-id`."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.builders import write_lora_folder
from tests.reliability.harness import ADMIN, running_server


def test_two_departments_through_the_openai_client(tmp_path: Path) -> None:
    config = (
        "engine: {kind: fake}\n"
        "adapters:\n"
        f"  hr: {{path: {write_lora_folder(tmp_path / 'hr', seed=1)}}}\n"
        f"  it: {{path: {write_lora_folder(tmp_path / 'it', seed=2)}}}\n"
    )
    with running_server(tmp_path, config) as server:
        keys = {}
        for department in ("hr", "it"):
            r = httpx.post(
                f"{server.url}/v1/keys",
                json={"department": department, "adapters": [department], "base": False},
                headers=ADMIN,
            )
            assert r.status_code == 201, r.text
            keys[department] = r.json()["key"]
        clients = {
            d: openai.OpenAI(
                base_url=f"{server.url}/v1",
                api_key=key,
                max_retries=0,
                default_headers={"x-request-id": "same-id-for-everyone"},
            )
            for d, key in keys.items()
        }
        hr = clients["hr"]
        assert [m.id for m in hr.models.list()] == ["auto", "hr"]
        assert [m.id for m in clients["it"].models.list()] == ["auto", "it"]
        with pytest.raises(openai.NotFoundError) as missing:
            hr.chat.completions.create(model="payroll", messages=[{"role": "user", "content": "x"}])
        assert "Available models: hr (" in str(missing.value)
        with pytest.raises(openai.PermissionDeniedError):
            hr.chat.completions.create(model="it", messages=[{"role": "user", "content": "x"}])

        ids = {}
        for department, client in clients.items():
            raw = client.chat.completions.with_raw_response.create(
                model=department, messages=[{"role": "user", "content": "hello"}]
            )
            completion = raw.parse()
            ids[department] = raw.headers["x-request-id"]
            assert completion.id == f"chatcmpl-{ids[department]}"
            assert raw.headers["x-client-request-id"] == "same-id-for-everyone"
        assert len(set(ids.values())) == 2
        assert "same-id-for-everyone" not in ids.values()

        def rate(department: str, request_id: str) -> httpx.Response:
            return httpx.post(
                f"{server.url}/v1/feedback",
                json={"request_id": request_id, "rating": "down"},
                headers={"authorization": f"Bearer {keys[department]}"},
            )

        assert rate("it", ids["hr"]).status_code == 404  # not it's request
        assert rate("it", "same-id-for-everyone").status_code == 404
        assert rate("hr", ids["hr"]).json()["adapter"] == "hr"
        assert rate("it", ids["it"]).json()["adapter"] == "it"

        hr_headers = {"authorization": f"Bearer {keys['hr']}"}
        listed = httpx.get(f"{server.url}/v1/adapters", headers=hr_headers).json()["data"]
        assert [a["name"] for a in listed] == ["hr"]
        assert httpx.get(f"{server.url}/v1/adapters/it", headers=hr_headers).status_code == 404
        assert httpx.get(f"{server.url}/v1/adapters").status_code == 401
        report = httpx.get(f"{server.url}/v1/adapters/hr/experiment", headers=ADMIN).json()
        assert [(a["requests"], a["up"], a["down"]) for a in report["arms"]] == [(1, 0, 1)]
