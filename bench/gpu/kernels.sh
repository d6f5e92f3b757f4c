#!/usr/bin/env bash
# Issue 22 on the lent GPU, in one command of at most 8 minutes (vLLM 0.26 installed):
#   bash bench/gpu/kernels.sh            (or: bash bench/gpu/run.sh kernels22)
# Stages, each time-boxed, each writing its own files under $OUT/kernels22/ (a failure or a
# time-out in one leaves the others' files):
#   check2  the fused kernel (2 launches) and the op `lora_kernels: fused` installs vs vLLM's
#           kernels at the 8B shapes, 1-512 tokens -> check_launches2.json
#   check1  the one-launch form at decode sizes -> check_launches1.json (if it fails or hangs,
#           the tune and the step leave the one-launch form out)
#   tune    `loramux kernels tune --quick` -> tables/<GPU>/ (commit it as
#           src/loramux/serve/lora_kernels/<GPU>/)
#   step    one decode step's LoRA kernels per kernel choice, 16 mixed and 1 -> step.txt, .json
set -uo pipefail
source /tmp/gpu-env.sh
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
out=${OUT:-out}/kernels22
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/device.txt"
: > "$out/stages.txt"
stage() {  # name, seconds, command...
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$out/stages.txt"
  return $rc
}
# decode sizes and one prefill size (above the table's rows the op runs vLLM's own kernels); on
# the H200, 100 s over every size from 1 to 4,096 tokens covered only qkv (48 of 192 rows)
stage check2 160 python3 bench/gpu/kernels22.py check --launches 2 --tokens 1 16 64 128 256 512 --out "$out"
# the one-launch form at decode sizes (the only ones its table uses); it stays in the search
# only if it ran and matched (a time-out with matching rows is slowness, not a hang)
stage check1 60 python3 bench/gpu/kernels22.py check --launches 1 --tokens 1 16 64 128 256 --out "$out"
one=$(python3 -c "import json,sys
try: d = json.load(open(sys.argv[1]))
except Exception: d = {}
print('--one-launch' if d.get('rows') and d.get('pass') else '--no-one-launch')" "$out/check_launches1.json")
echo "one-launch form: $one" | tee -a "$out/stages.txt"
stage tune 170 python3 bench/gpu/kernels22.py tune --out "$out/tables" --budget-s 110 $one
tables=$(find "$out/tables" -mindepth 1 -maxdepth 1 -type d ! -name '.*' 2>/dev/null | head -1)
stage step 110 python3 bench/gpu/kernels22.py step ${tables:+--tables "$tables"} --out "$out" $one
echo "== checks (scaled max err; pass <= 1e-2)"
for f in "$out"/check_launches*.json; do
  [ -f "$f" ] && python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[1], 'worst', f\"{d['worst']:.2e}\", 'PASS' if d['pass'] else 'FAIL', '' if d['complete'] else '(incomplete)')" "$f"
done
grep -h "FAIL" "$out"/check*.log | head -5
echo "== tune"; tail -3 "$out/tune.log"
echo "== step"; cat "$out/step.txt" 2>/dev/null || tail -20 "$out/step.log"
