"""The multi-LoRA kernels at a model's shapes on the GPU: tensors for one layer, the three
kernel choices (`vllm`, `masked`, `fused`) called the way vLLM calls them, and CUDA-graph timing.

Shared by `loramux kernels tune` (kernel_tune.py) and the GPU benchmarks (bench/gpu/). Needs a
CUDA GPU and vLLM (its kernels and their metadata); torch and vLLM are imported when called.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loramux.errors import ConfigError

SHAPES = {"8b": (4096, 14336, 1024)}
"""Named model shapes: (hidden size, MLP intermediate size, KV width = KV heads x head dim)."""


@dataclass(frozen=True)
class ModelShape:
    """The LoRA'd linear layers of one transformer block: name -> (input features, slices)."""

    name: str
    modules: dict[str, tuple[int, tuple[int, ...]]]


def parse_shape(spec: str) -> ModelShape:
    """`8b` (Llama-3-8B), or `hidden=H,intermediate=I,kv=KV` for another Llama-like model.

    Raises:
        ConfigError: names the expected form.
    """
    if spec in SHAPES:
        hidden, inter, kv = SHAPES[spec]
    else:
        found = dict(re.findall(r"(hidden|intermediate|kv)=(\d+)", spec))
        if len(found) != 3 or not re.fullmatch(r"(\w+=\d+,?){3}", spec.replace(" ", "")):
            raise ConfigError(
                f"--model-shape {spec!r}: give {' or '.join(SHAPES)}, or "
                "hidden=H,intermediate=I,kv=KV (KV = key-value heads x head dim)"
            )
        hidden, inter, kv = (int(found[k]) for k in ("hidden", "intermediate", "kv"))
    return ModelShape(
        spec,
        {
            "qkv": (hidden, (hidden, kv, kv)),
            "o": (hidden, (hidden,)),
            "gate_up": (hidden, (inter, inter)),
            "down": (inter, (hidden,)),
        },
    )


_FORCED: dict[str, dict[str, Any] | None] = {"shrink": None, "expand": None}
_OVERRIDDEN = False


def force_vllm_config(op: str, config: dict[str, Any] | None) -> None:
    """Make vLLM's `lora_shrink` / `lora_expand` use `config` (None: their own lookup)."""
    global _OVERRIDDEN
    if not _OVERRIDDEN:
        import vllm.lora.ops.triton_ops.lora_expand_op as expand_op
        import vllm.lora.ops.triton_ops.lora_shrink_op as shrink_op

        for module, name in ((shrink_op, "shrink"), (expand_op, "expand")):
            original = module.get_lora_op_configs

            def lookup(*args: Any, _original: Any = original, _op: str = name, **kw: Any) -> Any:
                forced = _FORCED[_op]
                return dict(forced) if forced is not None else _original(*args, **kw)

            module.get_lora_op_configs = lookup
        _OVERRIDDEN = True
    _FORCED[op] = config


