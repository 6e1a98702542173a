#!/usr/bin/env bash
# The prepared GPU check (docs/performance.md, scripts/gpu_check.py): the GPU tests, every CUDA
# form against the reference, the whole-step table on CUDA, a 1-GPU fit and a 2-trial sweep,
# each under its own time limit (8 minutes in all), into one JSON.
#   bash scripts/gpu_check.sh                     # JSON at $OUT/gpu_check.json
#   bash scripts/gpu_check.sh --out PATH          # JSON at PATH
#   bash scripts/gpu_check.sh --download-wheels   # where pip reaches PyPI: .whl/ to carry
# Python: $GPU_CHECK_PYTHON, else this checkout's .venv, else python3 (on the GPU machine the
# one that holds PyTorch).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
    python=$GPU_CHECK_PYTHON
elif [[ -x .venv/bin/python ]]; then
    python=.venv/bin/python
else
    python=python3
fi
exec "$python" scripts/gpu_check.py "$@"
