"""Multi-LoRA throughput and gateway overhead of the vllm engine on a GPU; prints tables.

  python bench/bench_vllm.py lora --out DIR      # output tok/s: base, 1, 4, 16 adapters
  python bench/bench_vllm.py gateway --out DIR   # loramux serve (HTTP) vs straight into vLLM

The model is 8B-shaped (Llama-3-8B layers: 32 x 4096, MLP 14336, GQA 32/8 heads; SmolLM2's
tokenizer and its 49152-token vocabulary) with random weights (`load_format="dummy"`); the
adapters are random PEFT folders of rank 16 on all seven linear layers. The workload is the one
of issue 6: 256 requests of 128 prompt tokens and 128 output tokens (ignore_eos), max_num_seqs 128.

- lora: for each engine variant (vLLM settings), warm up, then interleave the modes base / 1
  adapter / 4 / 16 mixed (and 16 grouped by adapter) `--repeats` times; best and median tok/s.
  Requests go through loramux's VLLMEngine (`engine.stream`), and the base mode also straight
  into vLLM's AsyncLLM, so the wrapper's cost shows. The memory-bandwidth bound is printed too.
- gateway: the same engine serves the loramux app (uvicorn, in this process: what `loramux serve`
  runs); client processes stream /v1/completions over loopback HTTP. Interleaved with the same
  requests straight into AsyncLLM: throughput, and p50 TTFT under load and one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))  # tests.serve_process: free_port
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL_ID = "llama8b-dummy"
SHAPE = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CAPTURE = [1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128]
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    # name: (AsyncEngineArgs extras, environment)
    "default": ({}, {}),
    "capture": ({"cudagraph_capture_sizes": CAPTURE}, {}),
    "specialize": ({"cudagraph_capture_sizes": CAPTURE, "specialize_active_lora": True}, {}),
    "dualstream": ({"cudagraph_capture_sizes": CAPTURE}, {"VLLM_LORA_ENABLE_DUAL_STREAM": "1"}),
    "loras8": ({"cudagraph_capture_sizes": CAPTURE, "max_loras": 8}, {}),
    "spec+dual": (
        {"cudagraph_capture_sizes": CAPTURE, "specialize_active_lora": True},
        {"VLLM_LORA_ENABLE_DUAL_STREAM": "1"},
    ),
    # the tuned* variants also set loramux's `engine.vllm.lora_kernel_configs` (see TUNED)
    "tuned": ({"cudagraph_capture_sizes": CAPTURE}, {}),
    "tuned8": ({"cudagraph_capture_sizes": CAPTURE, "max_loras": 8}, {}),
    "spec+tuned": ({"cudagraph_capture_sizes": CAPTURE, "specialize_active_lora": True}, {}),
    # tuned + loramux's masked expand kernel (`engine.vllm.lora_kernels: masked`, see KERNELS)
    "tuned+masked": ({"cudagraph_capture_sizes": CAPTURE}, {}),
    # tuned + loramux's fused shrink + expand (`engine.vllm.lora_kernels: fused`)
    "fused": ({"cudagraph_capture_sizes": CAPTURE}, {}),
    # the shrink in the base GEMM, one GEMM for every slot's expand (`lora_kernels: concat`)
    "concat": ({"cudagraph_capture_sizes": CAPTURE}, {}),
}
TUNED = {"tuned", "tuned8", "spec+tuned", "tuned+masked", "fused"}
"""Variants with tuned LoRA kernel tables: --lora-configs, default the folder `auto` picks
(LORAMUX_KERNEL_TABLES, the user's from `loramux kernels tune`, loramux's shipped ones)."""
KERNELS = {"tuned+masked": "masked", "fused": "fused", "concat": "concat"}
"""Variants with loramux's multi-LoRA kernels (`engine.vllm.lora_kernels`)."""
MODES = ("base", "1", "4", "16", "16g")
"""lora modes: no adapter, one adapter for all, 4 or 16 mixed, 16 grouped by adapter."""
VARIANT_ENV = ("VLLM_LORA_ENABLE_DUAL_STREAM", "VLLM_TUNED_CONFIG_FOLDER")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- model, adapters, prompts ----------------------------------------------------------------------


