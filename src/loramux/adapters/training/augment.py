"""Augmentation: each training fact stated in many forms, so it generalises to new phrasings.

A small model learns a fact for new questions when the training data asks and answers it in many
different ways, not when one form is repeated. From the training file (rows grouped by their
`fact` id) and the facts table (topic, keys, canonical answer per fact), `augment_facts` builds,
per fact:

- questions: the training questions as they are, with a context sentence before or after them,
  in lower case without punctuation, with typos, and questions made from templates over the
  fact's topic ("What are the rules for parental leave?", "parental leave?", "About parental
  leave: ..."); with `aliases` (the facts table's other names for the topic, facts.py), the
  templates and topic prefixes draw over the aliases too ("What's the policy on mat leave?"),
  and training questions that name the topic are re-phrased with another of its names ("How
  long is parental leave?" -> "How long is maternity leave?", rephrase.py);
- answers: the training answers and the canonical one, also restated ("Regarding parental
  leave: ...", "Short answer: 20 weeks. ..."); every answer keeps every key of the fact
  verbatim (answers that would not are dropped);

then draws `per_fact` (question, answer) pairs with a generator seeded by `seed`. Only the
training file and the facts table are read, never held-out test data.

Validation by phrasing: `validation_phrasings` question groups per fact (a question with its
decorated copies, "I'm new here. <q> Thanks!", is one group) are held out of the augmentation
and returned as validation examples with the fact's keys, for early stopping and for choosing a
recipe (`bench/train_sweep.py`). No training question contains a held-out one, nor (with
`aliases`) a copy of one with a name of the topic swapped for another.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loramux.adapters.training.data import TrainingDataError
from loramux.adapters.training.facts import Fact, fact_names, load_facts, topic_names
from loramux.adapters.training.rephrase import HeldOut, substitutions
from loramux.errors import ConfigError

if TYPE_CHECKING:
    from loramux.config import TrainConfig

Chat = list[dict[str, str]]

CONTEXT_BEFORE = (
    "Hi!",
    "Hello.",
    "Quick question.",
    "Sorry to bother you.",
    "I'm new here.",
    "I started last week.",
    "My manager asked me to check.",
    "A colleague and I were wondering.",
    "I'm planning ahead.",
    "Good morning!",
    "Hey, hope you can help.",
    "I couldn't find this anywhere.",
    "Question for you.",
    "I'm filling in a form right now.",
)
CONTEXT_AFTER = (
    "Thanks!",
    "Thank you.",
    "Thanks a lot.",
    "Any idea?",
    "Please help.",
    "Cheers.",
    "Asking for a colleague.",
    "I need to know today.",
)
REQUEST_WRAPPERS = (
    "Can you tell me this: {q}",
    "Do you know? {q}",
    "I have a question. {q}",
    "{q} I'd like a short answer.",
    "Help me out here: {q}",
    "One thing I wanted to ask: {q}",
)
TOPIC_QUESTIONS = (
    "What are the rules for {t}?",
    "What's the policy on {t}?",
    "Tell me about {t}.",
    "{t}?",
    "{t} - how does it work here?",
    "Can you explain {t} to me?",
    "What do I need to know about {t}?",
    "I have a question about {t}.",
    "Info on {t}, please.",
    "How does {t} work for employees?",
    "Where can I find the details on {t}?",
    "Could you summarise {t} for me?",
    "{t}: what applies to me?",
    "what about {t}",
    "Explain {t} like I'm new.",
    "Is there anything I should know regarding {t}?",
    "How is {t} handled at our company?",
    "Quick one about {t} - what's the deal?",
)
ALIAS_REPHRASINGS = 2
"""Copies of each training question that names its topic, re-phrased with another name."""
TOPIC_PREFIXES = ("About {t}: {q}", "Re {t}: {q}", "{q} (It's about {t}.)", "On {t}. {q}")
ANSWER_FORMS = (
    "{a}",
    "{a}",
    "Sure. {a}",
    "Good question. {a}",
    "Regarding {t}: {a}",
    "About {t}: {a}",
    "Short answer: {k}. {a}",
    "{a} Let me know if you need more.",
)


@dataclass(frozen=True)
class AugmentedData:
    train: list[Chat]
    validation: list[Chat]
    validation_keys: list[tuple[str, ...]]
    """The keys each validation example's answer must contain (same order as `validation`)."""
    facts: int


