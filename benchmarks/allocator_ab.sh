#!/usr/bin/env bash
# The CPU allocator under the whole-step benchmark: glibc (the default), torch's transparent
# huge pages for large blocks (THP_MEM_ALLOC_ENABLE=1), tcmalloc and jemalloc (LD_PRELOAD,
# Debian's libtcmalloc-minimal4 and libjemalloc2). Two passes, the variants alternating, one
# JSON per run in OUT (default docs/allocator): the layer in user code (square loss, Linear
# head) at copy80 and adding150, then the tasks' own steps with and without THP.
#   bash benchmarks/allocator_ab.sh [OUT]      # about 25 min on the 2-core box, idle
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/allocator}
lib=/usr/lib/x86_64-linux-gnu
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
variant_env() {  # the environment a variant adds (words without spaces)
  case $1 in
    glibc) ;;
    thp) echo "THP_MEM_ALLOC_ENABLE=1" ;;
    tcmalloc) echo "LD_PRELOAD=$lib/libtcmalloc_minimal.so.4" ;;
    jemalloc) echo "LD_PRELOAD=$lib/libjemalloc.so.2" ;;
  esac
}
bench() {  # VARIANT JSON ARGS...
  local variant=$1 json=$2
  shift 2
  echo "== $variant -> $json"
  # shellcheck disable=SC2046
  env $(variant_env "$variant") PYTHONPATH=. "$python" benchmarks/training_step.py --threads 2 \
    --json "$json" "$@" | grep -E '^\||matmul rate'
}
for pass in 1 2; do
  for variant in glibc thp jemalloc tcmalloc; do
    bench "$variant" "$out/user-code-$variant-$pass.json" --uses square head \
      --shapes copy80 adding150 --forms wrnn-reference wrnn-cpp --no-peaks --repeats 5
  done
done
for pass in 1 2; do
  for variant in glibc thp; do
    bench "$variant" "$out/task-$variant-$pass.json" \
      --shapes copy80 adding100 psmnist200 mnist1d --forms wrnn-reference wrnn-cpp gru --repeats 5
  done
done