def make_model(folder: Path) -> Path:
    """An 8B-shaped Llama config with SmolLM2's tokenizer (weights come from load_format=dummy)."""
    from loramux.config import load_config
    from loramux.models import ensure_base_model

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    small = ensure_base_model(cfg.model, cfg.paths.cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for f in small.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template", "generation")):
            shutil.copy(f, folder / f.name)
    base = json.loads((small / "config.json").read_text())
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **SHAPE,
        "vocab_size": base["vocab_size"],
        "bos_token_id": base.get("bos_token_id", 1),
        "eos_token_id": base.get("eos_token_id", 2),
        "hidden_act": "silu",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "attention_bias": False,
        "mlp_bias": False,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def weight_bytes(vocab: int) -> int:
    h, f, n = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["num_hidden_layers"]
    kv = SHAPE["num_key_value_heads"] * SHAPE["head_dim"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f + 2 * h
    return 2 * (n * per_layer + 2 * vocab * h + h)


def lora_bytes(rank: int) -> int:
    h, f, n = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["num_hidden_layers"]
    kv = SHAPE["num_key_value_heads"] * SHAPE["head_dim"]
    dims = [(h, h), (h, kv), (h, kv), (h, h), (h, f), (h, f), (f, h)]
    return 2 * n * sum(rank * (i + o) for i, o in dims)


def make_adapters(root: Path, count: int, rank: int) -> list[Path]:
    """Random rank-`rank` PEFT LoRA folders on all linear layers (bf16 safetensors)."""
    import torch
    from safetensors.torch import save_file

    h, f, n = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["num_hidden_layers"]
    kv = SHAPE["num_key_value_heads"] * SHAPE["head_dim"]
    dims = {
        "self_attn.q_proj": (h, h),
        "self_attn.k_proj": (h, kv),
        "self_attn.v_proj": (h, kv),
        "self_attn.o_proj": (h, h),
        "mlp.gate_proj": (h, f),
        "mlp.up_proj": (h, f),
        "mlp.down_proj": (f, h),
    }
    folders = []
    for a in range(count):
        folder = root / f"a{a:02d}"
        folders.append(folder)
        if (folder / "adapter_model.safetensors").is_file():
            continue
        gen = torch.Generator().manual_seed(a)
        tensors = {}
        for layer in range(n):
            for mod, (fan_in, fan_out) in dims.items():
                prefix = f"base_model.model.model.layers.{layer}.{mod}"
                tensors[f"{prefix}.lora_A.weight"] = (
                    torch.randn(rank, fan_in, generator=gen) / fan_in**0.5
                ).to(torch.bfloat16)
                tensors[f"{prefix}.lora_B.weight"] = (
                    torch.randn(fan_out, rank, generator=gen) * 0.01
                ).to(torch.bfloat16)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": MODEL_ID,
            "r": rank,
            "lora_alpha": 2 * rank,
            "lora_dropout": 0.0,
            "bias": "none",
            "target_modules": list(TARGETS),
            "inference_mode": True,
        }
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=1))
    return folders


_WORDS: list[str] = []


def make_prompts(tokenizer: Any, count: int, length: int, seed: int) -> list[str]:
    """`count` different texts of exactly `length` tokens (single-token words)."""
    import random

    if not _WORDS:
        for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
            if token.startswith("Ġ") and token[1:].isalpha() and token[1:].islower():
                if len(tokenizer(" " + token[1:], add_special_tokens=False)["input_ids"]) == 1:
                    _WORDS.append(" " + token[1:])
            if len(_WORDS) >= 2000:
                break
    words = _WORDS
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        text = "".join(rng.choice(words) for _ in range(length))
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == length
        prompts.append(text)
    return prompts


# -- runs ------------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    tokens: int
    ttft: list[float] = field(default_factory=list)

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds


