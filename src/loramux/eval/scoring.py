"""Log-likelihood scoring of multiple-choice items: how likely the model finds each answer.

For a context c and a continuation x (one answer choice, with its leading space) the score is
log p(x | c) = the sum of the log-probabilities of x's tokens, each given everything before it.
Tokenisation follows lm-eval-harness: the pair is encoded as one string and the continuation's
tokens are those after the context's own tokens, so a word is never split differently at the seam.
Raw text, no chat template and no BOS (SmolLM2's tokenizer adds none), as in OLMo's evaluation.

A choice wins by its raw sum ("acc"), its sum per character of the continuation ("acc_per_char"),
or its sum per token ("acc_per_token"); each benchmark names its primary one.

The context of an item runs once and its key/value cache is shared by the item's choices, so a
four-choice question costs about one context plus four short continuations, not four contexts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loramux.eval.benchmarks import ChoiceItem, Normalisation
from loramux.eval.lm import EvalModel

LOGIT_ROWS = 2048
"""Most continuation positions one batch computes full-vocabulary logits for (SmolLM2: 49k
entries each, so 2048 rows are 400 MB in float32)."""


@dataclass(frozen=True)
class EncodedItem:
    """One item as token ids: the shared context and each choice's continuation tokens."""

    context: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class ChoiceScore:
    logprob: float
    tokens: int
    chars: int

    def value(self, normalisation: Normalisation) -> float:
        if normalisation == "char":
            return self.logprob / max(self.chars, 1)
        if normalisation == "token":
            return self.logprob / max(self.tokens, 1)
        return self.logprob


