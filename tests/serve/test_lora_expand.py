"""loramux's masked multi-LoRA expand kernel (serve/lora_expand.py) against a plain-torch loop.

The kernel is Triton; here it runs in Triton's interpreter on the CPU (TRITON_INTERPRET=1, set
before triton is imported: this module runs in its own process, see `run_in_interpreter`). Triton
comes with vLLM, so these are `vllm` tests: they run in .venv-vllm. On a GPU, the same comparison
against vLLM's own kernel is `bench/gpu/lora_kernels.py masked`. The weights here are float16:
Triton 3.9's interpreter mangles float32 -> bfloat16 casts (values of 1e10 where 7 is right), which
the GPU comparison in bfloat16 covers.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("triton") is None, reason="triton is not installed"
    ),
]

REPO = Path(__file__).resolve().parents[2]

CASES = r"""
import torch
from loramux.serve.lora_expand import masked_expand, reference_expand

def meta(mapping):
    # the row -> slot mapping and the no-LoRA flag
    t = torch.tensor(mapping, dtype=torch.int32)
    return (t, torch.tensor([all(s < 0 for s in mapping)]))

def case(name, mapping, sizes, rank, slots, add, offset, config=None, skip=False):
    g = torch.Generator().manual_seed(len(mapping) * 31 + rank)
    m = len(mapping)
    bs = [torch.randn(slots, 1, n, rank, generator=g).to(torch.float16) for n in sizes]
    x = torch.randn(len(sizes), m, rank, generator=g)
    y0 = torch.randn(m, offset + sum(sizes) + 3, generator=g).to(torch.float16)
    got, want = y0.clone(), y0.clone()
    masked_expand(x, bs, got, *meta(mapping), offset_start=offset, add_inputs=add,
                  skip_empty=skip, config=config)
    reference_expand(x, bs, want, torch.tensor(mapping), offset_start=offset, add_inputs=add)
    # fp16 products summed in another order: a few units in the last place
    err = ((got.float() - want.float()).abs() / (want.float().abs() + 1)).max().item()
    untouched = torch.equal(got[:, :offset], y0[:, :offset]) and torch.equal(
        got[:, offset + sum(sizes):], y0[:, offset + sum(sizes):])
    print(name, f"{err:.4f}", untouched)

small = {"block_m": 16, "block_n": 32, "slots": 2, "num_warps": 4, "num_stages": 1}
# one slice, rows of 3 slots and no slot, rank 16, add to the output (a decode batch)
case("mixed", [0, 2, -1, 1, 2, 0, 0, 3, -1, 1, 2, 2, 0, 1, 3, 3, 2, 0], [40], 16, 4, True, 0, small)
# three slices of different widths (GQA qkv) at an offset; rank 8 padded to 16; store, not add
case("qkv", [1, 1, 0, 2, -1, 2, 1, 0], [32, 16, 16], 8, 3, False, 5, small)
# more slots than one K step holds, and the slot groups nobody uses skipped
case("skip", [4, 4, 0, 4, -1, 0], [24], 16, 5, True, 0, small, skip=True)
# the default launch config
case("default", [0, 1] * 20, [48, 48], 16, 2, True, 0)
"""


def run_in_interpreter(code: str, env_extra: dict[str, str] | None = None) -> list[list[str]]:
    env = {
        **os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO / "src"),
        **(env_extra or {}),
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [line.split() for line in done.stdout.splitlines()]


def test_masked_expand_matches_a_row_by_row_loop() -> None:
    rows = run_in_interpreter(CASES)
    assert [r[0] for r in rows] == ["mixed", "qkv", "skip", "default"]
    for name, err, untouched in rows:
        assert float(err) < 0.02, f"{name}: largest relative difference {err}"
        assert untouched == "True", f"{name}: columns outside the slices changed"


def test_no_lora_batch_leaves_the_output_alone() -> None:
    rows = run_in_interpreter(
        CASES.split("small =")[0] + "y = torch.ones(4, 8, dtype=torch.float16)\n"
        "masked_expand(torch.randn(1, 4, 16), [torch.randn(2, 1, 8, 16).to(torch.float16)], y,"
        " *meta([-1, -1, -1, -1]), add_inputs=True)\n"
        "print('ones', bool((y == 1).all()))\n"
    )
    assert rows == [["ones", "True"]]
