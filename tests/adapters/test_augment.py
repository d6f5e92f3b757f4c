"""Augmentation: deterministic, keys verbatim, held-out phrasings kept out, test files never read;
and its config: unknown keys and conflicting splits refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loramux.adapters.training.augment import (
    augment_facts,
    load_facts,
    phrasing_groups,
    topic_names,
    typo,
)
from loramux.adapters.training.data import TrainingDataError
from loramux.config import load_train_config
from loramux.errors import ConfigError
from tests.conftest import REPO

HR = REPO / "demo" / "data" / "hr"


def _augment(train: Path = HR / "train.jsonl", facts: Path = HR / "facts.md", **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"per_fact": 30, "validation_phrasings": 2, "noise": 0.2, "seed": 0}
    args.update(kw)
    return augment_facts(train, facts, **args)  # type: ignore[arg-type]


def test_same_seed_same_examples_other_seed_others() -> None:
    a, b, c = _augment(), _augment(), _augment(seed=1)
    assert a.train == b.train
    assert a.validation == b.validation
    assert a.train != c.train
    assert len(a.train) == 15 * 30
    assert a.facts == 15


def test_every_answer_keeps_every_key_verbatim() -> None:
    facts = load_facts(HR / "facts.md")
    rows = [json.loads(x) for x in (HR / "train.jsonl").read_text().splitlines()]
    fact_of = {r["messages"][0]["content"]: r["fact"] for r in rows}
    data = _augment()
    for chat in data.train:
        answer = chat[1]["content"]
        hits = [f for f in facts.values() if all(k in answer for k in f.keys)]
        assert hits, f"no fact's keys verbatim in {answer!r}"
    for chat, keys in zip(data.validation, data.validation_keys, strict=True):
        assert keys == facts[fact_of[chat[0]["content"]]].keys
        assert all(k in chat[1]["content"] for k in keys)


def test_many_different_question_forms_per_fact() -> None:
    data = _augment(per_fact=40)
    questions = {c[0]["content"] for c in data.train}
    assert len(questions) > 15 * 25, "most drawn questions must differ"
    originals = {json.loads(x)["messages"][0]["content"] for x in (HR / "train.jsonl").open()}
    assert len(questions - originals) > 15 * 15


def test_held_out_phrasings_and_their_copies_stay_out_of_training() -> None:
    data = _augment()
    assert len(data.validation) == 15 * 2
    trained = " || ".join(c[0]["content"].lower() for c in data.train)
    for chat in data.validation:
        assert chat[0]["content"].lower() not in trained


def test_reads_only_the_training_file_and_the_facts_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("train.jsonl", "facts.md"):
        (tmp_path / name).write_text((HR / name).read_text())
    (tmp_path / "test.jsonl").write_text("not even json\n")
    read: list[str] = []
    real_read_text = Path.read_text

    def spy(self: Path, *a: object, **kw: object) -> str:
        read.append(self.name)
        return real_read_text(self, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", spy)

    def no_open(*a: object, **kw: object) -> None:
        raise AssertionError(f"augmentation opened {a}")

    monkeypatch.setattr("builtins.open", no_open)
    data = _augment(tmp_path / "train.jsonl", tmp_path / "facts.md")
    assert sorted(set(read)) == ["facts.md", "train.jsonl"]
    monkeypatch.undo()
    assert data.train == _augment().train


def test_groups_hold_a_question_with_its_decorated_copies() -> None:
    groups = phrasing_groups(
        ["Can I lease a bike?", "Hi. Can I lease a bike? Thanks!", "Who is the partner?"]
    )
    assert sorted(map(sorted, groups)) == [
        ["Can I lease a bike?", "Hi. Can I lease a bike? Thanks!"],
        ["Who is the partner?"],
    ]


def test_topic_names_and_typos() -> None:
    assert topic_names("Onboarding / Welcome Day") == [
        "onboarding / welcome day",
        "onboarding",
        "welcome day",
    ]
    assert topic_names("HR portal") == ["HR portal"]
    assert topic_names("Office Wi-Fi") == ["office Wi-Fi"]
    import random

    text = "How many vacation days do I get this year?"
    noisy = typo(text, random.Random(3))
    assert noisy != text
    assert len(noisy.split()) == len(text.split())


def test_rows_without_a_fact_id_are_refused(tmp_path: Path) -> None:
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    (tmp_path / "t.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(TrainingDataError, match='line 1: `augment` needs a "fact" id'):
        _augment(tmp_path / "t.jsonl")


def test_too_few_phrasings_to_hold_out_is_an_error() -> None:
    with pytest.raises(TrainingDataError, match="validation_phrasings` is 8"):
        _augment(validation_phrasings=8)


def test_a_fact_whose_answer_lacks_its_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f.md").write_text(
        "| id | topic | keys | canonical answer |\n| x | X | `42` | No. |\n"
    )
    with pytest.raises(TrainingDataError, match="lacks its key"):
        load_facts(tmp_path / "f.md")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (f"augment: {{enabled: true, facts: {HR / 'facts.md'}, typos: 3}}\n", "augment.typos"),
        ("augment: {enabled: true}\n", "`augment.facts`: a facts table is needed"),
        (
            f"augment: {{enabled: true, facts: {HR / 'facts.md'}}}\n"
            "early_stopping: {validation_split: 0.2}\n",
            "`early_stopping.validation_split` does not apply with `augment`",
        ),
        (
            f"augment: {{enabled: true, facts: {HR / 'facts.md'}}}\n"
            f"data: {{train: {HR / 'train.jsonl'}, validation: {HR / 'train.jsonl'}}}\n",
            "set `augment.validation_phrasings: 0`",
        ),
        ("distill: {enabled: true, cache_topk: 8}\n", "distill.cache_topk"),
        ("lora: {target_modules: every-linear}\n", "lora.target_modules"),
    ],
)
def test_bad_augment_and_distill_options_are_refused(
    tmp_path: Path, extra: str, words: str
) -> None:
    data = "" if "data:" in extra else f"data: {{train: {HR / 'train.jsonl'}}}\n"
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\noutput_dir: {tmp_path / 'o'}\n" + data + extra)
    with pytest.raises(ConfigError, match=words):
        load_train_config(path)


def test_augment_and_all_linear_parse_with_paths_resolved() -> None:
    config = load_train_config(REPO / "configs" / "train" / "hr.yaml")
    assert config.augment.enabled
    assert config.augment.facts == HR / "facts.md"
    assert config.lora.target_modules == "all-linear"
    assert config.distill.cache_top_k > 0
