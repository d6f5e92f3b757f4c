"""Training data the router adds on its own: exemplar variants and generic out-of-scope texts.

Variants wrap each exemplar the way people wrap requests in chat (a greeting, a thank-you, a
question frame), so the head learns the topic rather than the phrasing. Generic negatives are
everyday requests no business route should take (small talk, trivia, recipes, code) and follow-ups
that make no sense without the conversation ("What's their phone number?"). Negatives too close to
any route's examples are dropped at fit time, so a user's "recipes" route is not trained against.
"""

from __future__ import annotations

from collections.abc import Sequence

_WRAPS = (
    "Hi, {u}",
    "{u} Thanks!",
    "Quick question: {u}",
    "I need some help. {u}",
    "Hello there, could you help me with this: {u}",
    "{u} Please let me know.",
)

GENERIC_NEGATIVES: tuple[str, ...] = (
    # Small talk and assistant chit-chat.
    "Hi!",
    "Hello, how are you today?",
    "Thanks, that's all.",
    "Good morning!",
    "Who are you?",
    "What can you do?",
    "Do you know any good riddles?",
    "Are you a robot?",
    "What's your favourite colour?",
    "Have a nice weekend!",
    "ok",
    "cool, thanks",
    "Never mind.",
    "Can you speak French?",
    "I'm bored, entertain me.",
    # Trivia and general knowledge.
    "What is the capital of Australia?",
    "Who wrote Pride and Prejudice?",
    "How hot is the surface of the sun?",
    "When did the Second World War end?",
    "Why is the sky blue?",
    "How many legs does a spider have?",
    "What is the tallest mountain in the world?",
    "Explain photosynthesis in simple terms.",
    "Who won the football world cup in 2018?",
    "What does DNA stand for?",
    "How do black holes form?",
    "What language is spoken in Brazil?",
    # Everyday life.
    "What's the weather like tomorrow?",
    "Give me a recipe for banana bread.",
    "How long should I boil an egg?",
    "Recommend a good science fiction novel.",
    "What movie should I watch tonight?",
    "How do I get a red wine stain out of a carpet?",
    "What are some good exercises for lower back pain?",
    "Suggest a name for my new puppy.",
    "How do I grow tomatoes on a balcony?",
    "What time is it in Tokyo right now?",
    "Plan a three-day trip to Rome for me.",
    "How many calories are in an avocado?",
    "Write a birthday poem for my sister.",
    "What's a good gift for a ten-year-old?",
    "How do I change a flat tyre?",
    # Maths, code and writing.
    "What is 17 times 23?",
    "Solve x squared minus 4 equals zero.",
    "Write a Python function that reverses a string.",
    "What is the difference between a list and a tuple in Python?",
    "Translate 'good night' into Spanish.",
    "Who are the main characters in Macbeth?",
    "Fix the grammar in this sentence: me and him goes to school.",
    "What is a prime number?",
    "How many ounces are in a pound?",
    "Write a haiku about autumn.",
    # Follow-ups that name no topic: they need the conversation to be routed.
    "Could you give me their phone number?",
    "What's their address?",
    "And their email address?",
    "Can you tell me more about that?",
    "What about the other one?",
    "How much does it cost?",
    "Is there anything cheaper?",
    "Yes please, go ahead.",
    "No, the second option.",
    "What time does it open?",
    "Can you repeat that?",
    "And how long does that take?",
    "Which one would you recommend?",
    "Sounds good, book it.",
    "What did you mean by that?",
    "Are there any other options?",
    "Why?",
    "I meant the first one.",
    "Same question, but for next week.",
    "Can you send me the details?",
)


def augment(utterance: str) -> list[str]:
    """Chat-style variants of one exemplar (the exemplar itself not included)."""
    core = utterance.strip()
    lowered = core[:1].lower() + core[1:] if core[:2] != core[:2].upper() else core
    return [wrap.format(u=lowered if wrap.index("{u}") > 0 else core) for wrap in _WRAPS]


def augment_all(utterances: Sequence[str], per_utterance: int) -> list[str]:
    """Up to `per_utterance` variants of each utterance, cycling through the wrappers."""
    out: list[str] = []
    for i, utterance in enumerate(utterances):
        variants = augment(utterance)
        out.extend(variants[(i + j) % len(variants)] for j in range(min(per_utterance, 6)))
    return out
