"""Fact aliases: parsed from markdown and JSONL facts tables (malformed ones refused), used by
the augmentation only with `augment.aliases`, keys kept, validation phrasings kept out of
training even with a name swapped, deterministic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loramux.adapters.training.augment import augment_facts, load_facts
from loramux.adapters.training.data import TrainingDataError
from loramux.adapters.training.facts import fact_names
from loramux.adapters.training.rephrase import all_substitutions, substitutions
from loramux.config import load_train_config
from loramux.errors import ConfigError
from tests.conftest import REPO

DATA = REPO / "demo" / "data"
TASKS = ("hr", "it", "finance")
HEADER = "| id | topic | keys | canonical answer | aliases |\n| --- | --- | --- | --- | --- |\n"


def _augment(task: str = "hr", facts: Path | None = None, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"per_fact": 32, "validation_phrasings": 2, "noise": 0.2, "seed": 0}
    args.update(kw)
    facts = facts or DATA / task / "facts.md"
    return augment_facts(DATA / task / "train.jsonl", facts, **args)  # type: ignore[arg-type]


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text.lower())) + " "


def _new_aliases_in(questions: list[str], task: str) -> set[str]:
    """Aliases found in `questions` that neither the training file's questions nor the topic use."""
    facts = load_facts(DATA / task / "facts.md")
    rows = [json.loads(x) for x in (DATA / task / "train.jsonl").read_text().splitlines()]
    original = " || ".join(_words(r["messages"][0]["content"]) for r in rows)
    asked = " || ".join(_words(q) for q in questions)
    found = set()
    for fact in facts.values():
        for alias in fact.aliases:
            a = _words(alias)
            if a not in original and a not in _words(fact.topic) and a in asked:
                found.add(alias)
    return found


def test_aliases_are_read_from_the_markdown_table_and_the_answer_stays_whole() -> None:
    facts = load_facts(DATA / "hr" / "facts.md")
    bike = facts["hr_bike_leasing"]
    assert "cycle to work scheme" in bike.aliases
    assert 4 <= len(bike.aliases) <= 8
    assert bike.answer.endswith("sign up in Harbor.")
    assert all(4 <= len(f.aliases) <= 8 for f in facts.values())


def test_a_table_without_the_aliases_column_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "f.md"
    path.write_text(
        "| id | topic | keys | canonical answer |\n| --- | --- | --- | --- |\n"
        "| x | Bike leasing | `VeloFleet` | Lease via VeloFleet. |\n"
    )
    assert load_facts(path)["x"].aliases == ()


def test_aliases_are_read_from_jsonl_and_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    rows = [
        {"id": "a", "topic": "VPN client", "keys": ["FjordLink"], "answer": "Use FjordLink."},
        {
            "id": "b",
            "topic": "Payslips",
            "keys": ["Paystream"],
            "answer": "In Paystream.",
            "aliases": ["pay stub", " wage slip "],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    facts = load_facts(path)
    assert facts["a"].aliases == ()
    assert facts["b"].aliases == ("pay stub", "wage slip")


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("f.md", HEADER + "| x | X | `42` | It is 42. | a; ; b |\n", "line 3: an empty alias"),
        ("f.md", HEADER + "| x | X | `42` | It is 42. |\n", "line 3: 4 cell"),
        (
            "f.md",
            "| id | topic | keys | canonical answer | synonyms |\n| x | X | `42` | 42. | a |\n",
            "line 1: the header must be",
        ),
        (
            "f.md",
            HEADER + "| x | Bike leasing | `VeloFleet` | Via VeloFleet. | VeloFleet bikes |\n",
            "line 3: alias 'VeloFleet bikes' of x contains its key 'VeloFleet'",
        ),
        (
            "f.md",
            HEADER + "| x | Payday | `25th` | The 25th. | pay date |\n"
            "| y | Payslips | `Paystream` | In Paystream. | pay date; pay stub |\n",
            "line 4: 'pay date' \\(a topic name or alias\\) names both x and y",
        ),
        (
            "f.jsonl",
            '{"id": "x", "topic": "X", "keys": ["42"], "answer": "42.", "aliases": "a; b"}\n',
            'line 1: "aliases" must be a list of strings',
        ),
        (
            "f.jsonl",
            '{"id": "x", "topic": "X", "keys": ["42"], "answer": "42.", "alias": ["a"]}\n',
            "line 1: unknown field\\(s\\) alias",
        ),
    ],
)
def test_malformed_aliases_are_refused_naming_file_and_line(
    tmp_path: Path, name: str, text: str, words: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TrainingDataError, match=re.escape(str(path)) + ", " + words):
        load_facts(path)


@pytest.mark.parametrize("task", TASKS)
def test_augmented_questions_use_aliases_only_when_switched_on(task: str) -> None:
    with_aliases = [c[0]["content"] for c in _augment(task).train]
    without = [c[0]["content"] for c in _augment(task, aliases=False).train]
    assert len(_new_aliases_in(with_aliases, task)) >= 20
    assert _new_aliases_in(without, task) == set()


def test_aliases_off_is_the_same_as_a_table_without_aliases(tmp_path: Path) -> None:
    lines = (DATA / "hr" / "facts.md").read_text().splitlines()
    stripped = [re.sub(r" [^|]*\|$", "", x) if x.startswith("|") else x for x in lines]
    (tmp_path / "facts.md").write_text("\n".join(stripped) + "\n")
    assert all(f.aliases == () for f in load_facts(tmp_path / "facts.md").values())
    plain = _augment(facts=tmp_path / "facts.md")
    off = _augment(aliases=False)
    assert off.train == plain.train
    assert off.validation == plain.validation
    assert _augment().train != plain.train


