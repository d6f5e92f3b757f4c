"""Questions re-phrased with an alias of their fact's topic, and the guard that keeps the
held-out validation phrasings out of training in any such form.

A name of the topic (a topic name or an alias) found in a question, as whole words and
case-insensitively, is replaced by each of the fact's other aliases where that is a clean
substitution: no word of the alias already stands elsewhere in the question ("Can I carry over
unused vacation days?" -> not "Can I carry over holiday carry-over?"), a plural alias does not
follow "a"/"an", and "a"/"an" is fixed for the alias ("an account lockout" -> "a login
lockout"). Topic names are matched but not put in: they are often titles ("Reporting
phishing"), not words people type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"\w+")
_VOWEL_LETTERS = "AEFHILMNORSX"  # acronyms read with a vowel sound first: an MFA, an HR system


def substitutions(question: str, names: Sequence[str], aliases: Sequence[str]) -> list[str]:
    """The question with its longest (then first) topic name replaced by each clean alias.

    Args:
        question: a training question.
        names: the fact's topic names and aliases, the phrases to look for.
        aliases: the phrases to put in their place.

    Returns:
        One question per alias that fits, in the order of `aliases`; none without a match.
    """
    matches = _matches(question, names)
    if not matches:
        return []
    start, end = min(matches, key=lambda m: (-(m[1] - m[0]), m[0]))
    return _replaced(question, start, end, aliases)


def all_substitutions(
    question: str, names: Sequence[str], aliases: Sequence[str], *, clean: bool = True
) -> list[str]:
    """Every single substitution: each occurrence of each name replaced by each alias; with
    `clean` false, by every alias whether clean or not, with "a"/"an" as written and fixed."""
    out: list[str] = []
    for start, end in _matches(question, names):
        out += _replaced(question, start, end, aliases, clean=clean)
    return out


class HeldOut:
    """Validation questions that training must not contain, name-swapped or not.

    Compared in lower case on words alone (punctuation and spacing ignored). A swap is a
    held-out question with one occurrence of a topic name or alias replaced by another (clean
    or not). A training row that is a swap is a copy of the held-out question (`is_copy`). A
    generated question leaks (`leaks`) when it contains a held-out question, or a swap that no
    training row in `trained` already contains (those rows are training data with or without
    aliases; what is generated from them may keep their words).
    """

    def __init__(
        self, questions: Iterable[str], names: Sequence[str] = (), *, trained: Iterable[str] = ()
    ) -> None:
        questions = list(questions)
        self._held = {_normalized(q) for q in questions}
        self._swaps = {
            _normalized(v)
            for q in questions
            for v in all_substitutions(q, names, names, clean=False)
        } - self._held
        rows = [_normalized(t) for t in trained]
        new_swaps = {s for s in self._swaps if not any(s in row for row in rows)}
        self._forms = sorted(f for f in self._held | new_swaps if f.strip())

    def is_copy(self, question: str) -> bool:
        """Whether `question` is a held-out question, or one with a name swapped."""
        text = _normalized(question)
        return text in self._held or text in self._swaps

    def leaks(self, question: str) -> bool:
        """Whether `question` contains a held-out question or a new swap of one."""
        text = _normalized(question)
        return any(form in text for form in self._forms)


def _normalized(text: str) -> str:
    return " " + " ".join(_WORD.findall(text.lower())) + " "


def _matches(question: str, names: Sequence[str]) -> list[tuple[int, int]]:
    spans = []
    for name in names:
        pattern = r"(?<!\w)" + re.escape(name) + r"(?!\w)"
        spans += [(m.start(), m.end()) for m in re.finditer(pattern, question, re.IGNORECASE)]
    return sorted(set(spans))


def _replaced(
    question: str, start: int, end: int, aliases: Sequence[str], *, clean: bool = True
) -> list[str]:
    found = question[start:end].lower()
    before, after = question[:start], question[end:]
    prev = _WORD.findall(before)[-1:] or [""]
    around = {_stem(w) for w in _WORD.findall(before + " " + after)} - {""}
    out = []
    for name in aliases:
        words = _WORD.findall(name.lower())
        if name.lower() == found or not words:
            continue
        if clean and any(_stem(w) in around for w in words):
            continue
        if not clean:
            out.append(before + name + after)
        head = before
        if prev[0].lower() in ("a", "an") and re.search(r"\b(an?)\s+$", before, re.IGNORECASE):
            if clean and _plural(name):
                continue
            article = "an" if _vowel_sound(name) else "a"
            if prev[0][0].isupper():
                article = article.capitalize()
            head = re.sub(r"\b(an?)(\s+)$", rf"{article}\2", before, flags=re.IGNORECASE)
        text = name
        starts_sentence = not before.strip() or before.rstrip()[-1] in ".?!:"
        if starts_sentence and question[start].isupper():
            text = name[0].upper() + name[1:]
        out.append(head + text + after)
    return list(dict.fromkeys(out))


def _stem(word: str) -> str:
    """A word for comparison: lower case, a plural `s` dropped; short words count as none."""
    word = word.lower()
    return word.rstrip("s") if len(word) > 3 else ""


def _plural(name: str) -> bool:
    last = name.split()[-1]
    return last.islower() and last.endswith("s") and not last.endswith(("ss", "us", "is"))


def _vowel_sound(name: str) -> bool:
    first = name.split()[0]
    if sum(c.isupper() for c in first) > 1 or (first.isupper() and len(first) <= 3):
        return first[0] in _VOWEL_LETTERS
    return first[0].lower() in "aeiou"
