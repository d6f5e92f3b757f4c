"""Adapter folders: content-named versions and the checks before anything is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loramux.adapters.version import content_version, inspect_adapter
from loramux.errors import AdapterError
from tests.builders import write_lora_folder

BASE = "SmolLM2-135M-Instruct"


def test_version_is_stable_and_changes_with_the_weights(tmp_path: Path) -> None:
    a = write_lora_folder(tmp_path / "a", seed=1)
    same = write_lora_folder(tmp_path / "same", seed=1)
    other = write_lora_folder(tmp_path / "other", seed=2)
    assert content_version(a) == content_version(same)
    assert content_version(a) != content_version(other)
    assert len(content_version(a)) == 12


def test_version_changes_with_the_config(tmp_path: Path) -> None:
    a = write_lora_folder(tmp_path / "a", seed=1)
    before = content_version(a)
    config = json.loads((a / "adapter_config.json").read_text())
    config["lora_alpha"] = 32
    (a / "adapter_config.json").write_text(json.dumps(config))
    assert content_version(a) != before


def test_inspect_describes_a_good_adapter(tmp_path: Path) -> None:
    v = inspect_adapter(write_lora_folder(tmp_path / "hr"), name="hr", base_model=BASE)
    assert (v.rank, v.target_modules, v.base_model) == (8, ("q_proj", "v_proj"), BASE)
    assert v.key == f"hr@{v.version}"


def test_pickle_weights_are_refused_without_being_opened(tmp_path: Path) -> None:
    folder = write_lora_folder(tmp_path / "hr")
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04 not even a real pickle")
    with pytest.raises(AdapterError, match="pickle"):
        inspect_adapter(folder, name="hr", base_model=BASE)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"peft_type": "PREFIX_TUNING"}, "only LORA"),
        ({"base_model_name_or_path": "meta-llama/Llama-3-8B"}, "trained for"),
    ],
)
def test_adapters_that_do_not_fit_are_refused(
    tmp_path: Path, change: dict[str, str], words: str
) -> None:
    folder = write_lora_folder(
        tmp_path / "x",
        **{
            "peft_type": change.get("peft_type", "LORA"),
            "base_model": change.get("base_model_name_or_path", BASE),
        },
    )
    with pytest.raises(AdapterError, match=words):
        inspect_adapter(folder, name="x", base_model=BASE)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="not a folder"):
        inspect_adapter(tmp_path / "nope", name="x", base_model=BASE)
    folder = write_lora_folder(tmp_path / "x")
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="no adapter_model.safetensors"):
        inspect_adapter(folder, name="x", base_model=BASE)
