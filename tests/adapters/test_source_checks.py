"""Registration errors name the user's path and say what the folder is: relative paths, files,
folders with links, a base model's folder, missing config or weights; checked on the real
registry before anything is staged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loramux.adapters.registry import AdapterRegistry
from loramux.errors import AdapterError
from loramux.serve.fake import FakeEngine
from tests.builders import SMOLLM2_SPEC, write_lora_folder


@pytest.fixture
async def registry(tmp_path: Path) -> AdapterRegistry:
    engine = FakeEngine()
    await engine.start()
    reg = AdapterRegistry.open(tmp_path / "data", SMOLLM2_SPEC, engine=engine)
    await reg.start()
    return reg


def _base_model_folder(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"\0" * 16)
    (path / "tokenizer.json").write_text("{}")
    return path


def _linked_folder(path: Path, source: Path) -> Path:
    path.mkdir()
    for entry in source.iterdir():
        (path / entry.name).symlink_to(entry)
    return path


def _no_weights(path: Path, source: Path) -> Path:
    path.mkdir()
    shutil.copy(source / "adapter_config.json", path)
    return path


def _pickle(path: Path, source: Path) -> Path:
    _no_weights(path, source)
    (path / "adapter_model.bin").write_bytes(b"\0")
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp, good: Path("adapters/hr"), "is relative"),
        (lambda tmp, good: tmp / "missing", "does not exist"),
        (lambda tmp, good: good / "adapter_config.json", "is a file, not a folder"),
        (lambda tmp, good: _linked_folder(tmp / "snapshot", good), "holds links"),
        (lambda tmp, good: _base_model_folder(tmp / "base"), "full model folder (a llama model"),
        (lambda tmp, good: (tmp / "empty").mkdir() or tmp / "empty", "no adapter_config.json"),
        (lambda tmp, good: _no_weights(tmp / "now", good), "no adapter_model.safetensors"),
        (lambda tmp, good: _pickle(tmp / "pkl", good), "pickle"),
    ],
    ids=["relative", "missing", "file", "links", "base-model", "empty", "no-weights", "pickle"],
)
async def test_a_folder_that_is_no_adapter_is_refused_naming_the_path(
    registry: AdapterRegistry, tmp_path: Path, make: object, words: str
) -> None:
    good = write_lora_folder(tmp_path / "good", seed=1)
    path = make(tmp_path, good)  # type: ignore[operator]
    with pytest.raises(AdapterError) as info:
        await registry.register(path, name="hr", actor="ops")
    message = info.value.message
    assert words in message
    assert str(path) in message
    assert ".staging" not in message
    assert info.value.param == "path"
    assert registry.adapters() == []
    assert not any((tmp_path / "data" / "adapters" / ".staging").glob("*"))
    await registry.close()


async def test_a_problem_found_in_the_staged_copy_names_the_users_path(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    folder = write_lora_folder(tmp_path / "bad", seed=1)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError) as info:
        await registry.register(folder, name="hr", actor="ops")
    assert str(folder) in info.value.message
    assert ".staging" not in info.value.message
    await registry.close()
