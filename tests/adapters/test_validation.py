"""Adapter checks against the base model: every refusal names its reason and reads no pickle."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from loramux.adapters.validation import (
    BaseModelSpec,
    check_adapter_folder,
    spec_from_hf_config,
    spec_from_model,
)
from loramux.config import AdapterLimits, load_train_config
from loramux.errors import AdapterError, AdapterTooLargeError
from tests.builders import SMOLLM2_CONFIG, SMOLLM2_SPEC, write_lora_folder

BASE = SMOLLM2_SPEC
LIMITS = AdapterLimits()
DEMO_HR = Path(__file__).resolve().parents[2] / "demo" / "adapters" / "hr"
PREFIX = "base_model.model.model.layers.0.self_attn"


def _check(folder: Path, limits: AdapterLimits = LIMITS) -> None:
    check_adapter_folder(folder, name="hr", base=BASE, limits=limits)


def _set_config(folder: Path, **changes: object) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _set_tensors(folder: Path, tensors: dict[str, tuple[int, int]]) -> None:
    save_file(
        {name: np.zeros(shape, dtype=np.float32) for name, shape in tensors.items()},
        str(folder / "adapter_model.safetensors"),
    )


def test_base_spec_from_config_names_llama_modules_and_sizes(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    spec = spec_from_hf_config(tmp_path, name="SmolLM2-135M-Instruct")
    assert spec.module_suffixes == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert spec.module_shapes["v_proj"] == (576, 192)
    assert spec.module_shapes["down_proj"] == (1536, 576)
    with pytest.raises(AdapterError, match="spec_from_model"):
        spec_from_hf_config({**SMOLLM2_CONFIG, "model_type": "mamba"}, name="x")


def test_base_spec_from_a_loaded_model_lists_linear_modules() -> None:
    class Linear:
        def __init__(self, i: int, o: int) -> None:
            self.in_features, self.out_features = i, o

    class Model:
        def named_modules(self) -> list[tuple[str, object]]:
            return [
                ("", object()),
                ("layers.0.q_proj", Linear(8, 8)),
                ("layers.1.q_proj", Linear(8, 8)),
                ("lm_head", Linear(8, 100)),
            ]

    spec = spec_from_model(Model(), name="tiny")
    assert spec.module_suffixes == {"q_proj", "lm_head"}
    assert spec.module_shapes["q_proj"] == (8, 8)


def test_a_good_adapter_passes_and_is_described(tmp_path: Path) -> None:
    checked = check_adapter_folder(
        write_lora_folder(tmp_path / "hr"), name="hr", base=BASE, limits=LIMITS
    )
    assert checked.version.rank == 8
    assert checked.card == {}
    assert checked.size_bytes > 0


@pytest.mark.skipif(not (DEMO_HR / "adapter_config.json").is_file(), reason="demo adapter absent")
def test_the_trained_demo_adapter_passes() -> None:
    checked = check_adapter_folder(DEMO_HR, name="hr", base=BASE, limits=LIMITS)
    # The recipe's `lora.target_modules: all-linear`: every linear layer of a Llama block.
    every_linear = ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj")
    assert tuple(sorted(checked.version.target_modules)) == every_linear
    shipped = load_train_config(DEMO_HR.parents[2] / "configs" / "train" / "hr.yaml")
    assert checked.version.rank == shipped.lora.r  # the recipe's rank, not another one
    assert checked.card["config"]["lora"]["r"] == shipped.lora.r
    assert checked.card.get("name") == "hr"


def _pickle_next_to_weights(folder: Path) -> None:
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04 would run code if unpickled")


def _pickle_instead_of_weights(folder: Path) -> None:
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.pt")


def _wrong_peft_type(folder: Path) -> None:
    _set_config(folder, peft_type="PREFIX_TUNING")


def _wrong_base(folder: Path) -> None:
    _set_config(folder, base_model_name_or_path="meta-llama/Llama-3-8B")


def _rank_too_big(folder: Path) -> None:
    _set_config(folder, r=128)
    _set_tensors(folder, {f"{PREFIX}.q_proj.lora_A.weight": (128, 576)})


def _rank_pattern_too_big(folder: Path) -> None:
    _set_config(folder, rank_pattern={"q_proj": 512})


def _unknown_target(folder: Path) -> None:
    _set_config(folder, target_modules=["q_proj", "c_attn"])


def _target_regex(folder: Path) -> None:
    _set_config(folder, target_modules=".*proj")


def _dora(folder: Path) -> None:
    _set_config(folder, use_dora=True)


def _modules_to_save(folder: Path) -> None:
    _set_config(folder, modules_to_save=["lm_head"])


def _not_lora_tensor(folder: Path) -> None:
    _set_tensors(folder, {"model.layers.0.self_attn.q_proj.weight": (576, 576)})


def _tensor_of_undeclared_module(folder: Path) -> None:
    _set_tensors(
        folder,
        {f"{PREFIX}.k_proj.lora_A.weight": (8, 576), f"{PREFIX}.k_proj.lora_B.weight": (192, 8)},
    )


def _shape_off_rank(folder: Path) -> None:
    _set_tensors(
        folder,
        {f"{PREFIX}.q_proj.lora_A.weight": (4, 576), f"{PREFIX}.q_proj.lora_B.weight": (576, 4)},
    )


def _shape_of_another_model(folder: Path) -> None:
    _set_tensors(
        folder,
        {f"{PREFIX}.q_proj.lora_A.weight": (8, 4096), f"{PREFIX}.q_proj.lora_B.weight": (4096, 8)},
    )


def _missing_b(folder: Path) -> None:
    _set_tensors(folder, {f"{PREFIX}.q_proj.lora_A.weight": (8, 576)})


def _header_length_lies(folder: Path) -> None:
    path = folder / "adapter_model.safetensors"
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", len(data) * 10)
    path.write_bytes(bytes(data))


def _header_not_json(folder: Path) -> None:
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{")


def _offsets_past_the_data(folder: Path) -> None:
    header = json.dumps(
        {
            f"{PREFIX}.q_proj.lora_A.weight": {
                "dtype": "F32",
                "shape": [8, 576],
                "data_offsets": [0, 8 * 576 * 4],
            },
            f"{PREFIX}.q_proj.lora_B.weight": {
                "dtype": "F32",
                "shape": [576, 8],
                "data_offsets": [8 * 576 * 4, 2 * 8 * 576 * 4],
            },
        }
    ).encode()
    (folder / "adapter_model.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header + b"\0" * 100
    )


def _integer_dtype(folder: Path) -> None:
    save_file(
        {
            f"{PREFIX}.q_proj.lora_A.weight": np.zeros((8, 576), dtype=np.int32),
            f"{PREFIX}.q_proj.lora_B.weight": np.zeros((576, 8), dtype=np.int32),
        },
        str(folder / "adapter_model.safetensors"),
    )


def _symlinked_weights(folder: Path) -> None:
    weights = folder / "adapter_model.safetensors"
    real = folder.parent / "elsewhere.safetensors"
    weights.rename(real)
    weights.symlink_to(real)


REFUSALS: list[tuple[str, Callable[[Path], None], str]] = [
    ("pickle beside safetensors", _pickle_next_to_weights, "pickle"),
    ("pickle only", _pickle_instead_of_weights, "pickle"),
    ("wrong peft type", _wrong_peft_type, "only LORA"),
    ("wrong base model", _wrong_base, "trained for"),
    ("rank too big", _rank_too_big, "rank 128, over the engine's maximum of 64"),
    ("rank pattern too big", _rank_pattern_too_big, "rank 512"),
    ("unknown target module", _unknown_target, "targets c_attn, which SmolLM2"),
    ("target modules as a regex", _target_regex, "must be a list"),
    ("DoRA", _dora, "DoRA"),
    ("modules_to_save", _modules_to_save, "modules_to_save"),
    ("tensor that is not LoRA", _not_lora_tensor, "not a LoRA A/B weight"),
    ("tensor of an undeclared module", _tensor_of_undeclared_module, "not in target_modules"),
    ("shape off the rank", _shape_off_rank, "do not match rank 8"),
    ("shape of another model", _shape_of_another_model, "trained for another model"),
    ("A without B", _missing_b, "no lora_B"),
    ("header length lies", _header_length_lies, "not a valid safetensors file"),
    ("header not JSON", _header_not_json, "header is not JSON"),
    ("offsets past the data", _offsets_past_the_data, "describes 36864 bytes"),
    ("integer dtype", _integer_dtype, "dtype 'I32'"),
    ("symlinked weights", _symlinked_weights, "is a link"),
]


@pytest.mark.parametrize(
    ("spoil", "words"), [(s, w) for _, s, w in REFUSALS], ids=[i for i, _, _ in REFUSALS]
)
def test_unfit_adapters_are_refused_with_a_reason(
    tmp_path: Path, spoil: Callable[[Path], None], words: str
) -> None:
    folder = write_lora_folder(tmp_path / "hr")
    spoil(folder)
    with pytest.raises(AdapterError, match=words):
        _check(folder)


def test_oversize_files_are_refused(tmp_path: Path) -> None:
    folder = write_lora_folder(tmp_path / "hr")
    with pytest.raises(AdapterTooLargeError, match="max_file_bytes"):
        _check(folder, AdapterLimits(max_file_bytes=4096))
    with pytest.raises(AdapterTooLargeError, match="max_total_bytes"):
        _check(folder, AdapterLimits(max_total_bytes=4096))
    for i in range(3):
        (folder / f"notes{i}.md").write_text("x")
    with pytest.raises(AdapterTooLargeError, match="max_files"):
        _check(folder, AdapterLimits(max_files=4))


def test_pickle_files_are_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle must never be used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    folder = write_lora_folder(tmp_path / "hr")
    _pickle_next_to_weights(folder)
    with pytest.raises(AdapterError, match="pickle"):
        _check(folder)


def test_rank_pattern_within_limits_is_checked_per_module(tmp_path: Path) -> None:
    folder = write_lora_folder(tmp_path / "hr")
    _set_config(folder, rank_pattern={"q_proj": 4})
    _shape_off_rank(folder)  # rank 4 tensors for q_proj
    _check(folder)


def test_a_base_without_known_sizes_still_checks_names_and_ranks(tmp_path: Path) -> None:
    base = BaseModelSpec("SmolLM2-135M-Instruct", frozenset({"q_proj", "v_proj"}))
    folder = write_lora_folder(tmp_path / "hr")
    _shape_of_another_model(folder)
    check_adapter_folder(folder, name="hr", base=base, limits=LIMITS)
    _shape_off_rank(folder)
    with pytest.raises(AdapterError, match="do not match rank"):
        check_adapter_folder(folder, name="hr", base=base, limits=LIMITS)
