"""Process-level facts and settings: device visibility, threads, CPU pinning, versions, RSS.

Most of it runs in a framework child (before or after Keras is imported); the parent uses the
framework-free parts (`parse_cpus`, `pin_cpus`, `backend_missing`, `gpu_driver_present`), which import no
framework.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import sys
from typing import Any

from fitbench import backends
from fitbench.determinism.switch import default_switch, switch_env
from fitbench.stacks import framework_module, keras_module


def hide_gpus_env(device: str) -> dict[str, str]:
    """Environment for a child process: a 'cpu' cell must not see a GPU, even on a GPU machine."""
    return {"CUDA_VISIBLE_DEVICES": "-1"} if device == "cpu" else {}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_driver_present() -> bool:
    """A cheap look for an NVIDIA driver, before paying for a framework import to ask for GPUs."""
    return os.path.exists("/proc/driver/nvidia/gpus") or shutil.which("nvidia-smi") is not None


def gpu_names(backend: str = "tensorflow") -> list[str]:
    """Names of the GPUs the backend's framework sees (empty when none, or the framework is missing)."""
    if not gpu_driver_present():
        return []
    return backends.get(backend).gpu_names()


def device_name(device: str, backend: str = "tensorflow") -> str:
    if device == "gpu":
        names = gpu_names(backend)
        return names[0] if names else ""
    return f"{cpu_name()} ({os.cpu_count()} logical cores)"


def variable_device(model: Any) -> str:
    """Where the framework says the model's first trainable variable lives (TF: '/job:…/device:GPU:0',
    JAX: 'cuda:0', PyTorch: 'cuda:0'; the CPU spells 'CPU:0', 'cpu:0', 'cpu')."""
    variable = model.trainable_variables[0]
    value = variable.value
    if callable(value):  # tf-keras: a tf.Variable, whose `value` is a method and which has its own device
        return str(getattr(variable, "device", "") or "")
    devices = getattr(value, "devices", None)
    if callable(devices) and len(devices()) > 1:  # a JAX array laid out on a mesh (keras.distribution)
        return ",".join(sorted(str(d) for d in devices()))
    return str(getattr(value, "device", "") or "")


def on_device(where: str, device: str) -> bool:
    """Does a framework device string `where` name the kind of device the cell asked for?"""
    where = where.lower()
    if device == "gpu":
        return "gpu" in where or "cuda" in where
    return "cpu" in where


def thread_env(backend: str, threads: int | None) -> dict[str, str]:
    """Environment that fixes the framework's CPU thread pools to `threads` before it is imported (None: the
    framework's defaults); why one thread: fitbench.backends.common.thread_env."""
    return backends.get(backend).thread_env(threads)


def determinism_env(backend: str, op_determinism: bool | str | None) -> dict[str, str]:
    """Environment a child with the backend's determinism switch on needs before its framework is imported
    (True: the backend's default switch; a name: that switch of fitbench.determinism.switch). TensorFlow's
    switch is a call in the child, enable_op_determinism, not a variable."""
    if not op_determinism:
        return {}
    return switch_env(backend, op_determinism if isinstance(op_determinism, str) else default_switch(backend))


def apply_threads(backend: str, threads: int | None) -> dict[str, Any]:
    """In this process, before the framework is imported: the thread pools fixed (the one place that sets
    them, fitbench.backends); returns what is recorded with a result: the setting asked for."""
    if threads is None:
        return {"threads": None}
    backends.get(backend).apply_threads(int(threads))
    return {"threads": int(threads)}


def parse_cpus(text: str | None) -> set[int] | None:
    """'1' or '0,1' or '2-3' -> a set of CPU numbers; None or '' -> None (no pinning)."""
    if not text:
        return None
    cpus: set[int] = set()
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"a CPU list looks like 1 or 0,1 or 2-3, got {text!r}") from None
    return cpus


def pin_cpus(cpus: set[int] | None) -> list[int] | None:
    """Pin this process (and the threads it starts later) to `cpus`; return the affinity in force."""
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def thread_settings(backend: str = "tensorflow") -> dict[str, int]:
    """The framework's thread pools as configured (TF: 0 means TF's own default, all cores; JAX: none)."""
    return backends.get(backend).thread_settings()


def library_versions(backend: str = "tensorflow", keras_major: int = 3) -> dict[str, str]:
    """Versions of python, keras, numpy and the backend's framework (tensorflow too when it is loaded);
    in a tf-keras (Keras 2) process, `keras` is tf-keras' version and `tf_keras` says so."""
    import importlib

    import numpy as np

    keras = keras_module(keras_major)
    versions = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    if keras_major == 2:
        versions["tf_keras"] = keras.__version__
    names = [framework_module(backend)] + (["tensorflow"] if sys.modules.get("tensorflow") is not None else [])
    for name in dict.fromkeys(names):
        versions[name] = str(importlib.import_module(name).__version__)
    return versions


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def process_facts(device: str, backend: str | None = None, keras_major: int = 3) -> dict[str, Any]:
    backend = backend or keras_backend()
    return {
        "backend": backend if keras_major == 2 else keras_backend(),
        "versions": library_versions(backend, keras_major),
        "device_name": device_name(device, backend),
    }


def load_1min() -> float | None:
    """The 1-minute load average (None where the platform has none), read beside a compile time."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