@pytest.mark.parametrize("task", TASKS)
def test_every_answer_keeps_its_facts_keys_verbatim_with_aliases(task: str) -> None:
    facts = load_facts(DATA / task / "facts.md")
    for chat in _augment(task).train:
        question, answer = chat[0]["content"], chat[1]["content"]
        hits = [f for f in facts.values() if all(k in answer for k in f.keys)]
        assert hits, f"no fact's keys verbatim in {answer!r}"
        # an alias never gives the answer away: no question contains its fact's key
        assert not any(k.lower() in question.lower() for f in hits for k in f.keys), question


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_questions_stay_out_of_training_even_with_a_name_swapped(
    task: str, seed: int
) -> None:
    """No training question contains a validation question, or one with a topic name or alias
    swapped for another, unless a training row as written already did (that is the data)."""
    facts = load_facts(DATA / task / "facts.md")
    rows = [json.loads(x) for x in (DATA / task / "train.jsonl").read_text().splitlines()]
    fact_of = {r["messages"][0]["content"]: r["fact"] for r in rows}
    written = [_words(q) for q in fact_of]
    data = _augment(task, seed=seed)
    trained = " || ".join(_words(c[0]["content"]) for c in data.train)
    swapped = 0
    for chat in data.validation:
        question = chat[0]["content"]
        assert _words(question) not in trained, question
        fact = facts[fact_of[question]]
        names = fact_names(fact, aliases=True)
        for form in all_substitutions(question, names, names):
            swapped += 1
            if not any(_words(form) in w for w in written):
                assert _words(form) not in trained, form
    assert swapped > 0, "no validation question names its topic: the test checks nothing"


def test_a_training_question_that_is_a_held_out_one_with_an_alias_is_kept_out(
    tmp_path: Path,
) -> None:
    (tmp_path / "f.md").write_text(
        HEADER + "| p | Parental leave | `20 weeks` | 20 weeks, paid. | maternity leave |\n"
    )
    twins = ["How long is parental leave?", "How long is maternity leave?"]
    others = ["Do new parents get paid time off?", "What do I get when my baby arrives?"]
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": "You get 20 weeks."},
                ],
                "fact": "p",
            }
        )
        for q in twins + others
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    checked = 0
    for seed in range(12):
        data = augment_facts(
            tmp_path / "t.jsonl",
            tmp_path / "f.md",
            per_fact=40,
            validation_phrasings=1,
            noise=0.0,
            seed=seed,
        )
        held = data.validation[0][0]["content"]
        trained = {_words(c[0]["content"]) for c in data.train}
        if held in twins:
            checked += 1
            assert not any(_words(twin) in t for twin in twins for t in trained), held
    assert checked > 0


def test_same_seed_same_examples_with_aliases() -> None:
    a, b, c = _augment(), _augment(), _augment(seed=1)
    assert a.train == b.train
    assert a.validation == b.validation
    assert a.train != c.train
    assert len(a.train) == 15 * 32


@pytest.mark.parametrize(
    ("question", "names", "aliases", "expected"),
    [
        (
            "How long is an account lockout?",
            ["account lockout", "login lockout", "lock"],
            ["login lockout", "MFA"],
            ["How long is a login lockout?", "How long is an MFA?"],
        ),
        (  # the alias would repeat a word next to it: skipped
            "What's the wifi network name?",
            ["wifi", "wireless network", "WLAN"],
            ["wireless network", "WLAN"],
            ["What's the WLAN network name?"],
        ),
        (  # a plural alias after "a": skipped
            "Do I need a receipt?",
            ["receipt", "paper receipts", "proof of purchase"],
            ["paper receipts", "proof of purchase"],
            ["Do I need a proof of purchase?"],
        ),
        (  # a capital kept at the start of a sentence
            "Parental leave - how long?",
            ["parental leave", "mat leave"],
            ["mat leave"],
            ["Mat leave - how long?"],
        ),
        ("Where is my payslip?", ["pay stub"], ["pay stub"], []),
    ],
)
def test_substitutions_are_clean(
    question: str, names: list[str], aliases: list[str], expected: list[str]
) -> None:
    assert substitutions(question, names, aliases) == expected


def test_augment_aliases_option_defaults_on_and_is_typed(tmp_path: Path) -> None:
    config = load_train_config(REPO / "configs" / "train" / "hr.yaml")
    assert config.augment.aliases is True
    path = tmp_path / "t.yaml"
    base = (
        f"name: t\noutput_dir: {tmp_path / 'o'}\ndata: {{train: {DATA / 'hr' / 'train.jsonl'}}}\n"
    )
    facts = DATA / "hr" / "facts.md"
    path.write_text(base + f"augment: {{enabled: true, facts: {facts}, aliases: false}}\n")
    assert load_train_config(path).augment.aliases is False
    path.write_text(base + f"augment: {{enabled: true, facts: {facts}, aliases: sometimes}}\n")
    with pytest.raises(ConfigError, match="augment.aliases"):
        load_train_config(path)
    path.write_text(base + f"augment: {{enabled: true, facts: {facts}, alias: false}}\n")
    with pytest.raises(ConfigError, match="augment.alias"):
        load_train_config(path)
