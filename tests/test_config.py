"""Config loading: shipped files load, typos are named, env and paths behave."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import BaseModel

from loramux.config import (
    ENV_OVERRIDES,
    LEGACY_ENGINE_KEYS,
    EngineConfig,
    LoramuxConfig,
    TrainConfig,
    load_config,
    load_train_config,
    read_yaml,
)
from loramux.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_config_loads_with_demo_adapters() -> None:
    config = load_config(REPO / "configs" / "default.yaml", environ={})
    assert config.engine.kind == "hf"
    assert set(config.adapters) >= {"hr", "it"}
    assert config.adapters["hr"].path == REPO / "demo" / "adapters" / "hr"


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "train").glob("*.yaml")), ids=str)
def test_every_shipped_train_config_loads(path: Path) -> None:
    config = load_train_config(path)
    assert config.data.train.is_file()
    assert config.output_dir.parent == REPO / "demo" / "adapters"


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=str)
def test_every_shipped_yaml_parses(path: Path) -> None:
    assert isinstance(read_yaml(path), dict)


def test_unknown_key_is_rejected_with_its_dotted_name(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("engine:\n  max_batch_sise: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"`engine.max_batch_sise`: Extra inputs"):
        load_config(f, environ={})


def test_out_of_range_value_names_the_key(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("engine: {max_batch_size: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"`engine.max_batch_size`"):
        load_config(f, environ={})


def test_bad_adapter_name_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("adapters:\n  auto: {path: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="reserved"):
        load_config(f, environ={})


def test_env_overrides_host_port_engine_and_dirs(tmp_path: Path) -> None:
    env = {
        "LORAMUX_HOST": "0.0.0.0",
        "LORAMUX_PORT": "9001",
        "LORAMUX_ENGINE": "fake",
        "LORAMUX_DATA_DIR": str(tmp_path / "data"),
    }
    config = load_config(REPO / "configs" / "default.yaml", environ=env)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9001)
    assert config.engine.kind == "fake"
    assert config.paths.data_dir == tmp_path / "data"


def test_cli_overrides_win_over_env() -> None:
    config = load_config(
        REPO / "configs" / "default.yaml",
        environ={"LORAMUX_PORT": "9001"},
        overrides={"server": {"port": 9002, "host": None}},
    )
    assert config.server.port == 9002


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "c.yaml"
    f.write_text("adapters:\n  hr: {path: ../ad/hr}\npaths: {data_dir: state}\n", encoding="utf-8")
    config = load_config(f, environ={})
    assert config.adapters["hr"].path == tmp_path / "ad" / "hr"
    assert config.paths.data_dir == tmp_path / "sub" / "state"


@pytest.mark.parametrize(
    ("text", "words"),
    [("engine: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "mapping at the top level")],
)
def test_malformed_yaml_is_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=words):
        load_config(f, environ={})


SERVING_CONFIGS = [
    REPO / "configs" / "default.yaml",
    REPO / "configs" / "production.example.yaml",
    REPO / "deploy" / "loramux.gpu.yaml",
]


@pytest.mark.parametrize("path", SERVING_CONFIGS, ids=str)
def test_every_shipped_serving_config_loads_in_the_current_layout(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="loramux.config"):
        load_config(path, environ={})
    assert "is now engine." not in caplog.text  # no old flat engine keys left in what we ship


def test_old_flat_engine_keys_load_into_their_sections_with_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "engine:\n  kind: remote\n  max_batch_size: 4\n  max_wait_ms: 5\n  max_loras: 2\n"
        "  vllm_args: {max_num_batched_tokens: 64}\n  remote_urls: [http://a:8000]\n"
        "  remote_api_key: secret\n  remote_timeout_s: 9\n  fake_token_delay_s: 0.5\n"
    )
    with caplog.at_level(logging.WARNING, logger="loramux.config"):
        engine = load_config(file, environ={}).engine
    assert (engine.kind, engine.max_batch_size, engine.hf.max_wait_ms) == ("remote", 4, 5)
    assert (engine.vllm.max_loras, engine.vllm.args) == (2, {"max_num_batched_tokens": 64})
    assert (engine.remote.urls, engine.remote.api_key) == (["http://a:8000"], "secret")
    assert (engine.remote.timeout_s, engine.fake.token_delay_s) == (9, 0.5)
    warnings = [r.getMessage() for r in caplog.records]
    assert "engine.remote_urls is now engine.remote.urls; please update the config" in warnings
    assert "engine.vllm_args is now engine.vllm.args; please update the config" in warnings
    assert len(warnings) == 7


@pytest.mark.parametrize("old", sorted(LEGACY_ENGINE_KEYS))
def test_every_old_engine_key_names_an_existing_field(old: str) -> None:
    section, key = LEGACY_ENGINE_KEYS[old]
    assert key in type(getattr(EngineConfig(), section)).model_fields
    assert old not in EngineConfig.model_fields


def test_an_old_engine_key_and_its_new_key_together_are_refused_naming_both(
    tmp_path: Path,
) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "engine:\n  remote_urls: [http://a:8000]\n  remote:\n    urls: [http://b:8000]\n"
    )
    with pytest.raises(
        ConfigError, match=r"`engine.remote_urls` and `engine.remote.urls` are both"
    ):
        load_config(file, environ={})
    with pytest.raises(ValueError, match=r"`engine.max_loras` and `engine.vllm.max_loras`"):
        EngineConfig.model_validate({"max_loras": 2, "vllm": {"max_loras": 3}})


def test_an_unknown_key_inside_an_engine_section_is_refused_with_its_dotted_name(
    tmp_path: Path,
) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("engine:\n  vllm:\n    max_lora: 4\n")
    with pytest.raises(ConfigError, match=r"`engine\.vllm\.max_lora`: Extra inputs"):
        load_config(file, environ={})


def test_env_override_of_a_nested_engine_key_wins_over_the_old_flat_key(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("engine:\n  remote_api_key: from-file\n")
    config = load_config(file, environ={"LORAMUX_REMOTE_API_KEY": "from-env"})
    assert config.engine.remote.api_key == "from-env"
    assert load_config(None, environ={"LORAMUX_REMOTE_API_KEY": "k"}).engine.remote.api_key == "k"


def test_every_env_override_names_an_existing_config_field() -> None:
    for var, (section, key) in ENV_OVERRIDES.items():
        model: type[BaseModel] = LoramuxConfig
        for part in [section, *key.split(".")]:
            assert part in model.model_fields, f"{var}: {section}.{key}"
            annotation = model.model_fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation


def test_every_kind_the_config_accepts_is_built_from_its_name_table() -> None:
    from typing import get_args

    from loramux.config import EngineConfig, RouterConfig
    from loramux.router.build import ROUTER_CLS
    from loramux.serve.engine import ENGINES

    assert set(get_args(EngineConfig.model_fields["kind"].annotation)) == set(ENGINES)
    assert set(get_args(RouterConfig.model_fields["kind"].annotation)) == set(ROUTER_CLS)


def test_the_postgres_store_needs_a_dsn_and_names_both_ways_to_give_it(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("registry: {store: postgres}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="registry.database_url or LORAMUX_DATABASE_URL"):
        load_config(cfg, environ={})
    url = "postgresql://loramux@db:5432/loramux"
    loaded = load_config(cfg, environ={"LORAMUX_DATABASE_URL": url})
    assert loaded.registry.store == "postgres"
    assert loaded.registry.database_url == url


def test_a_dsn_with_the_sqlite_store_is_refused_not_ignored(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("registry: {store: sqlite}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="registry.store is sqlite"):
        load_config(cfg, environ={"LORAMUX_DATABASE_URL": "postgresql://x@y/z"})


def test_fleet_wide_rate_limits_need_the_postgres_store(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("auth: {limits_scope: fleet}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="registry.store: postgres"):
        load_config(cfg, environ={})


def test_every_training_option_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Demo adapters and training", 1)[1].split("\n## ", 1)[0]
    for name, field in TrainConfig.model_fields.items():
        sub = field.annotation
        fields = getattr(sub, "model_fields", None)
        if name == "model" or fields is None:
            assert f"`{name}`" in section, f"`{name}` is not in README's training table"
            continue
        for key in fields:
            assert f"{name}.{key}`" in section or f"`{key}`" in section, (
                f"`{name}.{key}` is not in README's training table"
            )
