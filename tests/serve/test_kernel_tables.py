"""Kernel tables per GPU (serve/kernel_tables.py): which folder is chosen and why, refusal of
bad tables, what the vllm engine hands to vLLM's engine core, the `lora_kernels` setting, and
`loramux kernels show|tune`. A fake device name stands in for the GPU: nothing here needs one."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loramux.cli import app
from loramux.config import EngineConfig, VLLMEngineConfig, load_config
from loramux.errors import ConfigError, EngineUnavailableError
from loramux.serve import kernel_tables
from loramux.serve.vllm import VLLMEngine
from loramux.serve.vllm_setup import kernel_choice, use_kernel_tables

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
GPU = "Fake GPU-9000 80GB"
SLUG = "Fake_GPU_9000_80GB"
H100 = "NVIDIA H100 80GB HBM3"
SHRINK = {"block_m": 32, "block_n": 16, "block_k": 64, "split_k": 8, "num_warps": 4,
          "num_ctas": 1, "num_stages": 2}  # fmt: skip
EXPAND = {"block_m": 64, "block_n": 64, "block_k": 16, "num_warps": 4, "num_ctas": 1,
          "num_stages": 2}  # fmt: skip
FUSED = {"launches": 1, "bm_s": 16, "bk": 64, "split_k": 16, "bc_s": 128, "bm_e": 32, "bn": 64,
         "bc_e": 64, "num_warps": 4, "num_stages": 2}  # fmt: skip


def write_tables(folder: Path, device: str = GPU, *, fused_rows: int = 128) -> Path:
    """A table folder as `loramux kernels tune` writes it, for `device`."""
    folder.mkdir(parents=True, exist_ok=True)
    slug = kernel_tables.device_slug(device)
    (folder / f"{slug}_SHRINK.json").write_text(
        json.dumps({"17": {"1": {"16": {"4096": {"16": SHRINK}}}}})
    )
    (folder / f"{slug}_EXPAND_TRUE.json").write_text(
        json.dumps({"17": {"1": {"16": {"16": {"4096": EXPAND}}}}})
    )
    configs = {"16": {**FUSED, "bm_e": 16}, str(fused_rows): FUSED}
    (folder / "fused.json").write_text(json.dumps({"gpu": device, "configs": configs}))
    return folder


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This machine: a fake GPU, an empty user cache, no table variables, no shipped tables
    for the fake GPU (loramux ships the H100's)."""
    monkeypatch.setattr(kernel_tables, "device_name", lambda: GPU)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in (kernel_tables.ENV, kernel_tables.IN_USE_ENV, kernel_tables.LEGACY_ENV):
        monkeypatch.delenv(var, raising=False)
    kernel_tables._auto_folder.cache_clear()
    return tmp_path


def test_device_slug_is_vllms_file_name() -> None:
    assert kernel_tables.device_slug(H100) == "NVIDIA_H100_80GB_HBM3"
    assert kernel_tables.device_slug(GPU) == SLUG


