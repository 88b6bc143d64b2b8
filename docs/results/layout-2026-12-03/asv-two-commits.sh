#!/usr/bin/env bash
# the suite discovered and a few benchmarks run at the commit before the layout move and the one after
cd /work/trials2/fitbench
export PYTHONPATH=/work/trials2/fitbench/src PATH=/work/main/.venv/bin:$PATH TF_CPP_MIN_LOG_LEVEL=2 FITBENCH_PROFILE=quick
envs=$(python -m fitbench.regress.asvenv)
tf=$(awk '$1 == "tensorflow" { print $2 }' <<<"$envs")
for c in ec0548d 42dfe22; do
  echo "[$(date +%T)] $c"
  asv run --quick --record-samples -E "$tf" --bench 'StepTime\.time_step\(.*256|Determinism\.track_run_to_run|FitLoop\.track_jit_effective' "$c^!"
  echo "asv exit $?"
  cp .asv/results/benchmarks.json /work/asv-two-benchmarks-$c.json
done
echo "[$(date +%T)] done"
