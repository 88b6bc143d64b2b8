#!/usr/bin/env bash
# issue 34's two-runner check, on real results: two stage-1 alerts stored under runner-1 and runner-2, then the
# combined decision from two result folders against the one from one folder holding both machines.
set -uo pipefail
cd /work/trials2/fitbench
export PYTHONPATH=/work/trials2/fitbench/src TF_CPP_MIN_LOG_LEVEL=2 PATH=/work/main/.venv/bin:$PATH
OUT=/work/two; rm -rf $OUT; mkdir -p $OUT
BENCH='bench_fit\.StepTime\.time_step'
for r in 1 2; do asv machine --yes --machine runner-$r >/dev/null; done
for r in 1 2; do
  echo "[$(date +%T)] runner-$r"
  python -m fitbench alert base slow --machine runner-$r --stages 1 --bench "$BENCH" --backend tensorflow,jax --out $OUT/r$r > $OUT/r$r.log 2>&1
  echo "runner-$r exit $?"
done
for r in 1 2; do mkdir -p $OUT/folder$r/results; cp .asv/results/benchmarks.json $OUT/folder$r/results/; cp -r .asv/results/runner-$r $OUT/folder$r/results/; done
python -m fitbench alert base slow --stored --results $OUT/folder1/results --results $OUT/folder2/results --bench "$BENCH" --backend tensorflow,jax --out $OUT/split > $OUT/split.log 2>&1; echo "split exit $?"
python -m fitbench alert base slow --stored --machine runner-1,runner-2 --bench "$BENCH" --backend tensorflow,jax --out $OUT/one > $OUT/one.log 2>&1; echo "one exit $?"
echo "[$(date +%T)] done"
