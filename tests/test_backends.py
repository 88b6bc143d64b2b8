"""Keras on JAX and PyTorch: fit cells, raw steps and the determinism check, each in its own process.

Each test skips, with the reason, when its framework is not installed (pip install -e ".[jax]" / ".[torch]").
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL, load, run_cli
from fitbench import cli

BACKENDS = ["jax", "torch"]
ROOT = Path(__file__).resolve().parents[1]


def need(backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e \".[{backend}]\")")


# Runs in a child with KERAS_BACKEND set: three raw steps and three Keras fit steps from the same weights.
_COMPARE = """
import json, sys
import numpy as np
from fitbench.models.seed_data import synthetic_batch
from fitbench.models.seed import ModelSpec, build_model, compile_model
from fitbench.measure.raw import RawHarness
spec, out = ModelSpec(widths=(16, 16)), {}
for jit in (False, True):
    raw = RawHarness(sys.argv[1], jit, 4, spec, seed=5)
    raw.run_steps(3)
    model = compile_model(build_model("functional", spec, seed=5), jit, spec)
    x, y = synthetic_batch(spec, 4, 5)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False)
    out["on" if jit else "off"] = {
        "raw_losses": raw.losses, "keras_losses": history.history["loss"], "device": raw.variable_device(),
        "max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(raw.weights(), model.get_weights()))}
out["tensorflow_loaded"] = "tensorflow" in sys.modules  # fitbench's seeding keeps it out (TF is installed)
import keras
seeded = build_model("functional", spec, seed=5).get_weights()
keras.utils.set_random_seed(5)  # Keras' own way, which seeds (and imports) TensorFlow too
out["same_init_as_keras_seeding"] = all(np.array_equal(a, b) for a, b in
                                        zip(seeded, build_model("functional", spec).get_weights()))
print(json.dumps(out))
"""


def _compare(backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", _COMPARE, backend], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.processes
def test_raw_jax_step_trains_exactly_like_keras_fit_on_jax():
    need("jax")
    result = _compare("jax")
    assert result.pop("tensorflow_loaded") is False and result.pop("same_init_as_keras_seeding") is True
    for jit, out in result.items():
        assert out["max_abs_diff"] <= 1e-6, jit  # same weights, data, MSE and Adam formula
        assert out["raw_losses"] == pytest.approx(out["keras_losses"], rel=1e-5), jit
        assert out["device"].lower().startswith("cpu")


@pytest.mark.processes
def test_raw_torch_step_trains_like_keras_fit_on_torch():
    need("torch")
    result = _compare("torch")
    assert result.pop("tensorflow_loaded") is False and result.pop("same_init_as_keras_seeding") is True
    for jit, out in result.items():
        # torch.optim.Adam adds epsilon after the bias correction, Keras before it: the first loss (before
        # any update) is the same, the next ones drift apart by about 1e-3 of the loss within three steps
        assert out["raw_losses"][0] == pytest.approx(out["keras_losses"][0], rel=1e-6), jit
        assert out["raw_losses"] == pytest.approx(out["keras_losses"], rel=5e-3), jit
        assert out["raw_losses"][2] < out["raw_losses"][0]
        assert out["device"] == "cpu"


@pytest.mark.processes
def test_run_on_jax_and_torch_records_the_backend_the_floor_and_the_tuned_knobs(tmp_path, without_tensorflow):
    for backend in BACKENDS:
        need(backend)
    out = tmp_path / "run.json"
    # Without TensorFlow, as on the lent GPU machines: the JAX and PyTorch cells must not need it.
    result = run_cli("run", *SMALL, "--backend", "jax,torch", "--api", "functional", "--batch-sizes", "4",
                     "--jit", "on", "--no-seed-workload", "--json", str(out), env=without_tensorflow)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = load(out)
    assert sorted((p["backend"], p["status"]) for p in doc["peaks"]) == [("jax", "ok"), ("torch", "ok")]
    records = {(r["backend"], r["variant"]): r for r in doc["records"]}
    assert sorted(records) == [("jax", "plain"), ("jax", "tuned"), ("torch", "plain"), ("torch", "tuned")]
    for (backend, variant), r in records.items():
        assert r["status"] == "ok" and r["jit_effective"] is True and backend in r["versions"]
        assert "tensorflow" not in r["versions"] and r["input_pipeline"] == "python generator"
        assert r["prefetch"] is False and r["data_on_device"] is (variant == "tuned")
        assert r["variable_device"].lower().startswith("cpu") and r["raw_device"].lower().startswith("cpu")
        assert r["raw_step_time_s"] > 0 and r["efficiency"] == pytest.approx(r["raw_step_time_s"] /
                                                                              r["step_time_median_s"])
        assert r["device_name"] and r["pct_of_peak"] > 0
    assert records["jax", "tuned"]["steps_per_execution"] == doc["profile"]["steps_per_execution"] > 1
    # traces of the step over all of a cell's fit calls: one jax.jit trace; torch.compile's graphs, the same
    # for both variants (each cell traces once, whatever its fit calls)
    assert records["jax", "plain"]["step_traces"] == records["jax", "tuned"]["step_traces"] == 1
    assert records["torch", "plain"]["step_traces"] == records["torch", "tuned"]["step_traces"] >= 1
    assert records["torch", "plain"]["step_traces_what"].startswith("graphs torch.compile compiled")
    # Keras on PyTorch refuses steps_per_execution > 1: the cell says so and runs 1
    torch_tuned = records["torch", "tuned"]
    assert torch_tuned["steps_per_execution"] == 1 and "PyTorch" in torch_tuned["variant_note"]
    assert torch_tuned["steps_timed"] == len(torch_tuned["step_times_s"])


@pytest.mark.processes
@pytest.mark.parametrize("backend", BACKENDS)
def test_determinism_on_each_backend_is_bit_identical_and_says_which_switch_was_on(tmp_path, backend,
                                                                                    without_tensorflow):
    need(backend)
    out = tmp_path / "det.json"
    result = run_cli("determinism", *SMALL, "--backend", backend, "--epochs", "1", "--api",
                     "sequential,functional", "--runs", "3", "--json", str(out), env=without_tensorflow)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = load(out)
    # 1 pair across the APIs, and each API in 3 processes: 3 run-to-run pairs each
    assert doc["backend"] == backend and doc["all_identical"] is True and len(doc["pairs"]) == 1 + 2 * 3
    assert len(doc["runs"]) == 3
    for run in doc["runs"]:
        assert run["backend"] == backend and run["op_determinism"] is True
        if backend == "jax":
            assert "--xla_gpu_deterministic_ops=true" in run["xla_flags"]
        else:
            assert run["threads"] == {"intra_op": 2, "inter_op": 1}


def test_without_tensorflow_the_tensorflow_backend_is_one_line_and_exit_2(tmp_path, without_tensorflow):
    out = tmp_path / "run.json"
    result = run_cli("run", *SMALL, "--json", str(out), env=without_tensorflow)
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.strip().splitlines() == [
        "fitbench: error: the tensorflow backend needs the tensorflow package, which is not installed"]


def test_a_missing_backend_asked_for_alone_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("fitbench.stacks.backend_missing",
                        lambda b: None if b == "tensorflow" else f"the {b} backend needs the {b} package")
    out = tmp_path / "run.json"
    assert cli.main(["run", "--backend", "jax", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fitbench: error: the jax backend needs the jax package"]
    assert cli.main(["determinism", "--backend", "torch"]) == 2
    assert not out.exists()


def test_gpu_determinism_without_a_gpu_driver_is_refused(monkeypatch, capsys):
    monkeypatch.setattr("fitbench.processes.runtime.gpu_driver_present", lambda: False)
    assert cli.main(["determinism", "--device", "gpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["fitbench: error: --device gpu: no NVIDIA GPU driver on "
                                                            "this machine"]


@pytest.mark.processes
def test_a_missing_backend_beside_one_that_runs_gives_skipped_cells_and_the_switch_axis_runs(monkeypatch, tmp_path,
                                                                                             capsys):
    """Also the determinism axis: the same TensorFlow cell with the switch off and on, each its own process; the
    switch is in force in the second only, and Keras turned XLA off there (keras-team/keras#20315)."""
    monkeypatch.setattr("fitbench.stacks.backend_missing",
                        lambda b: None if b == "tensorflow" else f"the {b} backend needs the {b} package")
    out = tmp_path / "run.json"
    status = cli.main(["run", *SMALL, "--backend", "tensorflow,jax", "--api", "functional", "--batch-sizes", "2",
                       "--jit", "on", "--variant", "plain", "--no-seed-workload", "--no-floor", "--determinism",
                       "both", "--json", str(out)])
    assert status == 0
    records = {(r["backend"], r["determinism"]): r for r in load(out)["records"]}
    off, on = records["tensorflow", None], records["tensorflow", "op-determinism"]
    assert off["status"] == on["status"] == "ok"
    assert (off["determinism_in_force"], off["jit_effective"]) == (False, True)
    assert (on["determinism_in_force"], on["jit_effective"]) == (True, False)
    assert records["jax", None]["status"] == "skipped" and "needs the jax package" in records["jax", None]["reason"]
    assert records["jax", "deterministic-ops"]["status"] == "skipped"
    printed = capsys.readouterr().out
    assert "the determinism switch: samples/s on ÷ off" in printed and "on→off" in printed


@pytest.mark.parametrize("where, device, expected", [
    ("/job:localhost/replica:0/task:0/device:GPU:0", "gpu", True), ("cuda:0", "gpu", True),
    ("cpu:0", "gpu", False), ("/job:localhost/replica:0/task:0/device:CPU:0", "gpu", False),
    ("/job:localhost/replica:0/task:0/device:CPU:0", "cpu", True), ("cpu", "cpu", True), ("cuda:0", "cpu", False)])
def test_placement_check_reads_each_frameworks_device_string(where, device, expected):
    from fitbench.processes.runtime import on_device

    assert on_device(where, device) is expected


@pytest.mark.processes
def test_gpu_check_script_fails_every_gpu_step_where_there_is_no_gpu(tmp_path, without_tensorflow):
    """scripts/gpu-check.sh must not pass vacuously: with an `nvidia-smi` but no GPU behind it (a stand-in
    on PATH), each GPU step fails and the exit status counts them; what ran is still written."""
    from fitbench.processes.runtime import gpu_driver_present

    need("jax")
    if gpu_driver_present():
        pytest.skip("this machine has an NVIDIA driver: run scripts/gpu-check.sh itself")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'stand-in nvidia-smi: no GPU behind it'\n")
    (fake / "nvidia-smi").chmod(0o755)
    out = tmp_path / "gpu-results"
    env = {**os.environ, **without_tensorflow, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
           "BACKENDS": "jax", "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), str(out)], capture_output=True,
                            text=True, env=env, timeout=900)
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED: ")]
    # the placement check right after the fit cells (a DEADLINE cutting what follows leaves it its answer)
    assert [f.split(" (exit")[0] for f in failed] == [
        "FAILED: jax sees a GPU", "FAILED: every GPU cell ran on the GPU", "FAILED: determinism on the GPU, jax",
        "FAILED: cost of the determinism switch on the GPU, jax", "FAILED: coverage of the switch on the GPU, jax conv",
        "FAILED: coverage of the switch on the GPU, jax attention"]
    assert result.returncode == 6, result.stdout[-2000:] + result.stderr[-2000:]
    doc = load(out / "run-gpu-jax.json")
    assert doc["records"] and {r["status"] for r in doc["records"]} == {"skipped"}
    summary = (out / "summary.txt").read_text()
    assert "6 step(s) failed" in summary and "the devices cells need 2 or more" in summary


# Runs in a child. First a 40 MiB block, over the largest threshold glibc adapts to, so its free leaves the
# threshold where it was: with glibc's defaults it is mapped apart (mallinfo's hblks). Then the function under
# test (or nothing, the control), and a 16 MiB block: from the heap once the thresholds are fixed (and the heap
# keeps it after its free: the trim threshold), mapped apart again without them.
_HEAP = """
import ctypes, json, os, sys
sys.path.insert(0, sys.argv[1])
libc = ctypes.CDLL("libc.so.6")
size = ctypes.c_size_t if hasattr(libc, "mallinfo2") else ctypes.c_int  # mallinfo2 since glibc 2.33
class Info(ctypes.Structure):
    _fields_ = [(name, size) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                          "uordblks", "fordblks", "keepcost")]
info = libc.mallinfo2 if hasattr(libc, "mallinfo2") else libc.mallinfo
info.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def probe(mib):  # the blocks mapped apart that the allocation added, and the heap's size after its free
    already = info().hblks
    block = libc.malloc(mib << 20)
    added = info().hblks - already
    libc.free(block)
    return added, info().arena
before, _ = probe(40)
result = None
if sys.argv[2] == "benchmarks":
    os.environ["KERAS_BACKEND"] = "torch"
    from benchmarks import common
    result = common.keep_freed_memory()
elif sys.argv[2] == "fitbench":
    from fitbench.backends import torch
    result = torch.keep_freed_memory()
after, heap = probe(16)
print(json.dumps({"before": before, "after": after, "heap_after_free": heap, "result": result}))
"""


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):  # a C library without the name (musl)
        return False


@pytest.mark.parametrize("where", ["fitbench", "benchmarks", "control"])
def test_torch_processes_keep_freed_memory_instead_of_mapping_each_large_tensor_afresh(where):
    """glibc's defaults map a large block apart and unmap it when freed (each torch step paid the page faults,
    docs/noise.md); after keep_freed_memory the block comes from the heap and stays there once freed, in
    fitbench's backend and in the asv suite's copy of it; the control, with no call, still maps it apart."""
    if not _glibc():
        pytest.skip("glibc's mallopt: Linux with glibc only")
    proc = subprocess.run([sys.executable, "-c", _HEAP, str(ROOT), where], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["before"] == 1
    if where == "control":
        assert got["after"] == 1
        return
    assert got["after"] == 0 and got["heap_after_free"] >= 16 << 20
    assert got["result"] is (True if where == "fitbench" else None)
