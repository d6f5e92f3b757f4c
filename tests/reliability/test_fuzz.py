"""Fuzzing every endpoint of the OpenAPI schema with schemathesis: no input is a 5xx.

The real app (registry, auth, limits; fake engine) is driven in-process through its ASGI
interface. Each generated request is sent twice: without a key, and with the admin key (and, for
the generation endpoints, `model` set to a served adapter), so that the admin endpoints and the
engine path are exercised past authentication and model lookup too. The default run is small and
derandomized (it is part of `make test`); `LORAMUX_FUZZ_EXAMPLES=500` fuzzes harder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("schemathesis")

import schemathesis  # noqa: E402 - after the skip: it is a test-only dependency
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402
from schemathesis.python import asgi  # noqa: E402

from loramux.api import create_app  # noqa: E402
from loramux.config import load_config  # noqa: E402
from loramux.serve.fake import FakeEngine  # noqa: E402
from tests.builders import write_lora_folder  # noqa: E402
from tests.reliability.harness import ADMIN, ADMIN_KEY  # noqa: E402

EXAMPLES = int(os.environ.get("LORAMUX_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("fuzz")
    hr = write_lora_folder(tmp / "hr", seed=1)
    config_file = tmp / "loramux.yaml"
    config_file.write_text(
        "engine: {kind: fake, max_new_tokens: 64, context_length: 256}\n"
        "server: {max_request_bytes: 65536}\n"
        f"paths: {{data_dir: {tmp / 'data'}}}\n"
        f"registry: {{import_roots: [{tmp / 'imports'}]}}\n"
        f"adapters: {{hr: {{path: {hr}}}}}\n"
        # every case is sent without a key first: past the default 20 failures a minute the
        # address would get 429 for everything, and the admin half of the cases would fuzz
        # nothing (the throttle has its own tests, test_admin_hardening.py)
        "auth: {max_failures: 1000000}\n",
        encoding="utf-8",
    )
    config = load_config(config_file, environ={"LORAMUX_ADMIN_KEY": ADMIN_KEY})
    app = create_app(config, engine=FakeEngine(context_length=256))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    asgi.shutdown_lifespans()


GENERATIVE = ("/v1/chat/completions", "/v1/completions", "/v1/route")


def _check(case: Any) -> None:
    for headers in ({}, ADMIN):
        if headers and case.operation.path in GENERATIVE and isinstance(case.body, dict):
            # A random `model` is a 404; with the key, ask a served adapter to get further.
            case.body["model"] = "hr"
        response = case.call(headers=headers)
        where = f"{case.operation.label}: {case.as_curl_command(headers)}"
        assert response.status_code < 500, f"{response.status_code} {response.text[:500]}\n{where}"
        content_type = (response.headers.get("content-type") or [""])[0]
        if response.status_code >= 400 and content_type.startswith("application/json"):
            assert response.json()["error"]["message"], where


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_is_a_server_error(api_schema: Any, mode: GenerationMode) -> None:
    """Positive: requests that fit the schema; negative: requests that break it."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    unbreakable: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            _check(case)

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing in this operation's schema can be broken (GET /health has no inputs,
            # any string is a valid path parameter).
            assert mode is GenerationMode.NEGATIVE, operation.label
            unbreakable.append(operation.label)
    # Only operations without a body (just string path parameters) cannot be broken.
    with_body = [
        label
        for label in unbreakable
        if label.startswith(("POST", "PUT"))
        and not label.endswith(("/retire", "/pin", "/rollback", "/rotate"))
    ]
    assert with_body == [], unbreakable


def test_the_schema_covers_every_endpoint(api_schema: Any) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/route",
        "/v1/adapters",
        "/v1/adapters/{name}/traffic",
        "/v1/feedback",
        "/health",
        "/ready",
    } <= paths
    body = api_schema.raw_schema["paths"]["/v1/adapters"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
