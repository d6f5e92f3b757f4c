"""`loramux eval`: bad input is one readable line and exit code 1; real runs write JSON + PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loramux.cli import app
from tests.builders import write_lora_folder
from tests.conftest import DEMO_ADAPTERS, REPO

runner = CliRunner()
HR_TEST = REPO / "demo" / "data" / "hr" / "test.jsonl"
IT_TEST = REPO / "demo" / "data" / "it" / "test.jsonl"
HR_ITEMS = [10, 26, 29, 36, 38, 39, 9, 12]
"""8 held-out hr questions (different phrasings of 6 facts) that no base model can know."""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    f = tmp_path / "c.yaml"
    f.write_text(f"paths: {{data_dir: {tmp_path / 'data'}}}\n")
    return f


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


HR, IT, HR_DATA = str(DEMO_ADAPTERS / "hr"), str(DEMO_ADAPTERS / "it"), str(HR_TEST)
REPLAY = str(REPO / "demo" / "data" / "general" / "replay.jsonl")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("task", "--adapter", "/nonexistent", "--data", HR_DATA), "is not a folder"),
        (("task", "--adapter", str(REPO / "demo"), "--data", HR_DATA), "no adapter_config"),
        (("task", "--data", HR_DATA), "name at least one adapter"),
        (("task", "--adapter", HR, "--data", "/nope.jsonl"), "/nope.jsonl"),
        (("task", "--adapter", HR, "--data", HR_DATA, "--metric", "bleu"), "unknown metric"),
        (("task", "-a", IT, "-a", HR, "--data", HR_DATA), "no --data named 'it'"),
        (("forgetting", "--benchmark", "mmlu_pro"), "unknown benchmark 'mmlu_pro'"),
        (("forgetting", "--device", "tpu"), "choose auto, cpu or cuda"),
        (("matrix", "--data", str(REPO / "README.md")), "README.md, line 1: not valid JSON"),
        (("matrix", "--data", REPLAY, "--metric", "key_accuracy"), "needs `keys`"),
    ],
)
def test_bad_input_is_one_line_without_a_trace(
    config: Path, args: tuple[str, ...], words: str
) -> None:
    code, out = run("eval", *args, "--config", str(config))
    assert code == 1
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("error: ")
    assert words in lines[0]
    assert "Traceback" not in out


@pytest.mark.slow
def test_an_adapter_that_does_not_fit_the_base_model_is_refused(
    config: Path, tmp_path: Path
) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    folder = write_lora_folder(tmp_path / "odd")
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    wrong = {  # the base model's q_proj takes 576 inputs, not 100
        f"{prefix}.lora_A.weight": np.zeros((8, 100), dtype=np.float32),
        f"{prefix}.lora_B.weight": np.zeros((576, 8), dtype=np.float32),
    }
    save_file(wrong, str(folder / "adapter_model.safetensors"))
    code, out = run(
        "eval", "task", "--adapter", f"hr={folder}", "--data", HR_DATA,
        "--limit", "1", "--device", "cpu", "--config", str(config),
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in out
    assert out.strip().splitlines()[-1].startswith("error: adapter 'hr'")


@pytest.mark.slow
def test_hr_adapter_beats_the_base_model_on_held_out_hr_questions(
    config: Path, tmp_path: Path
) -> None:
    lines = HR_TEST.read_text(encoding="utf-8").splitlines()
    data = tmp_path / "hr" / "test.jsonl"
    data.parent.mkdir()
    data.write_text("\n".join(lines[i] for i in HR_ITEMS) + "\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    code, out = run(
        "eval", "task", "--adapter", str(DEMO_ADAPTERS / "hr"), "--data", str(data),
        "--out", str(out_dir), "--device", "cpu", "--config", str(config),
    )  # fmt: skip
    assert code == 0, out
    report = json.loads((out_dir / "task.json").read_text())
    result = report["results"][0]
    assert (result["task"], result["adapter"], result["items"]) == ("hr", "hr", 8)
    assert result["metric"] == "key_accuracy"
    assert result["adapter_scores"]["key_accuracy"] > result["base"]["key_accuracy"]
    assert result["base"]["key_accuracy"] == 0  # invented facts: the base model cannot know them
    assert (out_dir / "task.png").stat().st_size > 0
    assert "key_accuracy" in out


@pytest.mark.slow
def test_matrix_has_a_base_row_and_every_adapter_on_every_task(
    config: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "m"
    code, out = run(
        "eval", "matrix", "--adapter", str(DEMO_ADAPTERS / "hr"), "--adapter",
        str(DEMO_ADAPTERS / "it"), "--data", str(HR_TEST), "--data", str(IT_TEST),
        "--limit", "2", "--max-new-tokens", "12", "--out", str(out_dir), "--device", "cpu",
        "--config", str(config),
    )  # fmt: skip
    assert code == 0, out
    report = json.loads((out_dir / "matrix.json").read_text())
    assert report["rows"] == ["base", "hr", "it"]
    assert report["cols"] == ["hr", "it"]
    assert len(report["matrix"]) == 3
    assert all(len(row) == 2 for row in report["matrix"])
    assert set(report["misroute_cost"]) == {"hr", "it"}
    assert set(report["misroute_cost"]["hr"]) == {"base", "it"}
    assert (out_dir / "matrix.png").stat().st_size > 0
    assert "misroute cost" in out


@pytest.mark.slow
def test_forgetting_writes_json_and_png(config: Path, tmp_path: Path, olmo_wheel: Path) -> None:
    out_dir = tmp_path / "f"
    code, out = run(
        "eval", "forgetting", "--adapter", HR, "--benchmark", "arc_easy",
        "--benchmark", "arc_challenge", "--per-benchmark", "2", "--out", str(out_dir),
        "--device", "cpu", "--config", str(config),
    )  # fmt: skip
    assert code == 0, out
    report = json.loads((out_dir / "forgetting.json").read_text())
    assert report["settings"]["items"] == {"arc_easy": 2, "arc_challenge": 2}
    assert set(report["accuracy"]) == {"base", "hr"}
    assert "average" in report["vs_base"]["hr"]
    assert (out_dir / "forgetting.png").stat().st_size > 0