def encode_item(
    tokenizer: Any, context: str, choices: Sequence[str], *, max_length: int = 2048
) -> EncodedItem:
    """Token ids of the context and of each continuation; the context is cut from the left so
    that it and the longest continuation fit in `max_length`."""
    ctx: list[int] = tokenizer(context, add_special_tokens=False)["input_ids"]
    conts = []
    for choice in choices:
        whole: list[int] = tokenizer(context + choice, add_special_tokens=False)["input_ids"]
        if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
            cont = whole[len(ctx) :]
        else:  # the seam merged tokens: encode the continuation alone
            cont = tokenizer(choice, add_special_tokens=False)["input_ids"]
        conts.append(tuple(cont[: max_length // 2]))
    room = max_length - max(len(c) for c in conts)
    return EncodedItem(tuple(ctx[-room:]), tuple(conts))


def encode_items(
    tokenizer: Any, items: Sequence[ChoiceItem], *, max_length: int = 2048
) -> list[EncodedItem]:
    """Every item, encoded once (shared by the base model and every adapter)."""
    return [encode_item(tokenizer, it.context, it.choices, max_length=max_length) for it in items]


def choice_logprobs(
    lm: EvalModel,
    adapter: str | None,
    items: Sequence[EncodedItem],
    *,
    batch_tokens: int = 8192,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[float]]:
    """log p(continuation | context) of every choice of every item.

    Each batch runs its contexts once (left-padded) and keeps their key/value cache; the cache
    is then copied to one row per choice and the continuations run on it (right-padded). The
    first continuation token is scored from the context pass's last logits.

    Args:
        lm: the loaded model.
        adapter: an adapter name of `lm`, or None for the base model.
        items: encoded items (see `encode_items`); each context needs at least one token.
        batch_tokens: budget per batch: choice rows x (longest context + longest continuation).
        progress: called with (items done, items in all) after each batch.

    Returns:
        Per item, one log-probability per choice.
    """
    import torch

    order = sorted(range(len(items)), key=lambda i: -len(items[i].context))
    out: list[list[float]] = [[] for _ in items]
    start = 0
    with lm.use(adapter) as model, torch.inference_mode():
        while start < len(order):
            batch = _next_batch(items, order, start, batch_tokens)
            start += len(batch)
            scored = _score_batch(lm, model, [items[i] for i in batch])
            for i, values in zip(batch, scored, strict=True):
                out[i] = values
            if progress is not None:
                progress(start, len(order))
    return out


def _next_batch(
    items: Sequence[EncodedItem], order: Sequence[int], start: int, budget: int
) -> list[int]:
    batch: list[int] = []
    rows = ctx = cont = 0
    for i in order[start:]:
        item = items[i]
        n_rows = rows + len(item.continuations)
        n_ctx = max(ctx, len(item.context))
        n_cont = max(cont, *(len(c) for c in item.continuations))
        too_big = n_rows * (n_ctx + n_cont) > budget or n_rows * n_cont > LOGIT_ROWS
        if batch and too_big:
            break
        batch.append(i)
        rows, ctx, cont = n_rows, n_ctx, n_cont
    return batch


def _score_batch(lm: EvalModel, model: Any, batch: Sequence[EncodedItem]) -> list[list[float]]:
    import torch

    dev = lm.device
    longest = max(len(it.context) for it in batch)
    ids = torch.full((len(batch), longest), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, it in enumerate(batch):
        ids[row, longest - len(it.context) :] = torch.tensor(it.context)
        mask[row, longest - len(it.context) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    first = model(
        input_ids=ids.to(dev),
        attention_mask=mask.to(dev),
        position_ids=positions.to(dev),
        use_cache=True,
        logits_to_keep=1,
    )
    first_logp = first.logits[:, -1].float().log_softmax(-1)  # predicts each continuation's 1st
    owner = [row for row, it in enumerate(batch) for _ in it.continuations]
    conts = [c for it in batch for c in it.continuations]
    width = max(len(c) for c in conts)
    cont_ids = torch.full((len(conts), width), lm.pad_id, dtype=torch.long)
    cont_mask = torch.zeros((len(conts), width), dtype=torch.long)
    for row, c in enumerate(conts):
        cont_ids[row, : len(c)] = torch.tensor(c)
        cont_mask[row, : len(c)] = 1
    later = None
    if width > 1:  # tokens after the first: run all but the last on a copy of the context cache
        cache = first.past_key_values
        cache.batch_select_indices(torch.tensor(owner, device=dev))
        lengths = mask.sum(-1)[owner]
        second = model(
            input_ids=cont_ids[:, :-1].to(dev),
            attention_mask=torch.cat([mask[owner], cont_mask[:, :-1]], dim=1).to(dev),
            position_ids=(lengths.unsqueeze(1) + torch.arange(width - 1)).to(dev),
            past_key_values=cache,
            use_cache=False,
        )
        logits = second.logits.float()  # logits[r, k] predicts continuation token k + 1
        targets = cont_ids[:, 1:].to(dev).unsqueeze(-1)
        later = logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(-1)
    scores: list[list[float]] = [[] for _ in batch]
    for row, c in enumerate(conts):
        total = float(first_logp[owner[row], c[0]])
        if later is not None:
            total += float(later[row, : len(c) - 1].sum())
        scores[owner[row]].append(total)
    return scores


def score_items(
    lm: EvalModel,
    adapter: str | None,
    items: Sequence[ChoiceItem],
    encoded: Sequence[EncodedItem],
    *,
    batch_tokens: int = 8192,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[ChoiceScore]]:
    """Score every choice of every item with the base model (`adapter=None`) or an adapter."""
    logprobs = choice_logprobs(lm, adapter, encoded, batch_tokens=batch_tokens, progress=progress)
    return [
        [
            ChoiceScore(lp, len(tokens), len(choice))
            for lp, tokens, choice in zip(values, enc.continuations, item.choices, strict=True)
        ]
        for values, enc, item in zip(logprobs, encoded, items, strict=True)
    ]


def predict(scores: Sequence[ChoiceScore], normalisation: Normalisation) -> int:
    """Index of the winning choice (the first one on a tie)."""
    values = [s.value(normalisation) for s in scores]
    return values.index(max(values))
