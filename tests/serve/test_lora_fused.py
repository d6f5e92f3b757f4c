"""loramux's fused multi-LoRA kernel (serve/lora_fused.py) against a plain-torch loop.

Runs in Triton's interpreter on the CPU (TRITON_INTERPRET=1, in a subprocess: see
`test_lora_expand.run_in_interpreter`), in both forms: one launch (tickets, the expand items
waiting for the shrink items) and two. Small shapes: the interpreter is slow. bf16 products run
in float32 there (Triton 3.9's interpreter computes bf16 arithmetic on the raw bits), and its
float32 -> bf16 casts truncate where torch rounds, hence the looser bf16 bound; the GPU check
against vLLM's kernels in bf16 is `bench/gpu/kernels22.py check`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.serve.test_lora_expand import run_in_interpreter

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("triton") is None, reason="triton is not installed"
    ),
]

CASES = r"""
import os
os.environ["LORAMUX_KERNEL_FOLDER_IN_USE"] = ""  # no tables: the defaults or the config given
import torch
from loramux.serve.lora_fused import _WORKSPACES, fused_lora, reference_lora

def run(mapping, sizes, k, rank, slots, add, dtype, cfg, scale=1.0, ranks=None, wrong=False):
    g = torch.Generator().manual_seed(len(mapping) * 31 + rank + k)
    m = len(mapping)
    a = [torch.randn(slots, 1, rank, k, generator=g).to(dtype) for _ in sizes]
    b = [(torch.randn(slots, 1, n, rank, generator=g) / 2).to(dtype) for n in sizes]
    for s, r in enumerate(ranks or []):  # adapters below the stacked rank: zero padding
        for w in a:
            w[s, :, r:, :] = 0
        for w in b:
            w[s, :, :, r:] = 0
    x = (torch.randn(m, k, generator=g) / k ** 0.5).to(dtype)
    y0 = torch.randn(m, sum(sizes), generator=g).to(dtype)
    got, want = y0.clone(), y0.clone()
    t = torch.tensor(mapping, dtype=torch.int32)
    flag = torch.tensor([all(v < 0 for v in mapping)])
    fused_lora(got, x, a, b, t, flag, scale, add, config=cfg)
    # `wrong`: the reference with every slot moved by one, which the bound must catch
    ref_map = torch.tensor([(v + 1) % slots if v >= 0 else v for v in mapping]) if wrong else t
    reference_lora(want, x, a, b, ref_map, scale, add)
    return ((got.float() - want.float()).abs() / (want.float().abs() + 1)).max().item()

one = {"launches": 1, "bm_s": 16, "bk": 32, "split_k": 2, "bc_s": 32,
       "bm_e": 16, "bn": 32, "bc_e": 32, "num_warps": 4, "num_stages": 1}
two = {**one, "launches": 2}
mix = [0, 2, -1, 1, 2, 0, 0, 3, -1, 1, 2, 2, 0, 1, 3, 3, 2, 0]
for dtype in ("float16", "bfloat16"):
    dt = getattr(torch, dtype)
    for form, cfg in (("one", one), ("two", two)):
        # o / down: one slice, rows of 4 slots and none, two row tiles, split K with a tail
        print("slice1", dtype, form, run(mix, [40], 96, 16, 4, True, dt, cfg))
        # gate_up: two slices, adapters of ranks 8, 16, 4 in a rank-16 stack, scale, store
        print("slice2", dtype, form,
              run(mix, [48, 48], 80, 16, 4, False, dt, cfg, scale=0.5, ranks=[8, 16, 4, 16]))
        # qkv (GQA): three slices of different widths, rank 8, 3 slots
        print("slice3", dtype, form, run([1, 1, 0, 2, -1, 2, 1, 0], [32, 16, 16], 64, 8, 3,
                                         True, dt, cfg))
print("wrong", "float16", "one", run(mix, [40], 96, 16, 4, True, torch.float16, one, wrong=True))
# the default settings (no table), more slots than one column group, one launch of no split
print("default", "float16", "two", run([0, 5, 1, 4] * 5, [64], 64, 16, 6, True, torch.float16,
                                        None))
print("nosplit", "bfloat16", "one",
      run([0, 1] * 9, [32], 64, 16, 2, True, torch.bfloat16, {**one, "split_k": 1}))
