"""KL distillation towards the frozen base model, live or from a cache of its top-k.

The teacher is the model with the adapter disabled (no second copy in memory). Live, it runs
beside every distilled step. The base is frozen, so its distributions on the distillation
examples never change: `TeacherCache` computes them once before training and keeps, per answer
position, the top-k log-probabilities and the log of the remaining mass; the KL is then taken
over those k tokens plus one bucket for the rest of the vocabulary. With k >= the vocabulary
size the bucket is empty and the value equals the live KL (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loramux.adapters.training.data import TokenizedExample

Collate = Callable[[list[TokenizedExample], int, Any], tuple[Any, Any, Any]]
AnswerLogits = Callable[[Any, Any, Any, Any], tuple[Any, Any]]


def live_kl(
    model: Any,
    prompts: list[TokenizedExample],
    pad_id: int,
    t: float,
    device: Any,
    collate: Collate,
    answer_logits: AnswerLogits,
) -> Any:
    """KL(base || adapter) on the answer tokens of `prompts`, the base run now."""
    import torch
    import torch.nn.functional as F

    ids, mask, labels = collate(prompts, pad_id, device)
    with torch.no_grad(), model.disable_adapter():
        teacher, _ = answer_logits(model, ids, mask, labels)
    student, _ = answer_logits(model, ids, mask, labels)
    kl = F.kl_div(
        F.log_softmax(student / t, dim=-1),
        F.log_softmax(teacher / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return kl * t * t


@dataclass
class TeacherCache:
    """Per example: the base model's top-k token ids and log-probs at each answer position."""

    examples: list[TokenizedExample]
    top_ids: list[Any]
    top_logp: list[Any]
    rest_logp: list[Any]
    """Log of the base's mass outside the top-k at each position (-inf when k covers all)."""
    temperature: float

    @classmethod
    def build(
        cls,
        model: Any,
        examples: Sequence[TokenizedExample],
        *,
        top_k: int,
        temperature: float,
        pad_id: int,
        batch_size: int,
        device: Any,
        collate: Collate,
        answer_logits: AnswerLogits,
    ) -> TeacherCache:
        """Run the frozen base (adapter disabled) once over `examples` and keep its top-k."""
        import torch
        import torch.nn.functional as F

        top_ids: list[Any] = []
        top_logp: list[Any] = []
        rest_logp: list[Any] = []
        was_training = model.training
        model.eval()
        with torch.no_grad(), model.disable_adapter():
            for i in range(0, len(examples), batch_size):
                batch = list(examples[i : i + batch_size])
                ids, mask, labels = collate(batch, pad_id, device)
                logits, _ = answer_logits(model, ids, mask, labels)
                logp = F.log_softmax(logits / temperature, dim=-1)
                k = min(top_k, logp.shape[-1])
                values, index = logp.topk(k, dim=-1)
                rest = logp.scatter(-1, index, float("-inf")).logsumexp(-1)
                counts = (labels[:, 1:] != -100).sum(dim=1).tolist()
                parts = (torch.split(t, counts) for t in (values, index, rest))
                for v, x, r in zip(*parts, strict=True):
                    top_logp.append(v.to("cpu"))
                    top_ids.append(x.to("cpu"))
                    rest_logp.append(r.to("cpu"))
        if was_training:
            model.train()
        return cls(list(examples), top_ids, top_logp, rest_logp, temperature)

    def kl(
        self,
        model: Any,
        indices: Sequence[int],
        pad_id: int,
        device: Any,
        collate: Collate,
        answer_logits: AnswerLogits,
    ) -> Any:
        """KL(base || adapter) on the cached examples `indices`, over top-k plus the rest."""
        import torch
        import torch.nn.functional as F

        t = self.temperature
        ids, mask, labels = collate([self.examples[i] for i in indices], pad_id, device)
        student, _ = answer_logits(model, ids, mask, labels)
        s_logp = F.log_softmax(student / t, dim=-1)
        t_ids = torch.cat([self.top_ids[i] for i in indices]).to(device)
        t_logp = torch.cat([self.top_logp[i] for i in indices]).to(device)
        t_rest = torch.cat([self.rest_logp[i] for i in indices]).to(device)
        s_top = s_logp.gather(-1, t_ids)
        kl = (t_logp.exp() * (t_logp - s_top)).sum(-1)
        # The rest of the vocabulary as one bucket on each side; no bucket when k covers it all
        # (its mass is exp(-inf) = 0, and the finite stand-ins keep the gradient free of NaN).
        s_rest = s_logp.scatter(-1, t_ids, float("-inf")).logsumexp(-1)
        some = torch.isfinite(t_rest)
        t_safe = torch.where(some, t_rest, 0.0)
        s_safe = torch.where(some, s_rest, 0.0)
        kl = kl + torch.where(some, t_safe.exp() * (t_safe - s_safe), 0.0)
        return kl.sum() / max(1, kl.shape[0]) * t * t