class Case:
    """One LoRA'd layer's tensors: `tokens` rows spread over `mix` adapters of `max_loras`
    slots (every `base_every`-th row without one, if given), rank `rank`, bf16, `layers` copies
    of the weights (a step's worth)."""

    def __init__(
        self, k: int, slices: tuple[int, ...], tokens: int, mix: int, *, rank: int = 16,
        max_loras: int = 16, layers: int = 1, seed: int = 0, base_every: int = 0,
    ) -> None:  # fmt: skip
        import torch
        from vllm.lora.ops.triton_ops import LoRAKernelMeta

        dev = torch.device("cuda")
        g = torch.Generator(device=dev).manual_seed(seed)
        self.slices, self.rank, self.tokens = slices, rank, tokens

        def rand(*shape: int) -> Any:
            return (torch.randn(*shape, generator=g, device=dev) * 0.05).to(torch.bfloat16)

        self.x = rand(tokens, k) * 20
        self.y = torch.zeros(tokens, sum(slices), dtype=torch.bfloat16, device=dev)
        self.a = [[rand(max_loras, 1, rank, k) for _ in slices] for _ in range(layers)]
        self.b = [[rand(max_loras, 1, n, rank) for n in slices] for _ in range(layers)]
        self.meta = LoRAKernelMeta.make(max_loras, tokens, device=dev)
        rows = torch.arange(tokens, device=dev, dtype=torch.int32)
        self.mapping = rows % mix
        if base_every:
            self.mapping[rows % base_every == base_every - 1] = -1
        self.meta.prepare_tensors(self.mapping)
        self.args = self.meta.meta_args(tokens, False)

    def buffer(self) -> Any:
        import torch

        shape = (len(self.slices), self.tokens, self.rank)
        return torch.empty(shape, dtype=torch.float32, device=self.x.device)

    def shrink(self, buf: Any, layer: int = 0) -> None:
        from vllm.lora.ops.triton_ops import lora_shrink

        lora_shrink(self.x, self.a[layer], buf, *self.args, 1.0)

    def expand(self, buf: Any, layer: int = 0) -> None:
        from vllm.lora.ops.triton_ops import lora_expand

        lora_expand(buf, self.b[layer], self.y, *self.args, offset_start=0, add_inputs=True)

    def masked(self, buf: Any, layer: int = 0, config: dict[str, int] | None = None) -> None:
        from loramux.serve.lora_expand import masked_expand

        no_lora = self.args[5]
        masked_expand(
            buf, self.b[layer], self.y, self.mapping, no_lora, add_inputs=True, config=config
        )

    def fused(self, layer: int = 0, config: dict[str, int] | None = None) -> None:
        from loramux.serve.lora_fused import fused_lora

        fused_lora(
            self.y, self.x, self.a[layer], self.b[layer], self.mapping, self.args[5],
            config=config,
        )  # fmt: skip

    def layer_fn(self, kind: str, layer: int = 0, config: dict[str, int] | None = None) -> Any:
        """One call of the layer's LoRA with `kind` (`vllm`, `masked` or `fused`)."""
        if kind == "fused":
            return lambda: self.fused(layer, config)

        def run() -> None:
            buf = self.buffer()
            self.shrink(buf, layer)
            self.masked(buf, layer, config) if kind == "masked" else self.expand(buf, layer)

        return run

    def output(self, kind: str, config: dict[str, int] | None = None) -> Any:
        """The layer's output (bf16 -> float32) for a fixed starting `y`, with `kind`."""
        import torch

        self.y.copy_(torch.linspace(-1, 1, self.y.numel(), device=self.y.device).view_as(self.y))
        self.layer_fn(kind, 0, config)()
        torch.cuda.synchronize()
        return self.y.float().clone()


def graph_time(fn: Callable[[], None], calls: int = 10, replays: int = 5) -> float:
    """Microseconds per `fn()` inside a CUDA graph of `calls` calls (best of `replays`)."""
    import torch

    fn()  # compile / warm
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        fn()
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(calls):
                fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(replays):
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) * 1000 / calls)
    del graph
    return best


def step_ms(shape: ModelShape, kind: str, tokens: int, mix: int, layers: int, **kw: Any) -> float:
    """Milliseconds of one decode step's LoRA kernels (`layers` x the block's layers) in one
    CUDA graph, with `kind`'s kernels and the tables in use."""
    import torch

    cases = [Case(k, s, tokens, mix, layers=layers, **kw) for k, s in shape.modules.values()]
    fns = [c.layer_fn(kind, layer) for layer in range(layers) for c in cases]

    def step() -> None:
        for fn in fns:
            fn()

    t = graph_time(step, calls=1, replays=10) / 1000
    fns.clear()
    cases.clear()
    torch.cuda.empty_cache()
    return t


def base_step_ms(shape: ModelShape, tokens: int, layers: int) -> float:
    """Milliseconds of the base model's linear layers of one step (bf16 GEMMs)."""
    import torch

    dev = torch.device("cuda")
    mods = list(shape.modules.values())
    weights = [
        [torch.empty(sum(s), k, dtype=torch.bfloat16, device=dev) for k, s in mods]
        for _ in range(layers)
    ]
    xs = [torch.randn(tokens, k, dtype=torch.bfloat16, device=dev) for k, _ in mods]

    def step() -> None:
        for layer in weights:
            for x, w in zip(xs, layer, strict=True):
                torch.nn.functional.linear(x, w)

    t = graph_time(step, calls=1, replays=10) / 1000
    weights.clear()
    torch.cuda.empty_cache()
    return t


def lora_bytes(shape: ModelShape, adapters: int, rank: int, layers: int) -> int:
    """Bytes of the adapters' A and B weights one step must read at least (bf16)."""
    per = sum(rank * k * len(s) + rank * sum(s) for k, s in shape.modules.values())
    return 2 * per * adapters * layers


def copy_bandwidth() -> float:
    """The GPU's memory bandwidth in bytes/s, measured by a 1 GiB device-to-device copy
    (counted as read + write)."""
    import torch

    def copy_us() -> float:
        src = torch.empty(1 << 29, dtype=torch.int16, device="cuda")
        dst = torch.empty_like(src)

        def copy() -> None:
            dst.copy_(src)

        return graph_time(copy, calls=3, replays=5)

    us = copy_us()
    torch.cuda.empty_cache()
    return 2 * (1 << 30) / (us * 1e-6)
