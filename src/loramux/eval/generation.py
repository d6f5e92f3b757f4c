"""Greedy answers to chat prompts, batched, with the base model or one adapter.

Prompts are rendered with the tokenizer's chat template (as in training and serving), sorted by
length, left-padded and decoded greedily; answers come back in the order of the prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from loramux.eval.lm import EvalModel

Chat = list[dict[str, str]]


def generate_answers(
    lm: EvalModel,
    adapter: str | None,
    prompts: Sequence[Chat],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """The greedy answer to each conversation (its last turn is the user's).

    Args:
        lm: the loaded model.
        adapter: an adapter name of `lm`, or None for the base model.
        prompts: conversations without the answer.
        max_new_tokens: longest answer in tokens.
        batch_size: conversations per `generate` call.
        progress: called with (answers done, answers in all) after each batch.

    Returns:
        One answer per prompt, special tokens removed, stripped.
    """
    import torch

    tok = lm.tokenizer
    texts = [
        tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts
    ]
    encoded = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    answers = [""] * len(encoded)
    with lm.use(adapter) as model, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            longest = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), longest), lm.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, longest - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, longest - len(encoded[i]) :] = 1
            out = model.generate(
                input_ids=ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=lm.pad_id,
            )
            for row, i in enumerate(batch):
                new = out[row, longest:].tolist()
                answers[i] = tok.decode(new, skip_special_tokens=True).strip()
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
    return answers
