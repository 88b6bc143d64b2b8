"""The peak probe: how many float32 GFLOP/s one large matrix product reaches on a device.

`fitbench run` measures it once per device and backend, in its own fresh process (like a cell), and
passes the number into every cell, which records `pct_of_peak = gflops_per_s / peak_gflops_per_s`.
The product is n x n by n x n float32 (2·n³ FLOPs), timed to its result being ready, best of `repeats`
after one untimed warm-up: the best run is the closest to what the hardware can do.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fitbench import backends

DEFAULT_N = {"cpu": 2048, "gpu": 8192}
DEFAULT_REPEATS = 5


def matmul_flops(n: int) -> int:
    """FLOPs of an n x n by n x n matrix product: n² dot products of n multiply-adds."""
    return 2 * n ** 3


def _matmul(backend: str, n: int, device: str) -> Any:
    """A function that runs one product of two fixed seeded matrices on the device and waits for it."""
    if backend not in backends.KERAS3:
        raise ValueError(f"no peak probe for backend {backend!r}")
    rng = np.random.default_rng(0)
    a_host = rng.random((n, n), dtype=np.float32)
    b_host = rng.random((n, n), dtype=np.float32)
    return backends.get(backend).matmul(a_host, b_host, device)


def measure_peak(backend: str = "tensorflow", device: str = "cpu", n: int | None = None,
                 repeats: int = DEFAULT_REPEATS) -> dict[str, Any] | None:
    """GFLOP/s of the best of `repeats` n x n float32 products on `device` with `backend` (JSON-able);
    None when `device` is "gpu" and the backend sees none (the probe must not silently run on the CPU)."""
    from fitbench.processes import runtime

    if device == "gpu" and not runtime.gpu_names(backend):
        return None
    n = n or DEFAULT_N[device]
    run = _matmul(backend, n, device)
    run()  # warm-up: allocation, kernel selection, (jax) compilation
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    best = min(times)
    return {
        "backend": backend,
        "device": device,
        "device_name": runtime.device_name(device, backend),
        "n": n,
        "dtype": "float32",
        "flops": matmul_flops(n),
        "times_s": times,
        "best_s": best,
        "gflops_per_s": matmul_flops(n) / best / 1e9,
    }
