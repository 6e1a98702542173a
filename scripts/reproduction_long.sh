#!/usr/bin/env bash
# Issue 26's long runs, in order, one worker with one thread (the machine stays usable). Each
# `sweep run` resumes where it stopped (journal + checkpoints), so after any stop the same
# command continues: run it from a checkout of its own with its own venv, e.g.
#   git worktree add ../repro-runs HEAD && cd ../repro-runs && python3 -m venv .venv &&
#   .venv/bin/pip install -e . && nohup bash scripts/reproduction_long.sh > repro.log 2>&1 &
# Wall time of each sweep is printed when it ends.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${VENV:-.venv}/bin
for sweep in \
  sweeps/copy_grid_authors_t20_cpu.yaml \
  sweeps/copy_table4_t30_60k_cpu.yaml \
  sweeps/copy_table4_authors_t20_60k_cpu.yaml \
  sweeps/copy_grid_authors_t20_60k_cpu.yaml \
  sweeps/adding_irnn_long_cpu.yaml \
  sweeps/copy_table4_t30_60k_seeds_cpu.yaml \
  sweeps/copy_table4_authors_t20_60k_seeds_cpu.yaml \
  sweeps/adding_wrnn_long_cpu.yaml; do
  start=$(date +%s)
  echo "$(date -Is) start $sweep"
  "$bin/wave-lightning" sweep run "$sweep" --workers 1 --threads 1
  echo "$(date -Is) end $sweep: exit $?, $(( $(date +%s) - start )) s of wall time"
done
