#!/usr/bin/env bash
# GPU cells and the determinism check on the GPU, for the tensorflow, jax and torch backends.
#
# Run once on an H200 (2026-12-04, JAX and PyTorch; docs/gpu.md has what it found and the call that ran it).
# It needs an NVIDIA GPU with its driver, and in the active Python environment fitbench (`pip install
# --no-deps -e .` is enough for the jax and torch backends), Keras, JAX with CUDA (pip install "jax[cuda12]")
# and/or a CUDA build of PyTorch; TensorFlow built with CUDA (pip install "tensorflow[and-cuda]") is optional:
# the jax and torch cells do not import it; its TensorFlow leg has not run on a GPU.
#
# Usage: scripts/gpu-check.sh [OUT_DIR]   (default: gpu-results)
# Settings (environment):
#   BACKENDS=jax,torch          default: each of tensorflow, jax, torch that imports
#   BATCH_SIZES=32,2048,16384   the fit cells' batch sizes (default 32,256,2048)
#   DETERMINISM_JIT=jax=on      jit of each backend's determinism check (default: the command's own, off)
#   DETERMINISM_SWITCH=both     also check without the backend's determinism switch (default: with it only)
#   DEVICES_BATCH_SIZES=256,4096 the data-parallel cells' global batches (JAX, with 2 GPUs or more)
#   FIT=0, DETERMINISM=0        skip the fit cells, the determinism checks (e.g. a second call for the cost
#                               alone: a lent machine returns at most 8 files)
#   COST=0                      skip what the switch costs (`fitbench cost`, 6 processes a side) and which
#                               layers it covers (`fitbench coverage` of COVERAGE_MODELS, default conv attention)
#   DETERMINISM_FIRST=1         the determinism checks before the fit cells (what a DEADLINE cuts comes last)
#   DEADLINE=420                seconds for the whole script: each step gets what is left and is stopped
#                               with Ctrl-C at the end (a stopped `fitbench run` keeps the cells it finished)
#   PLOT=0                      no PNGs (a lent machine returns at most 8 files; `fitbench.report.plot`
#                               redraws them from the JSON)
# Writes into OUT_DIR: nvidia-smi.txt, run-gpu-<backend>.json (+ .png) per backend (fit cells, raw steps,
# peak probe), determinism-<backend>[-noswitch].json, cost-gpu-<backend>.json, coverage-gpu-<backend>-<model>.json
# and summary.txt. Exit status: 0 when every step did
# what it should, else the number of steps that failed (each is named on stderr).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results}"
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2
py="${PYTHON:-python}"
failed=0