def assign(mode: str, n: int, keys: list[str]) -> list[str | None]:
    """Adapter key per request for a mode: base, 1, 4, 16 (round robin) or 16g (grouped)."""
    if mode == "base":
        return [None] * n
    if mode.endswith("g"):
        k = int(mode[:-1])
        return [keys[i * k // n] for i in range(n)]
    k = int(mode)
    return [keys[i % k] for i in range(n)]


async def run_engine(engine: Any, prompts: list[str], adapters: list[Any], out: int) -> Run:
    """All requests at once through loramux's engine.stream; output tokens over wall time."""
    from loramux.serve.types import GenerationRequest, SamplingParams

    params = SamplingParams(max_tokens=out, temperature=0.0, ignore_eos=True)

    async def one(i: int) -> tuple[int, float]:
        req = GenerationRequest(f"b{i}", params, prompt=prompts[i], adapter=adapters[i])
        t0 = time.perf_counter()
        first = 0.0
        tokens = 0
        async for chunk in engine.stream(req):
            if not first and chunk.text:
                first = time.perf_counter() - t0
            if chunk.finish_reason is not None:
                tokens = chunk.completion_tokens
        return tokens, first

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(len(prompts))))
    return Run(time.perf_counter() - t0, sum(r[0] for r in results), [r[1] for r in results])


async def run_raw(engine: Any, prompts: list[str], loras: list[Any], out: int, eos: bool) -> Run:
    """The same requests straight into vLLM's AsyncLLM (no loramux code on the way)."""
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    llm, tok = engine._llm, engine._tokenizer  # the bench looks inside on purpose
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    params = SamplingParams(
        max_tokens=out, temperature=0.0, ignore_eos=not eos, output_kind=RequestOutputKind.DELTA
    )
    stamp = time.monotonic_ns()

    async def one(i: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        first = 0.0
        tokens = 0
        async for o in llm.generate(
            TokensPrompt(prompt_token_ids=ids[i]), params, f"raw{stamp}-{i}", lora_request=loras[i]
        ):
            if not first and o.outputs[0].text:
                first = time.perf_counter() - t0
            tokens += len(o.outputs[0].token_ids)
        return tokens, first

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(len(prompts))))
    return Run(time.perf_counter() - t0, sum(r[0] for r in results), [r[1] for r in results])


async def start_engine(model_dir: Path, variant: str, args: argparse.Namespace) -> Any:
    from loramux.config import EngineConfig, VLLMEngineConfig
    from loramux.serve.vllm import VLLMEngine

    extra, env = VARIANTS[variant]
    for k in VARIANT_ENV:
        os.environ.pop(k, None)
    os.environ.update(env)
    kernels: str | Path = "none"
    if variant in TUNED:
        kernels = Path(args.lora_configs).resolve() if args.lora_configs else "auto"
    engine = VLLMEngine(
        model_dir,
        EngineConfig(
            max_batch_size=args.max_num_seqs,
            max_loaded_adapters=64,
            context_length=1024,
            vllm=VLLMEngineConfig(
                max_loras=args.max_loras,
                max_lora_rank=16,
                load_format="dummy",
                gpu_memory_utilization=0.85,
                lora_kernel_configs=kernels,
                lora_kernels=KERNELS.get(variant, "vllm"),
                args=dict(extra),
            ),
        ),
        cache_dir=Path(args.cache),
    )
    t0 = time.perf_counter()
    await engine.start()
    log(f"variant {variant}: engine started in {time.perf_counter() - t0:.0f} s")
    return engine


def refs(folders: list[Path]) -> list[Any]:
    from loramux.adapters.version import inspect_adapter

    return [inspect_adapter(f, name=f.name, base_model=MODEL_ID).ref() for f in folders]


async def lora_part(args: argparse.Namespace, model_dir: Path, folders: list[Path]) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    n = args.requests
    modes = args.modes
    raws = [(m, f"{m}-raw") for m in ("base", "16") if m in modes]
    results: dict[str, Any] = {}
    adapter_refs = refs(folders)
    for variant in args.variants:
        engine = await start_engine(model_dir, variant, args)
        try:
            t0 = time.perf_counter()
            for r in adapter_refs:
                await engine.add_adapter(r)
            log(f"added {len(adapter_refs)} adapters in {time.perf_counter() - t0:.1f} s")
            by_key = {r.key: r for r in adapter_refs}
            keys = list(by_key)
            runs: dict[str, list[float]] = {m: [] for m in [*modes, *(r for _, r in raws)]}
            for rep in range(args.repeats + 1):  # round 0 is the warm-up
                for m in modes:
                    prompts = make_prompts(tok, n, args.input_len, seed=1000 * rep + len(m))
                    adapters = [by_key[k] if k else None for k in assign(m, n, keys)]
                    run = await run_engine(engine, prompts, adapters, args.output_len)
                    if rep:
                        runs[m].append(run.tps)
                    log(f"{variant} round {rep} {m:>4}: {run.tps:8.0f} tok/s ({run.tokens} tok)")
                for m, raw in raws:
                    prompts = make_prompts(tok, n, args.input_len, seed=1000 * rep + 7 + len(m))
                    loras = [engine._slots[k].lora if k else None for k in assign(m, n, keys)]
                    run = await run_raw(engine, prompts, loras, args.output_len, eos=False)
                    if rep:
                        runs[raw].append(run.tps)
                    log(f"{variant} round {rep} {raw}: {run.tps:8.0f} tok/s")
            results[variant] = runs
        finally:
            await engine.stop()
            await asyncio.sleep(2)
    return results