def load_fact_rows(path: Path, facts: dict[str, Fact]) -> dict[str, list[tuple[str, str]]]:
    """(question, answer) pairs per fact id from a training file whose rows carry `fact`.

    Raises:
        TrainingDataError: a row without `fact`, a fact id the table lacks, or a row that is not
            one user turn and one assistant turn.
    """
    by_fact: dict[str, list[tuple[str, str]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        row = json.loads(line)
        fact = row.get("fact")
        if not isinstance(fact, str):
            raise TrainingDataError(f'{where}: `augment` needs a "fact" id on every row')
        if fact not in facts:
            raise TrainingDataError(f"{where}: fact {fact!r} is not in the facts table")
        turns = row["messages"]
        if [t["role"] for t in turns] != ["user", "assistant"]:
            raise TrainingDataError(f"{where}: `augment` needs one user and one assistant turn")
        by_fact.setdefault(fact, []).append((turns[0]["content"], turns[1]["content"]))
    return by_fact


def phrasing_groups(questions: list[str]) -> list[list[str]]:
    """Questions grouped by phrasing: a question and its copies with words added around it."""
    groups: list[list[str]] = []
    for q in sorted(set(questions), key=lambda s: (len(s), s)):
        for group in groups:
            if group[0].lower() in q.lower():
                group.append(q)
                break
        else:
            groups.append([q])
    return groups


def typo(text: str, rng: random.Random) -> str:
    """One or two typos (swapped, dropped or doubled letters) in words of four letters or more."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 4]
    for i in rng.sample(candidates, min(len(candidates), rng.choice((1, 2)))):
        w = words[i]
        j = rng.randrange(1, len(w) - 2) if len(w) > 3 else 0
        kind = rng.randrange(3)
        if kind == 0:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif kind == 1:
            w = w[:j] + w[j + 1 :]
        else:
            w = w[:j] + w[j] + w[j:]
        words[i] = w
    return " ".join(words)


def casual(text: str) -> str:
    """Lower case, no final punctuation: how people type into a chat box."""
    return text.lower().rstrip("?.! ")


def question_forms(
    questions: list[str],
    fact: Fact,
    rng: random.Random,
    noise: float,
    *,
    aliases: bool = False,
    held: HeldOut | None = None,
) -> list[str]:
    """Many different questions for one fact (see the module docstring); with `aliases`, the
    topic templates and prefixes draw over the fact's aliases too, and each question naming the
    topic gets up to `ALIAS_REPHRASINGS` copies with another name. No form `held` blocks."""
    forms: list[str] = list(questions)
    names = fact_names(fact, aliases=aliases)
    for q in questions:
        forms.append(f"{rng.choice(CONTEXT_BEFORE)} {q}")
        forms.append(f"{q} {rng.choice(CONTEXT_AFTER)}")
        forms.append(rng.choice(REQUEST_WRAPPERS).format(q=q))
        forms.append(rng.choice(TOPIC_PREFIXES).format(t=rng.choice(names), q=q))
        forms.append(casual(q))
        if aliases:
            variants = substitutions(q, names, fact.aliases)
            forms += rng.sample(variants, min(ALIAS_REPHRASINGS, len(variants)))
    for template in TOPIC_QUESTIONS:
        t = rng.choice(names)
        forms.append(template.format(t=t[0].upper() + t[1:] if template[0] == "{" else t))
    if held is not None:
        forms = [f for f in forms if not held.leaks(f)]
    for i, form in enumerate(forms):
        if rng.random() < noise:
            forms[i] = typo(form, rng)
        elif rng.random() < noise / 2:
            forms[i] = casual(form)
    return list(dict.fromkeys(forms))


def answer_forms(answers: list[str], fact: Fact) -> list[str]:
    """The fact's answers and restatements of them; each keeps every key verbatim."""
    forms = []
    keys = ", ".join(fact.keys)
    names = topic_names(fact.topic)
    for a in dict.fromkeys([fact.answer, *answers]):
        for template in ANSWER_FORMS:
            forms.append(template.format(a=a, t=names[0], k=keys))
    return [f for f in dict.fromkeys(forms) if all(k in f for k in fact.keys)]


def augment_facts(
    train_path: Path,
    facts_path: Path,
    *,
    per_fact: int,
    validation_phrasings: int,
    noise: float,
    seed: int,
    aliases: bool = True,
) -> AugmentedData:
    """Augmented training chats and the held-out validation phrasings (see the module docstring).

    Deterministic: the same files and arguments give the same examples in the same order. With
    `aliases` false the facts' aliases are not used (the same examples as for a table without
    them).

    Raises:
        TrainingDataError: malformed files, a fact with too few phrasings to hold some out, or a
            fact whose answers all lack a key.
    """
    facts = load_facts(facts_path)
    by_fact = load_fact_rows(train_path, facts)
    train: list[Chat] = []
    validation: list[Chat] = []
    val_keys: list[tuple[str, ...]] = []
    for fact_id in sorted(by_fact):
        fact = facts[fact_id]
        rng = random.Random(f"{seed}:{fact_id}")
        pairs = by_fact[fact_id]
        groups = phrasing_groups([q for q, _ in pairs])
        if validation_phrasings >= len(groups):
            raise TrainingDataError(
                f"`augment.validation_phrasings` is {validation_phrasings}, but fact {fact_id} "
                f"has only {len(groups)} phrasing(s) in {train_path}"
            )
        rng.shuffle(groups)
        held = {q for g in groups[:validation_phrasings] for q in g}
        for g in groups[:validation_phrasings]:
            validation.append(_chat(g[0], fact.answer))
            val_keys.append(fact.keys)
        names = fact_names(fact, aliases=True) if aliases else []
        copies = HeldOut(held, names)
        kept = [(q, a) for q, a in pairs if q not in held and not copies.is_copy(q)]
        guard = HeldOut(held, names, trained=[q for q, _ in kept])
        questions = question_forms(
            [q for q, _ in kept], fact, rng, noise, aliases=aliases, held=guard
        )
        answers = answer_forms([a for _, a in kept], fact)
        if not answers:
            raise TrainingDataError(f"no answer of fact {fact_id} holds all its keys")
        chosen = [_chat(q, a) for q, a in kept]  # every training row once, as written
        grid = [(q, a) for q in questions for a in answers]
        rng.shuffle(grid)
        # Spread the draws over the questions: each question form first, then answers vary.
        seen_q: set[str] = {q for q, _ in kept}
        rest = []
        for q, a in grid:
            if q not in seen_q:
                seen_q.add(q)
                chosen.append(_chat(q, a))
            else:
                rest.append((q, a))
        chosen += [_chat(q, a) for q, a in rest]
        train += chosen[: max(per_fact, len(kept))]
    random.Random(seed).shuffle(train)
    return AugmentedData(train, validation, val_keys, len(by_fact))


def _chat(question: str, answer: str) -> Chat:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def augment_from_config(config: TrainConfig) -> AugmentedData:
    """`augment_facts` with a training config's `augment` block, data and seed (what `train`
    and `bench/train_sweep.py` both train on)."""
    a = config.augment
    if a.facts is None:
        raise ConfigError("augment.facts: the facts table is required with augment.enabled")
    return augment_facts(
        config.data.train,
        a.facts,
        per_fact=a.per_fact,
        validation_phrasings=a.validation_phrasings,
        noise=a.noise,
        seed=config.seed,
        aliases=a.aliases,
    )
