"""Builds the adapter chat data (train/test per department) from the fact tables.

train.jsonl: every hand-written train phrasing once with a rotating answer,
plus TRAIN_WRAPPED_PER_FACT extra lines where a punctuated train phrasing gets
a short context prefix and/or a suffix from the TRAIN_* wrapper lists.
test.jsonl: every held-out phrasing once with the canonical answer; about a
third get a wrapper from the TEST_* lists, which share nothing with TRAIN_*.
"""

TRAIN_WRAPPED_PER_FACT = 3

TRAIN_PREFIXES = [
    "Hi!",
    "Hello!",
    "Quick question.",
    "Hey there.",
    "Sorry to bother you.",
    "I'm new at Altavia.",
    "I just joined the team in Brennsby.",
    "Good afternoon.",
    "My manager told me to check with you.",
    "I couldn't find this on the intranet.",
    "I'm on the early shift today.",
]
TRAIN_SUFFIXES = ["Thanks!", "Thank you.", "Thanks in advance!", "Cheers!"]

TEST_PREFIXES = [
    "Good morning.",
    "Hello, I have a question.",
    "A colleague asked me this and I wasn't sure.",
    "Question from the dispatch team.",
    "I've been away for a few weeks and I'm a bit out of the loop.",
]
TEST_SUFFIXES = ["Much appreciated.", "Thanks a lot."]


def _cap(text):
    return text[0].upper() + text[1:]


def wrap(question, rng, prefixes, suffixes):
    """Add a prefix, a suffix, or both to a question."""
    mode = rng.choice(["prefix", "prefix", "suffix", "both"])
    out = question
    if mode in ("prefix", "both"):
        out = f"{rng.choice(prefixes)} {_cap(out)}"
    if mode in ("suffix", "both"):
        out = f"{out} {rng.choice(suffixes)}"
    return out


def chat_line(user, assistant, **extra):
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ],
        **extra,
    }


def build_train(facts, rng):
    lines = []
    for f in facts:
        for i, q in enumerate(f.train):
            lines.append(chat_line(q, f.answers[i % len(f.answers)], fact=f.id))
        seen = set(f.train)
        # casual phrasings (no final punctuation) stay unwrapped
        wrappable = [q for q in f.train if q[-1] in "?.!"]
        for q in rng.sample(wrappable, TRAIN_WRAPPED_PER_FACT):
            w = wrap(q, rng, TRAIN_PREFIXES, TRAIN_SUFFIXES)
            while w in seen:
                w = wrap(q, rng, TRAIN_PREFIXES, TRAIN_SUFFIXES)
            seen.add(w)
            lines.append(chat_line(w, rng.choice(f.answers), fact=f.id))
    rng.shuffle(lines)
    return lines


def build_test(facts, rng):
    lines = []
    for f in facts:
        for q in f.test:
            if rng.random() < 0.33:
                q = wrap(q, rng, TEST_PREFIXES, TEST_SUFFIXES)
            lines.append(chat_line(q, f.answer, fact=f.id, keys=list(f.keys)))
    return lines
