#!/usr/bin/env bash
# Today's asv benchmarks over two commits (e.g. before and after a re-cut of fitbench): the whole suite on
# tensorflow, the fit loop's throughput, StepTime and the determinism tracks on jax and torch, quick profile.
# Usage: scripts/asv_two_commits.sh BEFORE AFTER   (then read .asv/results/<machine>/<commit>-*.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 FITBENCH_PROFILE=quick
envs=$(python -m fitbench.regress.asvenv)
env_of() { awk -v b="$1" '$1 == b { print $2 }' <<<"$envs"; }
for c in "$1" "$2"; do
  asv run --quick --record-samples -E "$(env_of tensorflow)" "$c^!"
  asv run --quick --record-samples -E "$(env_of jax)" -E "$(env_of torch)" \
    --bench 'StepTime|FitLoop\.track_samples_per_second|Determinism' "$c^!"
done
