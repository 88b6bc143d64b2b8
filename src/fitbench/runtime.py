"""Process-level facts and settings for a framework process: device visibility, threads, versions, RSS.

Everything here runs inside the child process of a cell, before or after Keras is imported.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import sys
from typing import Any


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


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees (empty when none)."""
    if not gpu_driver_present():
        return []
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(str(details.get("device_name", gpu.name)))
    return names


def device_name(device: str) -> str:
    if device == "gpu":
        names = gpu_names()
        return names[0] if names else ""
    return f"{cpu_name()} ({os.cpu_count()} logical cores)"


def set_threads(intra_op: int | None, inter_op: int | None) -> dict[str, int]:
    """Fix TF's thread pools (must run before the first op) and return what is in force."""
    import tensorflow as tf

    if intra_op is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    return thread_settings()


def thread_settings() -> dict[str, int]:
    """TF's thread pools as configured (0 means TF's own default: all cores)."""
    import tensorflow as tf

    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def library_versions() -> dict[str, str]:
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
    }


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def process_facts(device: str) -> dict[str, Any]:
    return {
        "backend": keras_backend(),
        "versions": library_versions(),
        "device_name": device_name(device),
    }
