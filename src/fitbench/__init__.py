"""fitbench: how fast is a Keras fit loop, and is its training deterministic.

The names in `__all__` are the package's public surface: what the asv suite (benchmarks/common.py) and a
user's own code import, `from fitbench import FitHarness`. They load lazily (PEP 562), so `import fitbench`
imports no framework and next to none of the package; where each lives inside may change, these names do not.
"""

from __future__ import annotations

import importlib
from typing import Any

from fitbench.backends import KERAS3

__version__ = "0.1.0"

APIS = ("sequential", "functional", "subclassed")
BACKENDS = KERAS3  # the Keras 3 backends, one home each (fitbench.backends)
DEVICES = ("cpu", "gpu")

_PUBLIC = {  # name -> (module, attribute)
    "ModelSpec": ("fitbench.models.seed", "ModelSpec"),
    "train_step_flops": ("fitbench.models.seed", "train_step_flops"),
    "FitHarness": ("fitbench.measure.harness", "FitHarness"),
    "SeedHarness": ("fitbench.measure.harness", "SeedHarness"),
    "TUNED": ("fitbench.measure.cells", "TUNED"),
    "RawHarness": ("fitbench.measure.raw", "RawHarness"),
    "count_fit_traces": ("fitbench.measure.traces", "count_fit_traces"),
    "first_step_isolated": ("fitbench.measure.compile_cache", "first_step_isolated"),
    "step_configurations": ("fitbench.measure.breakdown", "step_configurations"),
    "measure_peak": ("fitbench.measure.peak", "measure_peak"),
    "efficiency": ("fitbench.measure.metrics", "efficiency"),
    "gflops_per_s": ("fitbench.measure.metrics", "gflops_per_s"),
    "pct_of_peak": ("fitbench.measure.metrics", "pct_of_peak"),
    "check_determinism": ("fitbench.determinism.check", "check_determinism"),
    "DeterminismSettings": ("fitbench.determinism.settings", "DeterminismSettings"),
    "default_switch": ("fitbench.determinism.switch", "default_switch"),
    "switch_env": ("fitbench.determinism.switch", "switch_env"),
    "turn_switch_on": ("fitbench.determinism.switch", "turn_on"),
    "switch_in_force": ("fitbench.determinism.switch", "in_force"),
    "use_data_parallel": ("fitbench.measure.distributed", "use_data_parallel"),
    "device_env": ("fitbench.measure.distributed", "device_env"),
    "backend_missing": ("fitbench.stacks", "backend_missing"),
    "gpu_names": ("fitbench.processes.runtime", "gpu_names"),
    "gpu_driver_present": ("fitbench.processes.runtime", "gpu_driver_present"),
    "apply_threads": ("fitbench.processes.runtime", "apply_threads"),
    "pin_cpus": ("fitbench.processes.runtime", "pin_cpus"),
    "parse_cpus": ("fitbench.processes.runtime", "parse_cpus"),
}
__all__ = ["APIS", "BACKENDS", "DEVICES", "__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'fitbench' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
