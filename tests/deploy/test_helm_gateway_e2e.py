"""One gateway pod of the Helm chart, run as a process: `loramux serve` with the rendered
ConfigMap and the container's environment (Secrets resolved from the rendered Secret), in front
of two fake vLLM replicas (tests/serve/fake_vllm_server.py).

Only what a cluster provides is stood in for: the replicas' DNS names become loopback URLs, and
the pod's mounts (/var/lib/loramux, /var/lib/loramux-local, /opt/loramux/cache, and the image's
/app) become folders here. Everything else is the chart's output as rendered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.deploy.test_helm_chart import container, find, render, secret_values
from tests.serve.fake_vllm_server import FakeVLLM, Served
from tests.serve_process import serving

pytestmark = pytest.mark.slow

QUESTION = "Where can I update my home address?"
REPLICAS = 2


@dataclass
class Pod:
    url: str
    admin_key: str
    replicas: list[FakeVLLM]
    data: Path
    local: Path
    log: Path


def mounts(tmp: Path) -> dict[str, str]:
    """Pod path -> folder here; the longer paths first, so that no prefix is replaced early."""
    return {
        "/var/lib/loramux-local": str(tmp / "local"),
        "/var/lib/loramux": str(tmp / "data"),
        "/opt/loramux/cache": str(tmp / "cache"),
        "/app/": f"{REPO}/",
    }


def remap(text: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    tmp = tmp_path_factory.mktemp("pod")
    docs = render({"vllm": {"replicas": REPLICAS}})
    fakes = [FakeVLLM(f"r{i}", model="SmolLM2-135M-Instruct") for i in range(REPLICAS)]
    served = [Served(fake).start() for fake in fakes]
    table = {
        f"http://demo-loramux-vllm-{i}.demo-loramux-vllm.ai.svc:8000": s.url
        for i, s in enumerate(served)
    }
    table.update(mounts(tmp))
    config = tmp / "loramux.yaml"
    config.write_text(
        remap(find(docs, "ConfigMap")["data"]["loramux.yaml"], table), encoding="utf-8"
    )
    gateway = container(find(docs, "Deployment"), "gateway")
    secrets = secret_values(docs)
    env = {**os.environ}
    for item in gateway["env"]:
        if "value" in item:
            env[item["name"]] = remap(item["value"], table)
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
    env["LORAMUX_CONFIG"] = str(config)
    log = tmp / "gateway.log"
    args = gateway["command"][1:]
    try:
        with serving(args, env=env, log=log, cwd=tmp, timeout=300, interval=1) as url:
            yield Pod(url, env["LORAMUX_ADMIN_KEY"], fakes, tmp / "data", tmp / "local", log)
    finally:
        for s in served:
            s.stop()


def test_the_pod_is_live_and_ready_on_the_probes_paths(pod: Pod) -> None:
    assert httpx.get(f"{pod.url}/health").status_code == 200
    ready = httpx.get(f"{pod.url}/ready").json()
    assert ready["ready"] is True
    assert ready["engine"] == "remote"


def test_metrics_need_the_admin_key_the_service_monitor_sends(pod: Pod) -> None:
    assert httpx.get(f"{pod.url}/metrics").status_code == 401
    auth = {"Authorization": f"Bearer {pod.admin_key}"}
    assert httpx.get(f"{pod.url}/metrics", headers=auth).status_code == 200


def test_a_department_key_made_as_the_docs_say_reaches_a_replica(pod: Pod) -> None:
    body = {"model": "hr", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16}
    assert httpx.post(f"{pod.url}/v1/chat/completions", json=body).status_code == 401
    made = httpx.post(
        f"{pod.url}/v1/keys",
        headers={"Authorization": f"Bearer {pod.admin_key}"},
        json={"department": "hr", "adapters": ["hr"]},
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    answer = httpx.post(
        f"{pod.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    text = answer.json()["choices"][0]["message"]["content"]
    assert any(f"@{fake.name}]" in text for fake in pod.replicas), text
    # the adapter was loaded from the data volume, the path vLLM mounts read-only
    paths = [path for fake in pod.replicas for path in fake.adapters.values()]
    assert paths
    assert all(Path(path).is_relative_to(pod.data / "adapters") for path in paths)


def test_per_pod_state_stays_off_the_shared_volume(pod: Pod) -> None:
    assert (pod.local / "kb").is_dir()
    assert not (pod.data / "kb").exists()
    assert not (pod.data / "decisions").exists()
    assert (pod.data / "registry.sqlite3").is_file()
    assert QUESTION not in pod.log.read_text()
