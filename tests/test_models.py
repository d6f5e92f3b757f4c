"""Embedded model cache: manifests catch partial or corrupt folders, which are rebuilt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loramux.config import BaseModelConfig
from loramux.errors import ModelFetchError
from loramux.models import MANIFEST, ensure_base_model, verify_manifest, write_manifest


def make_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"a": 1}')
    (path / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    write_manifest(path)
    return path


def test_manifest_accepts_an_intact_folder(tmp_path: Path) -> None:
    assert verify_manifest(make_folder(tmp_path / "m"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / "model.safetensors").write_bytes(b"short"),  # truncated
        lambda p: (p / "model.safetensors").write_bytes(bytes(range(255, -1, -1)) * 64),  # flipped
        lambda p: (p / "config.json").unlink(),  # missing file
        lambda p: (p / MANIFEST).unlink(),  # crashed before the manifest was written
        lambda p: (p / MANIFEST).write_text("{not json"),
    ],
    ids=["truncated", "corrupt", "missing-file", "no-manifest", "bad-manifest"],
)
def test_manifest_rejects_damaged_folders(tmp_path: Path, damage: object) -> None:
    folder = make_folder(tmp_path / "m")
    damage(folder)  # type: ignore[operator]
    assert not verify_manifest(folder)


def test_local_model_folder_must_be_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="no config.json"):
        ensure_base_model(BaseModelConfig(source=str(tmp_path)), tmp_path / "cache")


@pytest.mark.slow
def test_corrupt_cached_model_is_rebuilt_not_served(base_model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    copy = cache / "models" / base_model_dir.name
    shutil.copytree(base_model_dir, copy)
    with (copy / "model.safetensors").open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    assert not verify_manifest(copy)
    rebuilt = ensure_base_model(BaseModelConfig(), cache, progress=lambda line: None)
    assert rebuilt == copy
    assert verify_manifest(rebuilt)
    assert (rebuilt / "model.safetensors").read_bytes() == (
        base_model_dir / "model.safetensors"
    ).read_bytes()
