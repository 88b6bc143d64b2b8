"""What the backends share: the thread environment (one setting for every framework and the BLAS and XLA
libraries under it), the raw step's Adam constants and activations, and the helpers of a layer's step alone.
No framework is imported here but inside the functions."""

from __future__ import annotations

import os
from typing import Any, Mapping

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras 3's Adam defaults (and the seed's Adam(0.01))


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment that fixes the CPU thread pools to `threads` before the framework is imported (None: the
    frameworks' defaults, which on this kind of machine is every core).

    Why: with the default pools, a small training step (batch 32, a few ms) is split across both cores of a
    2-core machine, and how the pools' threads land on the cores differs from process to process — the
    between-process spread that made `fitbench alert` flag no-op commits (docs/noise.md). One thread per
    process removes the hand-off. TensorFlow reads TF_NUM_INTRAOP_THREADS/TF_NUM_INTEROP_THREADS when its
    runtime starts; PyTorch and the BLAS libraries read OMP_NUM_THREADS/MKL_NUM_THREADS at import; XLA's CPU
    client (JAX, and TensorFlow's jit_compile) reads XLA_FLAGS."""
    if threads is None:
        return {}
    n = str(int(threads))
    env = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
           "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1"}
    if threads == 1:  # XLA's CPU runtime has no thread-count flag that TF's and JAX's XLA both accept
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def merge_env(base: Mapping[str, str], *parts: Mapping[str, str]) -> dict[str, str]:
    """`base` updated by each part in turn, except XLA_FLAGS, whose flags are appended (the thread setting
    and the determinism switch both live there, beside whatever the user put there)."""
    env = dict(base)
    for part in parts:
        for key, value in part.items():
            if key == "XLA_FLAGS":
                current = env.get(key, "")
                env[key] = current if value in current else f"{current} {value}".strip()
            else:
                env[key] = value
    return env


def set_thread_env(threads: int | None) -> None:
    """In this process, before the framework is imported: the thread environment in place."""
    os.environ.update(merge_env(os.environ, thread_env(threads)))


# glibc's mallopt parameters (malloc.h): above the mmap threshold a block is mapped afresh and unmapped when
# freed; above the trim threshold the heap's free top is handed back to the kernel
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_HEAP_BYTES = 1 << 30
GLIBC_MAX_MMAP_THRESHOLD = 32 << 20  # mallopt(3)'s upper limit on 64-bit systems: a glibc that holds to it refuses more


def keep_freed_heap() -> bool:
    """In this process: glibc's malloc keeps what is freed (up to KEPT_HEAP_BYTES) for the next allocation,
    rather than handing blocks over its thresholds back to the kernel. Why: a framework that allocates each
    step's tensors with malloc (PyTorch on a CPU) otherwise maps them afresh every step, and the kernel's
    page faults and zeroing (slow on a VM) are then a large part of the timed step (docs/noise.md). Fixed
    thresholds also end glibc's adaptive ones, which move with what the process freed before. True when glibc
    took both settings (an allocator put in its place with LD_PRELOAD ignores them); False where there is no
    glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")  # not ctypes.util.find_library: it starts ldconfig in every process
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mapped = mallopt(M_MMAP_THRESHOLD, KEPT_HEAP_BYTES) or mallopt(M_MMAP_THRESHOLD, GLIBC_MAX_MMAP_THRESHOLD)
    return bool(mapped and mallopt(M_TRIM_THRESHOLD, KEPT_HEAP_BYTES))


def activation(name: str, module: Any) -> Any:
    """The raw step's activation from a framework's math module."""
    if name == "sigmoid":
        return module.sigmoid
    if name == "relu":
        return module.relu if hasattr(module, "relu") else (lambda h: module.maximum(h, 0))
    if name == "linear":
        return lambda h: h
    raise ValueError(f"the raw step knows sigmoid, relu and linear activations, not {name!r}")


def is_float(t: Any) -> bool:
    import keras

    return hasattr(t, "dtype") and "float" in str(keras.backend.standardize_dtype(t.dtype))


def projection(outputs: list[Any], seed: int) -> list[Any]:
    """Seeded weights that turn a layer's outputs into one number to differentiate (coverage)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(o.shape)).astype("float32") for o in outputs]


class TrainStepTraces:
    """Counts the Python executions of `model.train_step` from now on: where Keras runs the step as a traced
    function (tf.function, jax.jit), each execution is a trace of it, and nothing runs it otherwise.

    Installed on the model before its first `fit` (Keras captures `train_step` when it builds the train
    function); the wrapper runs at trace time only, so the compiled step is unchanged. `stop()` puts the
    model's own method back."""

    def __init__(self, model: Any) -> None:
        self._model, self.count = model, 0
        self._had_own = "train_step" in vars(model)
        original = model.train_step

        def train_step(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        model.train_step = train_step

    def stop(self) -> int:
        if not self._had_own:
            del self._model.train_step
        return self.count


class NotTraced:
    """A step Keras runs op by op (eager): nothing is traced, the count stays 0."""

    count = 0

    def stop(self) -> int:
        return 0