clean = all(buf.abs().max().item() == 0 and ctl.abs().max().item() == 0
            for buf, ctl in _WORKSPACES.values())
print("clean", "-", "-", float(clean))
"""


def test_fused_lora_matches_a_row_by_row_loop_in_both_forms() -> None:
    rows = {(name, dtype, form): float(err) for name, dtype, form, err in run_in_interpreter(CASES)}
    assert len(rows) == 16
    for (name, dtype, form), err in rows.items():
        if name in ("wrong", "clean"):
            continue
        bound = 0.005 if dtype == "float16" else 0.06
        assert err < bound, f"{name} {dtype} {form} launch(es): largest relative difference {err}"
    assert rows[("wrong", "float16", "one")] > 0.5  # the comparison sees a wrong slot
    assert rows[("clean", "-", "-")] == 1.0  # buf and counters left zero for the next call


def test_fused_lora_without_adapters_leaves_the_output_alone() -> None:
    rows = run_in_interpreter(
        CASES.split("def run(")[0] + "y = torch.ones(4, 8, dtype=torch.float16)\n"
        "fused_lora(y, torch.randn(4, 32).half(), [torch.randn(2, 1, 16, 32).half()],"
        " [torch.randn(2, 1, 8, 16).half()], torch.tensor([-1] * 4, dtype=torch.int32),"
        " torch.tensor([True]))\n"
        "print('ones', bool((y == 1).all()))\n"
    )
    assert rows == [["ones", "True"]]


GLUE = r"""
import os
from types import SimpleNamespace
import torch
from vllm.lora.ops.triton_ops import LoRAKernelMeta
from vllm.lora.punica_wrapper import punica_gpu
import loramux.serve.lora_fused_worker as worker
from loramux.serve.lora_fused import reference_lora

table = os.environ["LORAMUX_KERNEL_FOLDER_IN_USE"]  # a fused.json covering 16 rows
calls = []
worker._vllm.update(shrink=lambda *a: calls.append("shrink"),
                    expand=lambda *a, **k: calls.append("expand"))
for m in (12, 24):
    g = torch.Generator().manual_seed(m)
    sizes = (32, 16, 16)
    a = tuple(torch.randn(4, 1, 16, 64, generator=g).half() for _ in sizes)
    b = tuple((torch.randn(4, 1, n, 16, generator=g) / 2).half() for n in sizes)
    x = (torch.randn(m, 64, generator=g) / 8).half()
    y = torch.randn(m, sum(sizes), generator=g).half()
    mapping = torch.tensor([(i % 5) - 1 for i in range(m)], dtype=torch.int32)
    meta = LoRAKernelMeta.make(4, 512, device="cpu")
    meta.prepare_tensors(mapping)
    wrapper = SimpleNamespace(token_mapping_meta=meta,
                              lora_config=SimpleNamespace(specialize_active_lora=False))
    want = y.clone()
    reference_lora(want, x, list(a), list(b), mapping)
    punica_gpu.PunicaWrapperGPU.add_lora_linear(wrapper, y, x, a, b, 1.0, sizes)
    err = ((y.float() - want.float()).abs() / (want.float().abs() + 1)).max().item()
    print(m, f"{err:.4f}", "+".join(calls) or "-")
"""


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM's punica wrapper")
def test_installed_op_replaces_add_lora_linear_and_leaves_prefill_to_vllm(tmp_path: Path) -> None:
    """vLLM's `add_lora_linear` after `install()`, with vLLM's own row metadata: batches the
    table covers go through the fused kernel, larger ones to vLLM's shrink and expand."""
    cfg = {"launches": 1, "bm_s": 16, "bk": 32, "split_k": 2, "bc_s": 32, "bm_e": 16, "bn": 32,
           "bc_e": 32, "num_warps": 4, "num_stages": 1}  # fmt: skip
    (tmp_path / "fused.json").write_text(json.dumps({"gpu": "any", "configs": {"16": cfg}}))
    rows = run_in_interpreter(GLUE, {"LORAMUX_KERNEL_FOLDER_IN_USE": str(tmp_path)})
    (small, err, routed), (large, _, routed_large) = rows
    assert (small, routed) == ("12", "-")  # fused: vLLM's kernels never called
    assert float(err) < 0.005
    assert (large, routed_large) == ("24", "shrink+expand")  # more rows than the table: vLLM's
