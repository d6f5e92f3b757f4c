"""The container files, checked without a Docker engine: the Dockerfile's key properties, the
.dockerignore allowlist, and the GPU compose file with the loramux config it runs."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest

from loramux.config import load_config, read_yaml
from tests.conftest import REPO

SECRET_PATTERNS = ("*.env", ".env*", "*.pem", "*.key", "*id_rsa*", "*secret*", "*.sqlite3")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(REPO / "Dockerfile")


def args(dockerfile: list[tuple[str, str]], name: str) -> list[str]:
    return [rest for instruction, rest in dockerfile if instruction == name]


def test_image_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = args(dockerfile, "USER")
    assert users, "the Dockerfile never switches away from root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    names = [instruction for instruction, _ in dockerfile]
    assert names.index("CMD") > len(names) - 1 - names[::-1].index("USER")
    assert any("useradd" in run and user in run for run in args(dockerfile, "RUN"))


def test_image_has_a_health_check_the_port_and_offline_models(
    dockerfile: list[tuple[str, str]],
) -> None:
    (check,) = args(dockerfile, "HEALTHCHECK")
    assert "/health" in check
    assert "CMD" in check
    assert "8000" in args(dockerfile, "EXPOSE")
    env = " ".join(args(dockerfile, "ENV"))
    assert "HF_HUB_OFFLINE=1" in env
    assert "LORAMUX_HOST=0.0.0.0" in env
    assert "LORAMUX_AUTH=on" in env  # the demo config turns API keys off; a container must not
    runs = " ".join(args(dockerfile, "RUN"))
    assert "loramux models pull" in runs  # the embedded model is baked in at build time
    assert ".[hf,router]" in runs
    assert any("torch==2.13.0" in a for a in args(dockerfile, "ARG"))
    assert args(dockerfile, "FROM")[0].startswith("python:3.11-slim")


def test_nothing_secret_is_copied_and_the_context_is_an_allowlist(
    dockerfile: list[tuple[str, str]],
) -> None:
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"  # everything is left out unless listed
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for rest in args(dockerfile, "COPY") + args(dockerfile, "ADD"):
        assert "--from" not in rest
        *sources, _dest = rest.split()
        for source in sources:
            assert not any(fnmatch.fnmatch(source, p) for p in SECRET_PATTERNS), source
            assert any(
                source == a or fnmatch.fnmatch(source, a) or source.startswith(a + "/")
                for a in allowed
            ), f"COPY {source} is not in the .dockerignore allowlist"
            assert list(REPO.glob(source)), f"COPY {source}: nothing in the repository"
    assert not args(dockerfile, "ADD")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return read_yaml(REPO / "deploy" / "compose.gpu.yaml")


def test_compose_runs_vllm_with_runtime_lora_on_a_gpu(compose: dict[str, Any]) -> None:
    vllm = compose["services"]["vllm"]
    command = vllm["command"]
    assert "--enable-lora" in command
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    # the key in the environment: vLLM logs its command-line arguments (an --api-key too) at INFO
    assert vllm["environment"]["VLLM_API_KEY"].startswith("${VLLM_API_KEY")
    assert not any(c.startswith("--api-key") for c in command)
    # the tuned LoRA kernel configs loramux ships reach the vLLM container
    # (vLLM reads `<folder>/<GPU>_SHRINK.json` etc. directly, so each shipped GPU's files are
    # mounted into the one folder; they are named after their GPU, so they cannot collide)
    folder = vllm["environment"]["VLLM_TUNED_CONFIG_FOLDER"]
    mounts = [v.split(":") for v in vllm["volumes"] if f":{folder}/" in v]
    mounted = {target.removeprefix(f"{folder}/"): (REPO / "deploy" / source).resolve()
               for source, target, _ in mounts}  # fmt: skip
    for gpu in ("NVIDIA_H100_80GB_HBM3", "NVIDIA_H200"):
        for kind in ("SHRINK", "EXPAND_TRUE"):
            name = f"{gpu}_{kind}.json"
            assert mounted[name].is_file()
            assert mounted[name].name == name


def test_compose_points_loramux_at_vllm_with_the_remote_engine(compose: dict[str, Any]) -> None:
    services = compose["services"]
    loramux, vllm = services["loramux"], services["vllm"]
    config_in_image = loramux["environment"]["LORAMUX_CONFIG"]
    assert config_in_image.startswith("/app/")
    config = load_config(REPO / config_in_image.removeprefix("/app/"), environ={})
    assert config.engine.kind == "remote"
    assert config.engine.remote.urls == ["http://vllm:8000"]
    assert f"--served-model-name={config.model.id}" in vllm["command"]
    # vLLM reads the adapter folders loramux registers: the same volume at the same path.
    data_dir = str(config.paths.data_dir)
    assert f"loramux-data:{data_dir}" in loramux["volumes"]
    assert f"loramux-data:{data_dir}:ro" in vllm["volumes"]
    assert set(config.adapters) == {"hr", "it"}
    assert all(entry.path.is_dir() for entry in config.adapters.values())
    assert loramux["depends_on"]["vllm"]["condition"] == "service_healthy"
    # Keys come from the environment, never written in the file.
    text = (REPO / "deploy" / "compose.gpu.yaml").read_text(encoding="utf-8")
    for key in ("LORAMUX_ADMIN_KEY", "LORAMUX_REMOTE_API_KEY"):
        assert re.search(rf"{key}: \$\{{", text), key
