#!/usr/bin/env bash
# GPU cells and the determinism check on the GPU, for the tensorflow, jax and torch backends.
#
# NOT RUN ON A GPU YET: written on machines without one. It needs an NVIDIA GPU with its driver, and in the
# active Python environment fitbench (`pip install --no-deps -e .` is enough for the jax and torch backends),
# Keras, JAX with CUDA (pip install "jax[cuda12]") and/or a CUDA build of PyTorch; TensorFlow built with CUDA
# (pip install "tensorflow[and-cuda]") is optional: the jax and torch cells do not import it. The first run on
# a GPU machine is the check of this script itself: read its output before trusting the numbers.
#
# Usage: scripts/gpu-check.sh [OUT_DIR]   (default: gpu-results)
#        BACKENDS=jax,torch scripts/gpu-check.sh   (default: each of tensorflow, jax, torch that imports)
# Writes into OUT_DIR: nvidia-smi.txt, run-gpu.json and run-gpu.png (fit cells, raw steps, peak probe),
# determinism-<backend>.json for each backend, and summary.txt. Exit status: 0 when every step did what
# it should, else the number of steps that failed (each is named on stderr).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results}"
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2
py="${PYTHON:-python}"
failed=0

step() {  # step NAME COMMAND...: run it, tee its output to the summary, count a failure
  local name="$1"; shift
  echo "== $name: $*" | tee -a "$out/summary.txt"
  "$@" 2>&1 | tee -a "$out/summary.txt"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "FAILED: $name (exit $rc)" | tee -a "$out/summary.txt" >&2
    failed=$((failed + 1))
  fi
}

: > "$out/summary.txt"
if ! command -v nvidia-smi >/dev/null; then
  echo "gpu-check: no nvidia-smi on this machine: nothing to check" >&2
  exit 2
fi
nvidia-smi > "$out/nvidia-smi.txt"

# The backends to check: as asked, or each framework that imports here (the lent GPU machines have JAX and
# PyTorch but no TensorFlow).
if [ -z "${BACKENDS:-}" ]; then
  BACKENDS=$("$py" -c 'import importlib.util as u; print(",".join(b for b in ("tensorflow", "jax", "torch") if u.find_spec(b)))')
  echo "backends found: ${BACKENDS:-none}" | tee -a "$out/summary.txt"
fi
if [ -z "$BACKENDS" ]; then
  echo "gpu-check: none of tensorflow, jax, torch is installed" >&2
  exit 2
fi

# Each backend must see the GPU before any cell runs (a CPU-only build would only give skipped cells),
# asked the way every cell asks: fitbench.runtime.gpu_names.
for backend in ${BACKENDS//,/ }; do
  step "$backend sees a GPU" "$py" -c 'import sys; from fitbench.runtime import gpu_names
names = gpu_names(sys.argv[1]); print(names or "no GPU"); sys.exit(0 if names else 1)' "$backend"
done

# GPU fit cells (plain and tuned, jit off and on), raw steps and the peak probe; every cell checks that the
# model's and the raw step's variables live on the GPU (status error otherwise) and records the GPU's name.
step "fit cells on the GPU" "$py" -m fitbench run --backend "$BACKENDS" --device gpu --api functional \
  --batch-sizes 32,256,2048 --no-seed-workload --json "$out/run-gpu.json" --plot "$out/run-gpu.png"

# Bit-identity of Sequential/Functional/Subclassed and run to run, on the GPU: TF op determinism,
# XLA_FLAGS=--xla_gpu_deterministic_ops=true on JAX, torch.use_deterministic_algorithms(True) on PyTorch.
for backend in ${BACKENDS//,/ }; do
  step "determinism on the GPU, $backend" "$py" -m fitbench determinism --backend "$backend" --device gpu \
    --epochs 3 --samples 256 --batch-size 64 --json "$out/determinism-$backend.json"
done

# The placement each record reports, one line per cell; a cell that is not "ok" (skipped: the backend saw
# no GPU; error: e.g. variables found off the GPU) fails this step.
step "every GPU cell ran on the GPU" "$py" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
bad = 0
for r in doc["records"]:
    bad += r["status"] != "ok"
    print(r["backend"], r["variant"], "jit", r["jit_requested"], "batch", r["batch_size"], r["status"],
          r.get("device_name"), r.get("variable_device"), r.get("raw_device"), r.get("reason") or r.get("error") or "")
for p in doc["peaks"]:
    bad += p["status"] != "ok"
    print("peak", p["backend"], p["status"], p.get("gflops_per_s"), p.get("device_name"))
sys.exit(1 if bad or not doc["records"] else 0)' "$out/run-gpu.json"
echo "gpu-check: $failed step(s) failed; results in $out" | tee -a "$out/summary.txt"
exit "$failed"
