"""Config loading: shipped files load, typos are named, env and paths behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from loramux.config import load_config, load_train_config, read_yaml
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