# -- gateway ---------------------------------------------------------------------------------------


async def http_client(url: str, jobs: list[tuple[str, str]], out: int, start_at: float) -> dict:
    """Stream /v1/completions for every (model, prompt) at once; per-request TTFT and tokens."""
    import httpx

    limits = httpx.Limits(max_connections=len(jobs) + 8, max_keepalive_connections=len(jobs) + 8)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await client.get("/health")

        async def one(model: str, prompt: str) -> tuple[int, float, float]:
            body = {
                "model": model,
                "prompt": prompt,
                "max_tokens": out,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            t0 = time.perf_counter()
            first = 0.0
            tokens = 0
            async with client.stream("POST", "/v1/completions", json=body) as resp:
                resp.raise_for_status()
                async for line in resp.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    data = json.loads(line[6:])
                    if not first and data.get("choices") and data["choices"][0].get("text"):
                        first = time.perf_counter() - t0
                    if data.get("usage"):
                        tokens = data["usage"]["completion_tokens"]
            return tokens, first, time.time()

        await asyncio.sleep(max(0.0, start_at - time.time()))
        t_begin = time.time()
        results = await asyncio.gather(*(one(m, p) for m, p in jobs))
    return {
        "begin": t_begin,
        "end": max(r[2] for r in results),
        "tokens": sum(r[0] for r in results),
        "ttft": [r[1] for r in results],
    }


def run_http(url: str, jobs: list[tuple[str, str]], out: int, procs: int) -> Run:
    """Spread the jobs over `procs` client processes that start together."""
    import tempfile

    start_at = time.time() + 1.5
    children = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(procs):
            spec = Path(tmp) / f"spec{k}.json"
            spec.write_text(
                json.dumps({"url": url, "jobs": jobs[k::procs], "out": out, "start_at": start_at})
            )
            children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "client", "--spec", str(spec)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        outputs = [c.communicate()[0] for c in children]
    parts = [json.loads(o.strip().splitlines()[-1]) for o in outputs]
    begin, end = min(p["begin"] for p in parts), max(p["end"] for p in parts)
    return Run(end - begin, sum(p["tokens"] for p in parts), [t for p in parts for t in p["ttft"]])


async def gateway_part(args: argparse.Namespace, model_dir: Path, folders: list[Path]) -> dict:
    import uvicorn
    from transformers import AutoTokenizer

    from loramux.api import create_app
    from loramux.config import load_config

    tok = AutoTokenizer.from_pretrained(model_dir)
    data = Path(args.cache) / "bench-gateway"
    config_file = data / "gateway.yaml"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        "server:\n  log_level: warning",
        "auth:\n  enabled: false",  # a local benchmark of the gateway path: no API keys
        f"paths:\n  data_dir: {data / 'data'}\n  cache_dir: {args.cache}",
        f"model:\n  source: {model_dir}\n  id: {MODEL_ID}",
        # max_batch_size: the engine's max_num_seqs, so the admission queue's default lets
        # every slot fill (a smaller limit caps vLLM's batches)
        f"engine:\n  kind: vllm\n  max_new_tokens: 1024\n  context_length: 1024\n"
        f"  max_batch_size: {args.max_num_seqs}",
        "adapters:",
        *[f"  {f.name}:\n    path: {f}" for f in folders],
    ]
    config_file.write_text("\n".join(lines) + "\n")
    config = load_config(config_file, environ={})
    engine = await start_engine(model_dir, args.gateway_variant, args)
    adapter_refs = refs(folders)
    for r in adapter_refs:
        await engine.add_adapter(r)
    app = create_app(config, engine=engine)
    from tests.serve_process import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    n, out = args.requests, args.output_len
    results: dict[str, Any] = {"load": {"http": [], "raw": []}, "single": {"http": [], "raw": []}}
    names = [f.name for f in folders]
    by_name = {r.key.split("@")[0]: engine._slots[r.key].lora for r in adapter_refs}
    try:
        for rep in range(args.repeats + 1):
            for mode in ("base", "16"):
                keys = assign(mode, n, names)
                prompts = make_prompts(tok, n, args.input_len, seed=5000 + rep)
                jobs = [(k or MODEL_ID, p) for k, p in zip(keys, prompts, strict=True)]
                http = await asyncio.to_thread(run_http, url, jobs, out, args.client_procs)
                prompts = make_prompts(tok, n, args.input_len, seed=6000 + rep)
                raw = await run_raw(
                    engine, prompts, [by_name[k] if k else None for k in keys], out, eos=True
                )
                log(
                    f"gateway round {rep} {mode:>4}: http {http.tps:7.0f} tok/s "
                    f"({http.tokens} tok) p50 TTFT {1000 * statistics.median(http.ttft):.0f} ms | "
                    f"raw {raw.tps:7.0f} tok/s ({raw.tokens} tok) p50 TTFT "
                    f"{1000 * statistics.median(raw.ttft):.0f} ms"
                )
                if rep:
                    results["load"]["http"].append((mode, http.tps, statistics.median(http.ttft)))
                    results["load"]["raw"].append((mode, raw.tps, statistics.median(raw.ttft)))
            # One request at a time: TTFT without queueing.
            for k in range(8):
                prompt = make_prompts(tok, 1, args.input_len, seed=7000 + 10 * rep + k)
                model = names[k % len(names)] if k % 2 else MODEL_ID
                http = await asyncio.to_thread(run_http, url, [(model, prompt[0])], 16, 1)
                lora = by_name.get(model)
                raw = await run_raw(engine, prompt, [lora], 16, eos=True)
                if rep:
                    results["single"]["http"].append(http.ttft[0])
                    results["single"]["raw"].append(raw.ttft[0])
    finally:
        server.should_exit = True
        await serving  # the app's lifespan stops the engine
    return results