deadline="${DEADLINE:-}"
step() {  # step NAME COMMAND...: run it, tee its output to the summary, count a failure
  local name="$1"; shift
  local limit=()
  if [ -n "$deadline" ]; then
    local left=$((deadline - SECONDS))
    if [ "$left" -lt 5 ]; then
      echo "FAILED: $name (not started: the deadline of ${deadline}s is reached)" | tee -a "$out/summary.txt" >&2
      failed=$((failed + 1))
      return
    fi
    limit=(timeout -s INT -k 20 "$left")
  fi
  echo "== $name [at ${SECONDS}s]: $*" | tee -a "$out/summary.txt"
  "${limit[@]}" "$@" 2>&1 | tee -a "$out/summary.txt"
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
# asked the way every cell asks: fitbench.processes.runtime.gpu_names.
for backend in ${BACKENDS//,/ }; do
  step "$backend sees a GPU" "$py" -c 'import sys; from fitbench.processes.runtime import gpu_names
names = gpu_names(sys.argv[1]); print(names or "no GPU"); sys.exit(0 if names else 1)' "$backend"
done

# GPU fit cells (plain and tuned, jit off and on), raw steps and the peak probe; every cell checks that the
# model's and the raw step's variables live on the GPU (status error otherwise) and records the GPU's name.
# One `fitbench run` per backend: a backend that stops early leaves the other's results whole.
fit_cells() {
for backend in ${BACKENDS//,/ }; do
  plot=(--plot "$out/run-gpu-$backend.png")
  [ "${PLOT:-1}" = 0 ] && plot=()
  step "fit cells on the GPU, $backend" "$py" -m fitbench run --backend "$backend" --device gpu --api functional \
    --batch-sizes "${BATCH_SIZES:-32,256,2048}" --no-seed-workload --cell-timeout 120 \
    --json "$out/run-gpu-$backend.json" "${plot[@]}"
done
# The placement each record reports, one line per cell; a cell that is not "ok" (skipped: the backend saw
# no GPU; error: e.g. variables found off the GPU) fails this step. It only reads the documents, so a DEADLINE
# that stopped the last run does not keep it from reading what that run kept.
local saved_deadline=$deadline
deadline=""
runs=()
for backend in ${BACKENDS//,/ }; do runs+=("$out/run-gpu-$backend.json"); done
step "every GPU cell ran on the GPU" "$py" -c '
import json, os, sys
docs = [json.load(open(p)) for p in sys.argv[1:] if os.path.exists(p)]
for p in sys.argv[1:]:
    if not os.path.exists(p):
        print("missing:", p)
records = [r for doc in docs for r in doc["records"]]
bad = 0
for r in records:
    bad += r["status"] != "ok"
    print(r["backend"], r["variant"], "jit", r["jit_requested"], "batch", r["batch_size"], r["status"],
          r.get("device_name"), r.get("variable_device"), r.get("raw_device"), r.get("reason") or r.get("error") or "")
for p in (p for doc in docs for p in doc["peaks"]):
    bad += p["status"] != "ok"
    print("peak", p["backend"], p["status"], p.get("gflops_per_s"), p.get("device_name"))
sys.exit(1 if bad or not records or len(docs) < len(sys.argv[1:]) else 0)' "${runs[@]}"
deadline=$saved_deadline
}

# Bit-identity of Sequential/Functional/Subclassed and run to run, on the GPU: TF op determinism,
# XLA_FLAGS=--xla_gpu_deterministic_ops=true on JAX, torch.use_deterministic_algorithms(True) on PyTorch.
jit_of() {  # the --jit flag DETERMINISM_JIT gives BACKEND, if any
  local item
  local jits="${DETERMINISM_JIT:-}"
  for item in ${jits//,/ }; do
    [ "${item%%=*}" = "$1" ] && echo "--jit ${item#*=}"
  done
}
determinism_checks() {
for backend in ${BACKENDS//,/ }; do
  # shellcheck disable=SC2046  # jit_of prints zero or two words
  step "determinism on the GPU, $backend" "$py" -m fitbench determinism --backend "$backend" --device gpu \
    $(jit_of "$backend") --epochs 3 --samples 256 --batch-size 64 --json "$out/determinism-$backend.json"
done
if [ "${DETERMINISM_SWITCH:-on}" = both ]; then
  # Without the switch: is it needed on this GPU? A difference here is a finding, not a failed step.
  for backend in ${BACKENDS//,/ }; do
    # shellcheck disable=SC2046
    step "determinism on the GPU without the switch, $backend" bash -c '"$@"; rc=$?; [ "$rc" -le 1 ]' _ \
      "$py" -m fitbench determinism --backend "$backend" --device gpu $(jit_of "$backend") --no-op-determinism \
      --epochs 3 --samples 256 --batch-size 64 --json "$out/determinism-$backend-noswitch.json"
  done
fi
}

# Under a DEADLINE the steps that come last are the ones cut: DETERMINISM_FIRST=1 runs the determinism checks
# (a few short processes, a yes/no answer each) before the fit cells (whose run keeps the cells it finished).
if [ "${DETERMINISM_FIRST:-0}" = 1 ]; then
  [ "${DETERMINISM:-1}" = 1 ] && determinism_checks
  [ "${FIT:-1}" = 1 ] && fit_cells
else
  [ "${FIT:-1}" = 1 ] && fit_cells
  [ "${DETERMINISM:-1}" = 1 ] && determinism_checks
fi

# What the determinism switch costs on the GPU (the published figures range from nothing to +746 %), with the
# A/A, and which of the zoo's layers it covers there; a cost or an uncovered layer is a finding (exit 1), not a
# failed step.
if [ "${COST:-1}" = 1 ]; then
  for backend in ${BACKENDS//,/ }; do
    step "cost of the determinism switch on the GPU, $backend" "$py" -m fitbench cost --backend "$backend" \
      --device gpu --batch-sizes "${COST_BATCH_SIZES:-256,4096}" --jit on --processes "${COST_PROCESSES:-6}" \
      --cell-timeout 120 --json "$out/cost-gpu-$backend.json"
    for model in ${COVERAGE_MODELS:-conv attention}; do
      step "coverage of the switch on the GPU, $backend $model" bash -c '"$@"; rc=$?; [ "$rc" -le 1 ]' _ \
        "$py" -m fitbench coverage --backend "$backend" --device gpu --model "$model" \
        --json "$out/coverage-gpu-$backend-$model.json"
    done
  done
fi

# Data parallelism over the GPUs (keras.distribution.DataParallel, JAX): the speed-up and scaling table that
# simulated CPU devices cannot give, and determinism at N against N and N against 1. Only with two GPUs or more.
if [[ ",$BACKENDS," == *",jax,"* ]]; then
  gpus=$("$py" -c 'from fitbench.processes.runtime import gpu_names; print(len(gpu_names("jax")))' 2>/dev/null || echo 0)
  if [ "${gpus:-0}" -ge 2 ]; then
    counts=1; n=2
    while [ "$n" -le "$gpus" ]; do counts="$counts,$n"; n=$((n * 2)); done
    step "data parallelism over $gpus GPUs, jax" "$py" -m fitbench run --backend jax --device gpu --api functional \
      --devices "$counts" --batch-sizes "${DEVICES_BATCH_SIZES:-256,4096}" --jit on --variant plain \
      --no-seed-workload --cell-timeout 120 --json "$out/run-gpu-devices-jax.json"
    step "determinism across GPU counts, jax" bash -c '"$@"; rc=$?; [ "$rc" -le 1 ]' _ \
      "$py" -m fitbench determinism --backend jax --device gpu --api functional --devices "$counts" \
      --samples 256 --batch-size 64 --epochs 2 --json "$out/determinism-gpu-devices-jax.json"
  else
    echo "data parallelism: ${gpus:-0} GPU(s) visible to jax, the devices cells need 2 or more" | tee -a "$out/summary.txt"
  fi
fi

echo "gpu-check: $failed step(s) failed; results in $out" | tee -a "$out/summary.txt"
exit "$failed"