def test_choice_order_env_then_user_then_shipped_then_none(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    none = kernel_tables.choose()
    assert (none.folder, none.source, none.device) == (None, "none", GPU)
    assert "loramux kernels tune" in none.reason

    monkeypatch.setattr(kernel_tables, "SHIPPED_ROOT", here / "shipped")
    shipped = write_tables(here / "shipped" / SLUG)
    assert kernel_tables.choose().folder == shipped
    assert kernel_tables.choose().source == "shipped"

    mine = write_tables(kernel_tables.user_root() / SLUG)
    assert mine == here / "cache" / "loramux" / "kernels" / SLUG
    assert (kernel_tables.choose().folder, kernel_tables.choose().source) == (mine, "user")

    env = write_tables(here / "env")
    monkeypatch.setenv(kernel_tables.ENV, str(env))
    assert (kernel_tables.choose().folder, kernel_tables.choose().source) == (env, "env")
    monkeypatch.setenv(kernel_tables.ENV, "none")
    assert kernel_tables.choose().folder is None

    # the config's setting comes before all of them
    monkeypatch.setenv(kernel_tables.ENV, str(env))
    other = write_tables(here / "other")
    assert kernel_tables.choose(other).folder == other
    assert kernel_tables.choose("none").folder is None
    assert kernel_tables.choose("builtin").folder == shipped


def test_an_explicit_folder_may_be_a_root_of_gpus(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tables(here / "root" / SLUG)
    write_tables(here / "root" / "NVIDIA_H100_80GB_HBM3", H100)
    monkeypatch.setenv(kernel_tables.ENV, str(here / "root"))
    assert kernel_tables.choose().folder == here / "root" / SLUG
    assert kernel_tables.choose(device=H100).folder == here / "root" / "NVIDIA_H100_80GB_HBM3"


def test_without_a_gpu_the_defaults_are_used(monkeypatch: pytest.MonkeyPatch, here: Path) -> None:
    monkeypatch.setattr(kernel_tables, "device_name", lambda: None)
    choice = kernel_tables.choose()
    assert (choice.folder, choice.device) == (None, None)
    assert "no CUDA GPU" in choice.reason


def test_the_shipped_h100_tables_are_chosen_and_valid(here: Path) -> None:
    choice = kernel_tables.choose(device=H100)
    assert choice.folder == kernel_tables.SHIPPED_ROOT / "NVIDIA_H100_80GB_HBM3"
    assert choice.source == "shipped"
    assert set(kernel_tables.check_folder(choice.folder, H100)) == {
        "NVIDIA_H100_80GB_HBM3_SHRINK.json", "NVIDIA_H100_80GB_HBM3_EXPAND_TRUE.json",
        "masked_expand.json",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="ships no kernel tables for Fake GPU.*NVIDIA_H100"):
        kernel_tables.choose("builtin")


def test_shipped_vllm_tables_cover_every_slice_count_and_the_rank() -> None:
    """vLLM indexes config[max_loras + 1][num_slices][m][k][n]; rank 16 is n (shrink), k
    (expand)."""
    folder = kernel_tables.SHIPPED_ROOT / "NVIDIA_H100_80GB_HBM3"
    for op, rank_at in (("SHRINK", 4), ("EXPAND_TRUE", 3)):
        table = json.loads((folder / f"NVIDIA_H100_80GB_HBM3_{op}.json").read_text())
        assert set(table["17"]) == {"1", "2", "3"}  # o/down, gate_up, qkv
        for path, _ in kernel_tables._leaves(table, 5):
            assert {"16", "128", "4096"} <= set(table[path[0]][path[1]])
            assert path[rank_at] == "16"


BAD = [
    ("missing", None, "is not a folder"),
    ("not json", {"f": f"{SLUG}_SHRINK.json", "text": "{"}, "is not readable JSON"),
    ("layout", {"f": f"{SLUG}_SHRINK.json", "json": {"17": {"1": SHRINK}}}, "vLLM's layout"),
    (
        "field",
        {"f": f"{SLUG}_EXPAND_TRUE.json",
         "json": {"17": {"1": {"16": {"16": {"4096": {"block_m": 16}}}}}}},
        "lacks block_k, block_n, num_ctas, num_stages, num_warps",
    ),
    ("other gpu", {"f": "fused.json", "json": {"gpu": H100, "configs": {"16": FUSED}}},
     "tuned on NVIDIA H100 80GB HBM3, this GPU is Fake"),
    ("rows", {"f": "fused.json", "json": {"gpu": GPU, "configs": {"16": {"bm_s": 16}}}},
     "rows 16 lack bc_e"),
    ("value", {"f": "fused.json", "json": {"gpu": GPU, "configs": {"16": {**FUSED, "bn": 0}}}},
     "positive integers"),
    ("empty", {"f": "notes.txt", "text": "hi"}, "holds no kernel table for Fake"),
    ("h100 only", {"f": "NVIDIA_H100_80GB_HBM3_SHRINK.json", "text": "{}"},
     "it has tables for NVIDIA_H100_80GB_HBM3"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "content", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_explicit_folder_is_refused_with_the_file_named(
    here: Path, monkeypatch: pytest.MonkeyPatch, case: str, content: dict | None, message: str
) -> None:
    folder = here / "tables"
    if content is not None:
        folder.mkdir()
        text = content.get("text") or json.dumps(content["json"])
        (folder / content["f"]).write_text(text)
    monkeypatch.setenv(kernel_tables.ENV, str(folder))
    with pytest.raises(ConfigError, match=message) as info:
        kernel_tables.choose()
    assert info.value.message.startswith(f"{kernel_tables.ENV}={folder}")


def test_a_broken_user_folder_is_refused_not_skipped(here: Path) -> None:
    mine = write_tables(kernel_tables.user_root() / SLUG)
    (mine / "fused.json").write_text("{")
    with pytest.raises(ConfigError, match="loramux kernels tune.*fused.json is not readable"):
        kernel_tables.choose()


def test_the_old_masked_table_variable_says_what_replaced_it(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(kernel_tables.LEGACY_ENV, str(here / "masked.json"))
    with pytest.raises(ConfigError, match="no longer read.*LORAMUX_KERNEL_TABLES=<folder>"):
        kernel_tables.choose()


def test_kernels_read_the_folder_in_use_by_batch_rows(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loramux.serve import lora_expand, lora_fused

    folder = write_tables(here / "t", fused_rows=64)
    monkeypatch.setenv(kernel_tables.IN_USE_ENV, str(folder))
    assert lora_fused.pick_config(8) == {**FUSED, "bm_e": 16}
    assert lora_fused.pick_config(17) == FUSED  # the smallest row count >= 17
    assert lora_fused.pick_config(4096) == FUSED  # above the table: its largest entry
    assert lora_fused.rows_limit() == 64  # larger batches: vLLM's kernels
    assert lora_expand.pick_config(16) == lora_expand.DEFAULT_CONFIG  # no masked table there
    assert lora_expand.masked_rows_limit() == lora_expand.DEFAULT_ROWS_LIMIT
    monkeypatch.setenv(kernel_tables.IN_USE_ENV, "")  # none chosen: the defaults
    assert lora_fused.pick_config(8) == lora_fused.DEFAULT_CONFIG
    shipped = kernel_tables.SHIPPED_ROOT / "NVIDIA_H100_80GB_HBM3"
    monkeypatch.setenv(kernel_tables.IN_USE_ENV, str(shipped))
    table = json.loads((shipped / "masked_expand.json").read_text())["configs"]
    assert lora_expand.pick_config(100) == table["128"]
    assert lora_expand.masked_rows_limit() == max(int(m) for m in table)


def test_table_fields_are_the_kernels_settings() -> None:
    from loramux.serve import lora_expand, lora_fused

    assert kernel_tables.LORAMUX_TABLES[lora_expand.TABLE] == set(lora_expand.DEFAULT_CONFIG)
    assert kernel_tables.LORAMUX_TABLES[lora_fused.TABLE] == set(lora_fused.DEFAULT_CONFIG)


# -- the vllm engine ------------------------------------------------------------------------------


def test_the_engine_hands_the_choice_to_vllms_engine_core(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_TUNED_CONFIG_FOLDER", raising=False)
    mine = write_tables(kernel_tables.user_root() / SLUG)
    use_kernel_tables(kernel_choice(VLLMEngineConfig()))  # auto
    assert os.environ["VLLM_TUNED_CONFIG_FOLDER"] == str(mine)
    assert os.environ[kernel_tables.IN_USE_ENV] == str(mine)
    use_kernel_tables(kernel_choice(VLLMEngineConfig(lora_kernel_configs="none")))
    assert "VLLM_TUNED_CONFIG_FOLDER" not in os.environ
    assert os.environ[kernel_tables.IN_USE_ENV] == ""
    use_kernel_tables(kernel_choice(VLLMEngineConfig(lora_kernel_configs=None)))  # null: none
    assert os.environ[kernel_tables.IN_USE_ENV] == ""
    with pytest.raises(
        EngineUnavailableError, match="lora_kernel_configs: .*missing.*not a folder"
    ):
        kernel_choice(VLLMEngineConfig(lora_kernel_configs=here / "missing"))


def test_lora_kernels_choice_comes_from_the_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def vllm_section(text: str) -> VLLMEngineConfig:
        file = tmp_path / "c.yaml"
        file.write_text(f"engine:\n  vllm:\n{text}\n")
        return load_config(file, environ={}).engine.vllm

    assert vllm_section("    max_loras: 4").lora_kernels == "vllm"
    assert vllm_section("    max_loras: 4").lora_kernel_configs == "auto"
    assert vllm_section("    lora_kernels: fused").lora_kernels == "fused"
    assert vllm_section("    lora_kernels: concat").lora_kernels == "concat"
    for arg in ("tensor_parallel_size: 2", "fully_sharded_loras: true", "quantization: fp8"):
        with pytest.raises(ConfigError, match=f"concat runs on one GPU.*args.{arg.split(':')[0]}"):
            vllm_section(f"    lora_kernels: concat\n    args:\n      {arg}")
    assert vllm_section("    lora_kernels: concat\n    args:\n      tensor_parallel_size: 1")
    with caplog.at_level(logging.WARNING):
        assert vllm_section("    lora_expand: masked").lora_kernels == "masked"
    assert "lora_expand is now engine.vllm.lora_kernels" in caplog.text
    with pytest.raises(ConfigError, match="engine.vllm.lora_kernels"):
        vllm_section("    lora_kernels: fastest")
    with pytest.raises(ConfigError, match="lora_expand: masked and lora_kernels: fused disagree"):
        vllm_section("    lora_expand: masked\n    lora_kernels: fused")
    with pytest.raises(ConfigError, match="fused needs a power-of-two LoRA rank.*320"):
        vllm_section("    lora_kernels: fused\n    max_lora_rank: 300")


@pytest.mark.skipif(HAVE_VLLM, reason="stops where vllm is missing, after the environment is set")
def test_each_kernel_choice_gets_its_own_compile_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM's compile cache key leaves the worker extension out: a graph compiled with loramux's
    ops must never be loaded by an engine without them (seen on the H100: the engine died)."""
    from loramux.serve import vllm_setup

    monkeypatch.setattr(vllm_setup, "_USER_VLLM_CACHE_ROOT", None)
    monkeypatch.delenv("VLLM_CACHE_ROOT", raising=False)
    roots = []
    for choice in ("masked", "fused", "concat", "vllm"):
        engine = EngineConfig(vllm=VLLMEngineConfig(lora_kernels=choice))
        with pytest.raises(EngineUnavailableError):  # no vllm here: stops at the import
            VLLMEngine(tmp_path, engine, cache_dir=tmp_path)._build()
        roots.append(os.environ["VLLM_CACHE_ROOT"])
    vllm = tmp_path / "vllm"
    assert roots == [
        str(vllm / "masked-expand"),
        str(vllm / "fused-lora"),
        str(vllm / "concat-lora"),
        str(vllm),
    ]


# -- the command line -----------------------------------------------------------------------------

runner = CliRunner()


def test_kernels_show_says_which_folder_and_why(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(app, ["kernels", "show"])
    assert result.exit_code == 0, result.output
    assert f"device: {GPU}" in result.output
    assert "folder: none" in result.output
    mine = write_tables(kernel_tables.user_root() / SLUG)
    result = runner.invoke(app, ["kernels", "show"])
    assert f"folder: {mine}" in result.output
    assert "source: user: tuned on this machine" in result.output
    assert f"table:  {SLUG}_SHRINK.json" in result.output
    assert "table:  fused.json" in result.output
    monkeypatch.setenv(kernel_tables.ENV, str(here / "nowhere"))
    result = runner.invoke(app, ["kernels", "show"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0  # one line
    assert result.output.startswith(f"error: {kernel_tables.ENV}=")


def test_kernels_show_follows_the_configs_setting(here: Path) -> None:
    write_tables(kernel_tables.user_root() / SLUG)
    config = here / "c.yaml"
    config.write_text("engine:\n  vllm:\n    lora_kernel_configs: none\n")
    result = runner.invoke(app, ["kernels", "show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "folder: none" in result.output
    assert "lora_kernel_configs: none" in result.output


def test_kernels_tune_without_a_gpu_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel_tables, "device_name", lambda: None)
    result = runner.invoke(app, ["kernels", "tune", "--quick"])
    assert result.exit_code == 1
    assert (
        result.output
        == "error: `loramux kernels tune` needs a CUDA GPU, and this machine has none\n"
    )
    result = runner.invoke(app, ["kernels", "tune", "--model-shape", "70b"])
    assert result.exit_code == 1
    assert result.output.startswith("error: --model-shape '70b': give 8b, or hidden=H,")


def test_model_shapes_by_name_or_by_size() -> None:
    from loramux.serve.kernel_cases import parse_shape

    assert parse_shape("8b").modules["qkv"] == (4096, (4096, 1024, 1024))
    custom = parse_shape("hidden=2048,intermediate=8192,kv=512")
    assert custom.modules == {
        "qkv": (2048, (2048, 512, 512)), "o": (2048, (2048,)),
        "gate_up": (2048, (8192, 8192)), "down": (8192, (2048,)),
    }  # fmt: skip
    with pytest.raises(ConfigError):
        parse_shape("hidden=2048")


@pytest.mark.skipif(not HAVE_VLLM, reason="reads vLLM's default kernel settings")
def test_tune_writes_a_folder_the_engine_accepts(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search with every GPU part faked (timings: a fixed cost per setting; outputs: equal),
    from the settings tried to the folder saved and chosen: no GPU needed."""
    import torch

    from loramux.serve import kernel_tune

    class FakeCase:
        def layer_fn(self, kind: str, layer: int = 0, config: dict | None = None) -> object:
            return lambda: None

    def fake_time(module: str, tokens: int, what: str, space: list, **kw: object) -> tuple:
        # the larger the tiles, the faster: the search must pick the largest
        if not space:
            return None, float("inf")
        key = lambda c: sum(v for v in c.values() if isinstance(v, int))  # noqa: E731
        best = max(space, key=key)
        return best, 1000.0 / key(best)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: GPU)
    monkeypatch.setattr(kernel_tune.Tuner, "compile", lambda self, jobs: None)
    monkeypatch.setattr(kernel_tune.Tuner, "fastest", lambda self, *a, **k: fake_time(*a, **k))
    monkeypatch.setattr(kernel_tune.Tuner, "differs", lambda self, *a: 0.0)
    monkeypatch.setattr(kernel_tune.Tuner, "cases", lambda self, m, t: [FakeCase()])
    monkeypatch.setattr(kernel_tune, "graph_time", lambda fn, **kw: 1.0)
    out = kernel_tables.user_root() / SLUG
    lines: list[str] = []
    opts = kernel_tune.TuneOptions(out=out, quick=True, workers=1, one_launch=False)
    assert kernel_tune.tune(opts, lines.append) == out
    assert kernel_tables.choose().folder == out  # the next start picks it up
    assert set(kernel_tables.check_folder(out, GPU)) == {
        f"{SLUG}_SHRINK.json", f"{SLUG}_EXPAND_TRUE.json", "masked_expand.json", "fused.json",
    }  # fmt: skip
    fused = json.loads((out / "fused.json").read_text())
    assert sorted(map(int, fused["configs"])) == list(kernel_tune.ROWS)
    assert all(c["launches"] == 2 for c in fused["configs"].values())  # --no-one-launch
    shrink = json.loads((out / f"{SLUG}_SHRINK.json").read_text())
    assert set(shrink["17"]) == {"1", "2", "3"}
    assert not list(out.parent.glob(".*"))  # no temporary folder left beside it