# -- entry points ----------------------------------------------------------------------------------


def hbm_bandwidth() -> float:
    """Device-to-device copy of 4 GiB, bytes read + written per second (run in a subprocess)."""
    out = subprocess.run(
        [sys.executable, __file__, "hbm"], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def _hbm() -> None:
    import torch

    a = torch.empty(1 << 31, dtype=torch.bfloat16, device="cuda").normal_()
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    print(2 * a.numel() * a.element_size() / statistics.median(times))


def report(results: dict, args: argparse.Namespace, hbm: float, vocab: int) -> str:
    lines = []
    if "lora" in results:
        lines.append(
            f"\nMulti-LoRA, 8B shape, {args.requests} requests of {args.input_len} in / "
            f"{args.output_len} out, max_num_seqs {args.max_num_seqs}, max_loras "
            f"{args.max_loras}; output tok/s, best (median) of {args.repeats}"
        )
        lines.append(
            f"{'variant':<12}"
            + "".join(
                f"{m:>16}" for m in ["base", "1", "4", "16", "16g", "base-raw", "16-raw", "16/base"]
            )
        )
        for variant, runs in results["lora"].items():
            row = f"{variant:<12}"
            for m in ["base", "1", "4", "16", "16g", "base-raw", "16-raw"]:
                v = runs.get(m)
                row += f"{max(v):>9.0f} ({statistics.median(v):>4.0f})" if v else f"{'-':>16}"
            if runs.get("16") and runs.get("base"):
                ratio = statistics.median(runs["16"]) / statistics.median(runs["base"])
                row += f"{ratio:>16.2f}"
            else:
                row += f"{'-':>16}"
            lines.append(row)
    wb = weight_bytes(vocab)
    ctx = args.input_len + args.output_len / 2
    kv = (
        args.max_num_seqs
        * ctx
        * 2
        * SHAPE["num_hidden_layers"]
        * SHAPE["num_key_value_heads"]
        * SHAPE["head_dim"]
        * 2
    )
    step = (wb + kv) / hbm
    with_lora = (wb + kv + 16 * lora_bytes(16)) / hbm
    lines.append(
        f"\nMemory bound: weights {wb / 1e9:.2f} GB + KV cache read {kv / 1e9:.2f} GB per decode "
        f"step (batch {args.max_num_seqs}, mean context {ctx:.0f}) / HBM {hbm / 1e12:.2f} TB/s "
        f"(measured copy) = {1000 * step:.2f} ms per step -> at most "
        f"{args.max_num_seqs / step:.0f} output tok/s; 16 rank-16 adapters add "
        f"{16 * lora_bytes(16) / 1e9:.2f} GB -> {args.max_num_seqs / with_lora:.0f} tok/s"
    )
    if "gateway" in results:
        g = results["gateway"]
        lines.append(f"\nGateway ({args.client_procs} client processes, streaming /v1/completions)")
        for mode in ("base", "16"):
            h = [(t, f) for m, t, f in g["load"]["http"] if m == mode]
            r = [(t, f) for m, t, f in g["load"]["raw"] if m == mode]
            ht, rt = statistics.median(t for t, _ in h), statistics.median(t for t, _ in r)
            hf, rf = statistics.median(f for _, f in h), statistics.median(f for _, f in r)
            lines.append(
                f"{mode:>5}: loramux serve {ht:7.0f} tok/s, p50 TTFT {1000 * hf:6.1f} ms | "
                f"straight into vLLM {rt:7.0f} tok/s, p50 TTFT {1000 * rf:6.1f} ms | "
                f"ratio {ht / rt:.3f}, TTFT +{1000 * (hf - rf):.1f} ms"
            )
        sh, sr = statistics.median(g["single"]["http"]), statistics.median(g["single"]["raw"])
        lines.append(
            f"one at a time: p50 TTFT loramux serve {1000 * sh:.1f} ms, straight {1000 * sr:.1f} "
            f"ms, +{1000 * (sh - sr):.1f} ms"
        )
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> None:
    work = Path(args.cache) / f"bench-vllm-{args.shape}"
    model_dir = make_model(work / "model")
    t0 = time.perf_counter()
    folders = make_adapters(work / "adapters", 16, 16)
    log(f"model config and {len(folders)} adapters ready in {time.perf_counter() - t0:.0f} s")
    hbm = hbm_bandwidth() if args.hbm else 3.0e12
    log(f"HBM copy bandwidth {hbm / 1e12:.2f} TB/s")
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    results: dict[str, Any] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.part in ("lora", "all"):
            results["lora"] = await lora_part(args, model_dir, folders)
            (out / "bench_lora.json").write_text(json.dumps(results, indent=1))
        if args.part in ("gateway", "all"):
            results["gateway"] = await gateway_part(args, model_dir, folders)
    finally:
        (out / f"bench_{args.part}.json").write_text(json.dumps(results, indent=1))
    text = report(results, args, hbm, vocab)
    (out / f"bench_{args.part}.txt").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["lora", "gateway", "all", "client", "hbm"])
    parser.add_argument("--out", default="out")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/loramux"))
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=["capture", "spec+dual"]
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="lora: which modes each round runs (base and 16 also run straight into vLLM)",
    )
    parser.add_argument("--gateway-variant", choices=list(VARIANTS), default="capture")
    parser.add_argument(
        "--lora-configs",
        default=None,
        help="a kernel table folder for the tuned* and fused variants (default: what `auto` picks)",
    )
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--max-num-seqs", type=int, default=128)
    parser.add_argument("--max-loras", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--hbm", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--spec", help="client: the job file")
    parser.add_argument(
        "--shape", choices=["8b", "tiny"], default="8b", help="tiny: a smoke test on CPU"
    )
    args = parser.parse_args()
    if args.shape == "tiny":
        SHAPE.update(
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=64,
        )
    if args.part == "client":
        spec = json.loads(Path(args.spec).read_text())
        jobs = [tuple(j) for j in spec["jobs"]]
        print(
            json.dumps(asyncio.run(http_client(spec["url"], jobs, spec["out"], spec["start_at"])))
        )
        return
    if args.part == "hbm":
        _hbm()
        return
    try:
        import uvloop

        uvloop.run(amain(args))  # what uvicorn (and so `loramux serve`) runs on
    except ImportError:
        asyncio.run(amain(args))


if __name__ == "__main__":
    main()
