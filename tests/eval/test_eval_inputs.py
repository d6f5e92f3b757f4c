"""What `loramux eval` reads: adapters by folder, NAME=FOLDER or config name; task data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loramux.errors import AdapterError
from loramux.eval.inputs import EvalInputError, load_task_sets, resolve_adapters
from loramux.eval.task import choose_metric, pair_adapters_with_tasks
from tests.conftest import DEMO_ADAPTERS, REPO

HR_TEST = REPO / "demo" / "data" / "hr" / "test.jsonl"


def test_adapters_by_folder_by_name_equals_folder_and_by_config_name() -> None:
    specs = resolve_adapters(
        [str(DEMO_ADAPTERS / "hr"), f"plain={DEMO_ADAPTERS / 'ablation' / 'hr-plain'}", "it"],
        {"it": DEMO_ADAPTERS / "it"},
    )
    assert [(s.name, s.path.name) for s in specs] == [
        ("hr", "hr"),
        ("plain", "hr-plain"),
        ("it", "it"),
    ]


@pytest.mark.parametrize(
    ("values", "error", "words"),
    [
        (["/nonexistent"], EvalInputError, "is not a folder"),
        ([str(REPO / "demo")], AdapterError, "no adapter_config.json"),
        ([str(DEMO_ADAPTERS / "hr"), f"hr={DEMO_ADAPTERS / 'it'}"], EvalInputError, "both named"),
        ([f"base={DEMO_ADAPTERS / 'hr'}"], EvalInputError, "base model's row"),
    ],
)
def test_bad_adapters_are_refused(values: list[str], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        resolve_adapters(values, {})


def test_task_files_are_named_after_their_folder_or_given_name(tmp_path: Path) -> None:
    other = tmp_path / "finance_q3.jsonl"
    other.write_text(HR_TEST.read_text(encoding="utf-8"), encoding="utf-8")
    sets = load_task_sets([str(HR_TEST), str(other), f"x={HR_TEST}"], limit=5)
    assert [(s.name, len(s.examples)) for s in sets] == [("hr", 5), ("finance_q3", 5), ("x", 5)]
    example = sets[0].examples[0]
    assert example.keys == ("27",)
    assert [t["role"] for t in example.prompt] == ["user"]
    assert "27" in example.reference


def test_numbered_generic_files_are_named_after_their_folder(tmp_path: Path) -> None:
    text = HR_TEST.read_text(encoding="utf-8")
    for rel in ("hr/test2.jsonl", "it/heldout10.jsonl", "x/test2b.jsonl"):
        (tmp_path / rel).parent.mkdir()
        (tmp_path / rel).write_text(text, encoding="utf-8")
    sets = load_task_sets(
        [str(tmp_path / r) for r in ("hr/test2.jsonl", "it/heldout10.jsonl", "x/test2b.jsonl")]
    )
    assert [s.name for s in sets] == ["hr", "it", "test2b"]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{not json", "line 1: not valid JSON"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}]}), "reference answer"),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"},
                    ],
                    "keys": [3],
                }
            ),
            "`keys` must be a list",
        ),
    ],
)
def test_malformed_task_lines_name_file_and_line(tmp_path: Path, line: str, words: str) -> None:
    bad = tmp_path / "test.jsonl"
    bad.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(EvalInputError, match=words):
        load_task_sets([str(bad)])


def test_each_adapter_takes_the_data_of_its_name_and_key_accuracy_needs_keys(
    tmp_path: Path,
) -> None:
    hr, it = load_task_sets([str(HR_TEST), str(REPO / "demo" / "data" / "it" / "test.jsonl")])
    assert pair_adapters_with_tasks(["it", "hr"], [hr, it]) == [it, hr]
    assert pair_adapters_with_tasks(["anything"], [hr]) == [hr]
    with pytest.raises(EvalInputError, match="no --data named 'finance'"):
        pair_adapters_with_tasks(["finance", "hr"], [hr, it])
    assert choose_metric([hr, it], None) == "key_accuracy"
    (replay,) = load_task_sets([str(REPO / "demo" / "data" / "general" / "replay.jsonl")])
    assert choose_metric([hr, replay], None) == "token_f1"
    with pytest.raises(EvalInputError, match="needs `keys`"):
        choose_metric([replay], "key_accuracy")
