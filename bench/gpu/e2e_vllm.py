"""GPU proof: `loramux serve --engine vllm` answers the openai client like the hf engine does.

Runs on the lent GPU machine after `bench/gpu/run.sh setup` (or anywhere vLLM runs):

  python bench/gpu/e2e_vllm.py --out $OUT

1. Greedy reference answers of the hf engine (transformers + PEFT) for the base model and the demo
   adapters, in bfloat16 and float32, on the same GPU.
2. Then `python -m loramux serve --engine vllm` as a subprocess with those adapters.
3. The official `openai` client sends all cases concurrently (twice each, plus one streamed), and
   every answer is compared with the hf engine's. Writes e2e.json and serve.log under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))  # tests.serve_process: free port, wait for /ready
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BASE = "SmolLM2-135M-Instruct"
QUESTIONS = {
    "hr": ["What is the HR self-service tool called?", "How many vacation days do I get?"],
    "it": [
        "What software do I use to connect securely when I'm off-site?",
        "How do I reset my password?",
    ],
    BASE: ["What is the capital of France?", "What is the HR self-service tool called?"],
}
MAX_TOKENS = 32


def _cases(adapters: list[str]) -> list[tuple[str, str]]:
    return [(m, q) for m, qs in QUESTIONS.items() if m == BASE or m in adapters for q in qs]


async def _hf_reference(
    model_dir: Path, adapters: list[str], dtype: str, device: str
) -> dict[str, str]:
    from loramux.adapters.version import inspect_adapter
    from loramux.config import EngineConfig
    from loramux.serve.engine import generate
    from loramux.serve.hf import HFEngine
    from loramux.serve.types import GenerationRequest, SamplingParams
    from loramux.types import ChatMessage

    engine = HFEngine(
        model_dir,
        EngineConfig.model_validate({"max_batch_size": 16, "dtype": dtype, "device": device}),
    )
    await engine.start()
    refs = {
        n: inspect_adapter(REPO / "demo" / "adapters" / n, name=n, base_model=BASE).ref()
        for n in adapters
    }
    for r in refs.values():
        await engine.add_adapter(r)
    cases = _cases(adapters)
    results = await asyncio.gather(
        *(
            generate(
                engine,
                GenerationRequest(
                    request_id=f"hf{i}",
                    sampling=SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0),
                    messages=(ChatMessage("user", q),),
                    adapter=refs.get(m),
                ),
            )
            for i, (m, q) in enumerate(cases)
        )
    )
    await engine.stop()
    return {f"{m} | {q}": r.text for (m, q), r in zip(cases, results, strict=True)}


async def _ask_all(url: str, adapters: list[str]) -> tuple[dict[str, list[str]], str, float]:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    cases = _cases(adapters) * 2
    t0 = time.perf_counter()
    replies = await asyncio.gather(
        *(
            client.chat.completions.create(
                model=m,
                messages=[{"role": "user", "content": q}],
                temperature=0,
                max_tokens=MAX_TOKENS,
            )
            for m, q in cases
        )
    )
    seconds = time.perf_counter() - t0
    answers: dict[str, list[str]] = {}
    for (m, q), r in zip(cases, replies, strict=True):
        answers.setdefault(f"{m} | {q}", []).append(r.choices[0].message.content or "")
    m, q = cases[0]
    stream = await client.chat.completions.create(
        model=m,
        messages=[{"role": "user", "content": q}],
        temperature=0,
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return answers, "".join(pieces), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--ready-timeout", type=float, default=420)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dtype", default="auto", help="engine.dtype of the vllm server")
    parser.add_argument(
        "--lora-kernel-configs", default=None, help="engine.vllm.lora_kernel_configs (e.g. builtin)"
    )
    parser.add_argument(
        "--lora-kernels",
        choices=["vllm", "masked", "fused", "concat"],
        default="vllm",
        help="engine.vllm.lora_kernels",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from loramux.config import load_config
    from loramux.models import ensure_base_model

    cfg = load_config(REPO / "configs" / "default.yaml", environ={})
    model_dir = ensure_base_model(cfg.model, cfg.paths.cache_dir, progress=print)
    adapters = [n for n in ("hr", "it") if (REPO / "demo" / "adapters" / n).is_dir()]
    print(f"adapters: {adapters}", flush=True)

    # hf references first: vLLM sizes its KV cache from the GPU memory free while it starts.
    refs = {
        dtype: asyncio.run(_hf_reference(model_dir, adapters, dtype, args.device))
        for dtype in ("bfloat16", "float32")
    }
    print("hf references done", flush=True)
    from tests.serve_process import free_port, stop, wait_ready

    port = free_port()
    config = args.out / "serve.yaml"
    lines = [
        f"paths:\n  data_dir: {args.out.resolve() / 'data'}",
        "auth:\n  enabled: false",  # a local check on loopback; the API-key paths have own tests
        "engine:",
        "  kind: vllm",
        f"  dtype: {args.dtype}",
        "  max_batch_size: 64",
        "  context_length: 2048",
        "  vllm:",
        "    max_loras: 4",
        "    max_lora_rank: 32",  # the demo adapters: rank 32
        "    gpu_memory_utilization: 0.3",
        *(
            [f"    lora_kernel_configs: {args.lora_kernel_configs}"]
            if args.lora_kernel_configs
            else []
        ),
        f"    lora_kernels: {args.lora_kernels}",
        "adapters:",
    ] + [f"  {n}:\n    path: {REPO / 'demo' / 'adapters' / n}" for n in adapters]
    config.write_text("\n".join(lines) + "\n")
    log = (args.out / "serve.log").open("w")
    env = {**os.environ, "LORAMUX_PORT": str(port)}
    cmd = [sys.executable, "-m", "loramux", "serve", "--config", str(config), "--engine", "vllm"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    t_start = time.perf_counter()
    report: dict[str, object] = {"command": " ".join(cmd[1:]), "adapters": adapters}
    try:
        url = f"http://127.0.0.1:{port}"
        tail = (args.out / "serve.log").read_text
        why = wait_ready(proc, url, lambda: tail()[-3000:], timeout=args.ready_timeout, interval=1)
        if why:
            raise SystemExit(why)
        report["ready_after_s"] = round(time.perf_counter() - t_start, 1)
        print(f"serve ready after {report['ready_after_s']} s", flush=True)
        answers, streamed, seconds = asyncio.run(_ask_all(url, adapters))
        rows = []
        for key, got in answers.items():
            rows.append(
                {
                    "case": key,
                    "vllm": got[0],
                    "repeat_equal": all(g == got[0] for g in got),
                    "equal_hf_bf16": got[0] == refs["bfloat16"][key],
                    "equal_hf_fp32": got[0] == refs["float32"][key],
                    "hf_bf16": refs["bfloat16"][key],
                    "hf_fp32": refs["float32"][key],
                }
            )
        first = next(iter(answers))
        report.update(
            rows=rows,
            concurrent_requests=sum(len(v) for v in answers.values()),
            concurrent_seconds=round(seconds, 2),
            stream_equal=streamed == answers[first][0],
        )
    finally:
        stop(proc, 60)
        log.close()
        (args.out / "e2e.json").write_text(json.dumps(report, indent=1))
    for row in report.get("rows", []):  # type: ignore[union-attr]
        marks = " ".join(
            f"{d}={'OK' if row[f'equal_hf_{d}'] else 'DIFF'}" for d in ("bf16", "fp32")
        )
        print(f"{marks}  {row['case']}\n    vllm: {row['vllm']!r}")
        if not row["equal_hf_bf16"]:
            print(f"    hf16: {row['hf_bf16']!r}")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))


if __name__ == "__main__":
    main()
