"""Micro-benchmarks (pytest-benchmark) of the fitbench functions the asv suite times.

Plain `pytest` runs each benchmark once, untimed, as a smoke test (`--benchmark-disable` is in
pyproject's addopts); `pytest benchmarks/micro --benchmark-enable --benchmark-only` times them.
See docs/micro-benchmarks.md. No assertion here is about time: they check what each call returned.

Every model is built, compiled and warmed up in a session-scoped fixture, never in a timed call.
The fixtures live in this module, not in a conftest.py: tests/test_cli.py does `from conftest import`,
and a second top-level `conftest` module would shadow tests/conftest.py in sys.modules; and the
folder has no __init__.py, so asv (which imports every module of the `benchmarks` package) skips it.
Keras runs in this process on the CPU (set CUDA_VISIBLE_DEVICES yourself for a GPU). TF op
determinism is never switched on here: it is process-global and one-way and would turn jit off.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Callable

import numpy as np
import pytest

import fitbench
from fitbench import APIS
from fitbench.determinism.compare import sha256_arrays
from fitbench.measure.harness import FitHarness
from fitbench.models.seed import (
    ModelSpec,
    build_model,
    compile_model,
    jit_effective,
    param_count,
    train_step_flops,
    trainable_param_count,
)
from fitbench.models.seed_data import seed_input

SEED_SPEC = ModelSpec()  # the seed network: every benchmark here times it at full size
SEED_PARAMS = 1_231_816
STEP_BATCH_SIZES = (32, 256)
PREDICT_HARNESS_BATCH = 32  # predict and hashing reuse the batch-32 step harnesses' models
WARMUP_FIT_STEPS = 3  # FitHarness.warm_up, as in the asv suite: the first step traces and compiles
WARMUP_CALLS = 3  # then each timed entry point (train_on_batch, predict) is traced and compiled on its own
SHA256_HEX = re.compile(r"[0-9a-f]{64}")

jit_axis = pytest.mark.parametrize("jit", [False, True], ids=["jit_off", "jit_on"])
api_axis = pytest.mark.parametrize("api", APIS)


# ---------- fixtures: build, compile and warm up, outside every timed call ----------

@pytest.fixture(scope="session")
def keras_cpu() -> Any:
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


@pytest.fixture(scope="session")
def warm_step(keras_cpu: Any) -> Callable[[str, bool, int], tuple[FitHarness, tuple[Any, Any]]]:
    """warm_step(api, jit, batch_size) -> (FitHarness on the seed network, its (x, y) batch as tensors).

    `fit` and `train_on_batch` trace separate functions (fit's takes a tf.data iterator, the direct
    call takes tensors), so warming up `fit` alone leaves a 0.1-0.8 s trace + XLA compile in the first
    `train_on_batch`: both are warmed up here. The batch is the harness's own (the one seeded batch
    `fit` repeats), made a backend tensor once, so no host-to-tensor copy is timed either.
    """
    ops = keras_cpu.ops
    cache: dict[tuple[str, bool, int], tuple[FitHarness, tuple[Any, Any]]] = {}

    def get(api: str, jit: bool, batch_size: int) -> tuple[FitHarness, tuple[Any, Any]]:
        key = (api, jit, batch_size)
        if key not in cache:
            harness = FitHarness(api, jit, batch_size, SEED_SPEC, seed=0)
            harness.warm_up(WARMUP_FIT_STEPS)
            x, y = (ops.convert_to_tensor(t) for t in harness.batch)
            for _ in range(WARMUP_CALLS):
                harness.model.train_on_batch(x, y)
            cache[key] = harness, (x, y)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def warm_predict(warm_step: Callable[..., tuple[FitHarness, Any]]) -> Callable[[str, bool], tuple[Any, np.ndarray]]:
    """warm_predict(api, jit) -> (a seed-network model whose predict functions are compiled, the seed input)."""
    x = seed_input(0, SEED_SPEC.input_dim)  # the seed's 1x4096 input, which determinism.py predicts on
    warmed: set[tuple[str, bool]] = set()

    def get(api: str, jit: bool) -> tuple[Any, np.ndarray]:
        model = warm_step(api, jit, PREDICT_HARNESS_BATCH)[0].model
        if (api, jit) not in warmed:
            for _ in range(WARMUP_CALLS):
                model.predict(x, verbose=0)
                model.predict_on_batch(x)
            warmed.add((api, jit))
        return model, x

    return get


def record(benchmark: Any, **info: Any) -> float | None:
    """Add `info` to the saved extra_info; return the median seconds per call, or None under
    --benchmark-disable (the call ran once, untimed, and there are no stats)."""
    import keras

    # which checkout and which Keras backend were timed
    benchmark.extra_info.update(info, fitbench=fitbench.__file__, keras_backend=keras.backend.backend())
    return benchmark.stats.stats.median if benchmark.stats is not None else None


# ---------- one training step: api x jit x batch size ----------

@jit_axis
@api_axis
@pytest.mark.parametrize("batch_size", [
    pytest.param(b, id=f"b{b}", marks=pytest.mark.benchmark(group=f"train step, batch {b}")) for b in STEP_BATCH_SIZES])
def test_train_step(benchmark, warm_step, batch_size, api, jit):
    harness, (x, y) = warm_step(api, jit, batch_size)
    # `model.train_on_batch`, not `harness.fit_steps(1)`: both run the model's compiled train step, but
    # every `fit` call also sets up a data adapter, an iterator and the callbacks. Measured on this
    # 2-core machine at batch 32, that costs ~2.5 ms (jit off) and ~18 ms (jit on) per call next to a
    # 3-5 ms step, so `fit_steps(1)` would mostly time fit's setup. The per-step times FitHarness takes
    # inside `fit` (what the asv suite tracks) are the in-loop view of this same step.
    logs = benchmark(harness.model.train_on_batch, x, y, return_dict=True)

    assert math.isfinite(logs["loss"]) and logs["loss"] > 0
    assert harness.jit_effective is jit  # False here would mean XLA was silently turned off
    flops = train_step_flops(harness.spec, batch_size)
    median = record(benchmark, api=api, jit_requested=jit, jit_effective=harness.jit_effective, batch_size=batch_size,
                    params=param_count(harness.spec), flops_per_step=flops, warmup_first_step_s=harness.first_step_s)
    if median is not None:
        benchmark.extra_info.update(gflops_per_s=flops / median / 1e9, samples_per_s=batch_size / median)


# ---------- inference on the seed input ----------

@pytest.mark.benchmark(group="predict, seed input 1x4096")
@pytest.mark.parametrize("method", ["predict", "predict_on_batch"])
@jit_axis
@api_axis
def test_predict(benchmark, warm_predict, api, jit, method):
    # determinism.py snapshots with `model.predict(x, verbose=0)`; `predict_on_batch` runs the same
    # compiled function without predict's per-call setup, so the pair shows what that setup costs.
    model, x = warm_predict(api, jit)
    kwargs = {"verbose": 0} if method == "predict" else {}
    out = np.asarray(benchmark(getattr(model, method), x, **kwargs))

    assert out.shape == (1, SEED_SPEC.output_dim)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))  # sigmoid output
    record(benchmark, api=api, jit_effective=jit_effective(model), params=SEED_PARAMS)


# ---------- the determinism checker's hashing ----------

def check_sha256_and_record(benchmark: Any, digest: str, arrays: list[np.ndarray]) -> None:
    assert SHA256_HEX.fullmatch(digest)
    assert sha256_arrays([np.array(a, copy=True) for a in arrays]) == digest  # hashes content, not identity
    nbytes = sum(a.nbytes for a in arrays)
    median = record(benchmark, bytes_hashed=nbytes)
    if median is not None:
        benchmark.extra_info["mb_per_s"] = nbytes / median / 1e6


@pytest.mark.benchmark(group="determinism hashing")
def test_hash_weights(benchmark, warm_step):
    model = warm_step("functional", False, PREDICT_HARNESS_BATCH)[0].model
    # What determinism.py does every epoch: get_weights() (tensors -> numpy) and SHA-256 of the bytes.
    digest = benchmark(lambda: sha256_arrays(model.get_weights()))

    weights = model.get_weights()
    assert sum(w.size for w in weights) == SEED_PARAMS
    check_sha256_and_record(benchmark, digest, weights)


@pytest.mark.benchmark(group="determinism hashing")
def test_hash_predictions(benchmark, warm_predict):
    model, x = warm_predict("functional", False)
    predictions = [np.asarray(model.predict(x, verbose=0), np.float32)]
    digest = benchmark(sha256_arrays, predictions)

    check_sha256_and_record(benchmark, digest, predictions)


# ---------- model build + compile ----------

@pytest.mark.benchmark(group="build + compile")
@api_axis
def test_build_and_compile(benchmark, keras_cpu, api):
    # Keras compiles lazily: this is layer construction, weight initialisation and compile's bookkeeping.
    # Tracing and XLA compilation happen at the first step; the step benchmarks keep that out of their
    # timed calls and report it as extra_info["warmup_first_step_s"].
    model = benchmark(lambda: compile_model(build_model(api, SEED_SPEC, seed=0), False, SEED_SPEC))

    assert model.compiled and model.optimizer is not None
    assert trainable_param_count(model) == SEED_PARAMS
    record(benchmark, api=api, params=SEED_PARAMS)
