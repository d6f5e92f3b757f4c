"""Routing with a fine-tuned MiniLM: a probe for issue 23 (not a loramux feature yet).

The public evaluation (demo/routing/public/, SNIPS routes and out-of-scope requests from other
sources) is bound by the embeddings: every error of the fitted router is an out-of-scope request
that MiniLM puts next to a route ("find the movie X" next to `cinema`). This measures whether
fine-tuning MiniLM on labelled requests moves that limit, with loramux's own `fit` unchanged:

1. the calibration file is split in two halves, A and B (a fixed seed);
2. MiniLM is fine-tuned on the routes' exemplars + half A (supervised contrastive loss over
   the labels, out-of-scope items one class `none`; a few epochs, CPU) and saved to a folder;
3. loramux's router (`fit`, decision `auto`, target precision 0.95) is fitted on half B with
   that encoder, and, for comparison, on half B with the frozen MiniLM;
4. both are measured once on test.jsonl; then A and B swap roles.

Half B is never in the encoder's training data, so the fit's own calibration stays honest. The
table also gives the best coverage any threshold reaches on the test file at out-of-scope <= 0.02
(read off the test file's curve: an upper bound, not a fit).

  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_router_finetune.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from loramux.config import load_routes
from loramux.embed.encoder import make_encoder
from loramux.models import ensure_embedder
from loramux.router.fit.calibration import fit
from loramux.router.fit.data import LabelledItem, load_labelled
from loramux.router.fit.evaluation import evaluate
from loramux.router.head import NONE

REPO = Path(__file__).resolve().parents[1]
PUBLIC = REPO / "demo" / "routing" / "public"


def finetune(texts: list[str], labels: list[str], out: Path, epochs: int, seed: int) -> float:
    """Supervised-contrastive fine-tune of the embedded MiniLM; returns seconds."""
    from sentence_transformers import SentenceTransformer

    from loramux.config import EmbedderConfig

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = SentenceTransformer(str(ensure_embedder(EmbedderConfig())), device="cpu")
    ids = {name: i for i, name in enumerate(sorted(set(labels)))}
    y = torch.tensor([ids[label] for label in labels])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = list(range(len(texts)))
        rng.shuffle(order)
        for k in range(0, len(order), 32):
            batch = order[k : k + 32]
            features = model.preprocess([texts[i] for i in batch])
            emb = torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)
            lab = y[batch]
            eye = torch.eye(len(batch))
            logits = emb @ emb.T / 0.05 - 1e9 * eye
            positives = (lab[:, None] == lab[None, :]).float() - eye
            count = positives.sum(1)
            logp = logits.log_softmax(1)
            per_item = -(logp * positives).sum(1) / count.clamp(min=1)
            loss = per_item[count > 0].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.save(str(out))
    return time.perf_counter() - started


def oracle(router: Any, test: list[LabelledItem], max_oos: float = 0.02) -> float:
    """Best in-scope coverage of any probability threshold on `test` at out-of-scope <= max_oos."""
    report = evaluate(router, test)
    best = 0.0
    for point in report.curve:
        if point.oos_sent <= max_oos:
            best = max(best, point.coverage)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--target-precision", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    routes = load_routes(PUBLIC / "routes.yaml")
    calib = [i for i in load_labelled(PUBLIC / "calib.jsonl") if not i.history]
    test = load_labelled(PUBLIC / "test.jsonl")
    order = list(range(len(calib)))
    random.Random(args.seed).shuffle(order)
    halves = (
        [calib[i] for i in order[: len(order) // 2]],
        [calib[i] for i in order[len(order) // 2 :]],
    )
    frozen = make_encoder(cache_size=0)
    print(  # noqa: T201 - a benchmark prints its table
        "| encoder | tuned on | fitted on | test precision | test coverage | test OOS sent | "
        "best coverage at OOS <= 0.02 (test curve) | fine-tune s |\n"
        "|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for tune_half, fit_half, tune_name, fit_name in (
        (halves[0], halves[1], "A", "B"),
        (halves[1], halves[0], "B", "A"),
    ):
        texts = [u for r in routes for u in r.utterances] + [i.text for i in tune_half]
        labels = [r.name for r in routes for _ in r.utterances] + [i.label for i in tune_half]
        with tempfile.TemporaryDirectory() as tmp:
            seconds = finetune(texts, labels, Path(tmp) / "minilm", args.epochs, args.seed)
            tuned = make_encoder(str(Path(tmp) / "minilm"), cache_size=0)
            for name, encoder, tuned_on, secs in (
                ("MiniLM, frozen", frozen, "-", None),
                ("MiniLM, fine-tuned", tuned, f"exemplars + calib {tune_name}", seconds),
            ):
                result = fit(routes, fit_half, args.target_precision, encoder=encoder)
                report = evaluate(result.router, test)
                print(  # noqa: T201
                    f"| {name} | {tuned_on} | calib {fit_name} ({len(fit_half)}) | "
                    f"{report.routed_precision:.3f} | {report.coverage:.3f} | "
                    f"{report.oos_sent:.3f} | {oracle(result.router, test):.3f} | "
                    f"{'-' if secs is None else f'{secs:.0f}'} |",
                    flush=True,
                )
    n_oos = sum(1 for i in test if i.label == NONE)
    print(  # noqa: T201
        f"\ntest: {len(test) - n_oos} in scope, {n_oos} out of scope "
        f"(OOS <= 0.02 allows {int(0.02 * n_oos)} routed)"
    )


if __name__ == "__main__":
    main()
