"""Shared base for the asv suite: profiles, old-commit-safe imports, and per-process harness caching.

The benchmark classes in this folder only declare `params`, `param_names` and which fitbench function
they call; all model, timing and determinism logic lives in `src/fitbench`.

FITBENCH_PROFILE=quick|regular (default quick) sets asv's repeat/rounds and the batch sizes.
FITBENCH_PROCESSES=N sets StepTime's processes per commit (asv's `rounds`; `fitbench alert` and
`fitbench calibrate` set it). FITBENCH_THREADS=N|default (default 1) fixes the frameworks' thread pools in
every fit benchmark, FITBENCH_CPUS=1 or 0,1 pins its processes (default: no pinning); docs/noise.md says why.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import time
from typing import Any


def safe_import(name: str, *modules: str) -> Any:
    """Like scipy's safe_import, for one name: `name` from the first of `modules` that has it (the package's
    public surface, `fitbench`, first; then where older commits of fitbench kept it; "module:other" where it had
    another name there), else None. A benchmark whose function is None at a commit reports n/a (`require`)
    instead of breaking discovery of the whole suite."""
    for module in modules:
        module, _, attribute = module.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute or name)
        except (ImportError, AttributeError):
            continue
    return None


# The public surface (`fitbench`, since 2026-12-03) first, then where each name lived before: in the
# subpackages (2026-11-30), and in fitbench <= 0.1.0's flat layout (fitbench.timing, .raw, .peak, .determinism).
# New names go to fitbench's __all__; this list does not grow again.
APIS: tuple[str, ...] = safe_import("APIS", "fitbench") or ("sequential", "functional", "subclassed")
ModelSpec = safe_import("ModelSpec", "fitbench", "fitbench.model")
train_step_flops = safe_import("train_step_flops", "fitbench", "fitbench.model")
# The Keras 2 row of the matrix: TensorFlow's own switch, TF_USE_LEGACY_KERAS=1, beside KERAS_BACKEND=tensorflow
# (asv.conf.json's `include`). Its benchmarks train tf-keras; a commit of fitbench that cannot is n/a there,
# never Keras 3 reported under the Keras 2 row.
KERAS_MAJOR = 2 if os.environ.get("TF_USE_LEGACY_KERAS") == "1" else 3
STACK = "tf-keras" if KERAS_MAJOR == 2 else os.environ.get("KERAS_BACKEND", "tensorflow")  # fitbench's name


def for_keras_major(cls: Any) -> Any:
    """`cls` (a harness class) as this environment's Keras needs it: itself on Keras 3; on Keras 2 the
    class with keras_major=2 bound, or None (n/a) where this commit's class does not take keras_major."""
    if cls is None or KERAS_MAJOR == 3:
        return cls
    if "keras_major" not in inspect.signature(cls).parameters:
        return None
    return functools.partial(cls, keras_major=KERAS_MAJOR)


FitHarness = for_keras_major(safe_import("FitHarness", "fitbench", "fitbench.measure.harness", "fitbench.timing"))
SeedHarness = for_keras_major(safe_import("SeedHarness", "fitbench", "fitbench.measure.harness", "fitbench.timing"))
TUNED = safe_import("TUNED", "fitbench", "fitbench.measure.cells", "fitbench.timing")  # older: no tuned variant
RawHarness = safe_import("RawHarness", "fitbench", "fitbench.measure.raw", "fitbench.raw")
count_fit_traces = safe_import("count_fit_traces", "fitbench")  # since 2026-12-03: older commits are n/a
first_step_isolated = safe_import("first_step_isolated", "fitbench")  # likewise
measure_peak = safe_import("measure_peak", "fitbench", "fitbench.measure.peak", "fitbench.peak")
check_determinism = safe_import("check_determinism", "fitbench", "fitbench.determinism.check",
                                "fitbench.determinism")
DeterminismSettings = safe_import("DeterminismSettings", "fitbench", "fitbench.determinism.settings")
_switch_in_force = safe_import("switch_in_force", "fitbench", "fitbench.determinism.switch:in_force")
_default_switch = safe_import("default_switch", "fitbench", "fitbench.determinism.switch")
_switch_env = safe_import("switch_env", "fitbench", "fitbench.determinism.switch")
_turn_on = safe_import("turn_switch_on", "fitbench", "fitbench.determinism.switch:turn_on")
use_data_parallel = safe_import("use_data_parallel", "fitbench", "fitbench.measure.distributed")
device_env = safe_import("device_env", "fitbench", "fitbench.measure.distributed")
gpu_names = safe_import("gpu_names", "fitbench", "fitbench.runtime")
backend_missing = safe_import("backend_missing", "fitbench", "fitbench.runtime")
gpu_driver_present = safe_import("gpu_driver_present", "fitbench", "fitbench.runtime")
apply_threads = safe_import("apply_threads", "fitbench", "fitbench.runtime")
pin_cpus = safe_import("pin_cpus", "fitbench", "fitbench.runtime")
parse_cpus = safe_import("parse_cpus", "fitbench", "fitbench.runtime")
# The records' arithmetic (fitbench.measure.metrics); commits before it had the same formulas inline.
efficiency = safe_import("efficiency", "fitbench", "fitbench.measure.metrics") or (lambda raw_s, fit_s: raw_s / fit_s)
gflops_per_s = safe_import("gflops_per_s", "fitbench", "fitbench.measure.metrics") or (lambda flops, s: flops / s / 1e9)
pct_of_peak = safe_import("pct_of_peak", "fitbench", "fitbench.measure.metrics") or (lambda g, peak: 100.0 * g / peak)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter is not a benchmark result

PROFILE_NAME = os.environ.get("FITBENCH_PROFILE", "quick")
PROFILES: dict[str, dict[str, Any]] = {
    # repeat = samples per process, a fixed count so that the samples asv pools from several processes
    # can be cut back into processes (fitbench.regress.decide.split_processes); rounds = processes per
    # parameter combination; processes = StepTime's rounds (FITBENCH_PROCESSES overrides)
    "quick": {"repeat": 5, "rounds": 1, "processes": 2, "batch_sizes": [32, 256]},
    "regular": {"repeat": 10, "rounds": 2, "processes": 6, "batch_sizes": [1, 32, 256, 2048]},
}
if PROFILE_NAME not in PROFILES:
    raise ValueError(f"FITBENCH_PROFILE must be one of {', '.join(PROFILES)}, got {PROFILE_NAME!r}")
PROFILE = PROFILES[PROFILE_NAME]


def _devices() -> list[str]:
    """The fit loop's device axis. FITBENCH_DEVICES=cpu,gpu fixes it; by default `gpu` is on it only where an
    NVIDIA driver is: elsewhere every gpu cell is n/a, and asv still starts a process for each (half of the
    fit loop's processes on a CPU machine)."""
    chosen = [d.strip() for d in os.environ.get("FITBENCH_DEVICES", "").split(",") if d.strip()]
    if chosen:
        unknown = [d for d in chosen if d not in ("cpu", "gpu")]
        if unknown:
            raise ValueError(f"FITBENCH_DEVICES takes cpu and/or gpu, got {', '.join(unknown)}")
        return chosen
    if gpu_driver_present is None or gpu_driver_present():  # an older fitbench cannot tell: keep both
        return ["cpu", "gpu"]
    return ["cpu"]


DEVICES = _devices()


def _positive_env(name: str, default: int, also: tuple[str, ...] = ()) -> int | str:
    """A positive integer from the environment (or one of `also`), else ValueError naming the variable."""
    text = os.environ.get(name) or str(default)
    if text in also:
        return text
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a positive integer{' or ' + ', '.join(also) if also else ''}, "
                         f"got {text!r}")
    return int(text)


PROCESSES = _positive_env("FITBENCH_PROCESSES", PROFILE["processes"])
THREADS_SETTING = _positive_env("FITBENCH_THREADS", 1, also=("default",))
THREADS = None if THREADS_SETTING == "default" else THREADS_SETTING
CPUS_SETTING = os.environ.get("FITBENCH_CPUS", "")
FIT_STEPS = 10  # steps per timed fit() call (the `10` in time_fit_10_steps): the same in every profile
WARMUP_STEPS = 3  # the first is trace + compile; none of them is timed
SEED = 0

_HARNESSES: dict[tuple[Any, ...], Any] = {}  # asv runs every parameter combination in its own process


def require(*names_values: Any) -> None:
    """n/a (NotImplementedError) when this commit of fitbench lacks what the benchmark calls."""
    if any(v is None for v in names_values):
        raise NotImplementedError("this commit of fitbench does not have what this benchmark needs")


BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")  # the env_nobuild matrix axis of asv.conf.json


def require_backend() -> None:
    """n/a when the matrix's KERAS_BACKEND has no framework installed in this environment."""
    why = backend_missing(BACKEND) if backend_missing is not None else None
    if not why and KERAS_MAJOR == 2 and importlib.util.find_spec("tf_keras") is None:
        why = "the Keras 2 row needs tf-keras, which is not installed in this environment"
    if why:
        raise NotImplementedError(why)


def fix_process() -> None:
    """The thread pools and CPU affinity of a fit benchmark's process, before its framework is imported
    (asv starts a fresh process for every parameter combination). A commit of fitbench that cannot set
    them runs with the frameworks' defaults."""
    if apply_threads is not None:
        pin_cpus(parse_cpus(CPUS_SETTING))
        apply_threads(BACKEND, THREADS)
    keep_freed_memory()  # before flush_subnormals imports torch
    flush_subnormals()


def flush_subnormals() -> None:
    """PyTorch's CPU kernels compute subnormal floats at full cost, where XLA (the TensorFlow and JAX steps)
    flushes them to zero. Trained on one batch, the seed network's gradients turn subnormal within a few
    dozen steps, and on CPUs that pay microcode assists for them a torch step then grows ten-fold within one
    process (docs/noise.md): the cell would time the CPU's assists, drifting window by window, not the fit
    loop. Written here rather than imported, so that every commit's processes do the same."""
    if BACKEND == "torch" and importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_flush_denormal(True)


def keep_freed_memory() -> None:
    """PyTorch's CPU tensors come from glibc's malloc, which with its defaults maps each step's large tensors
    afresh and hands them back when freed: the kernel's page faults (slow on a VM) were a large part of a
    torch step (docs/noise.md). glibc keeps freed memory instead (as fitbench.backends.torch.keep_freed_memory
    does); TensorFlow and XLA allocate through their own allocators. Written here rather than imported, so
    that every commit's processes do the same."""
    if BACKEND != "torch":
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(-3, 1 << 30) or mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (mallopt(3) documents 32 MiB at most)
    mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def select_device(device: str) -> None:
    """CPU cells hide the GPU before the framework is imported; GPU cells need one (else n/a)."""
    require_backend()
    fix_process()
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    elif not (gpu_names(BACKEND) if backend_missing is not None else gpu_names()):
        raise NotImplementedError("no GPU visible on this machine")


_WINDOW = {"steps": 1}


def per_step_clock() -> float:
    """asv's `timer` for StepTime: the wall clock in units of the window's training steps, so the sample
    asv takes of one window (one `fit` call of `steps` steps) is seconds per training step."""
    return time.perf_counter() / _WINDOW["steps"]


def set_window(steps: int) -> None:
    _WINDOW["steps"] = steps


def cached(key: tuple[Any, ...], make: Any) -> Any:
    """Build (and warm up) once per process: asv may re-run setup before every timed call."""
    if key not in _HARNESSES:
        _HARNESSES[key] = make()
    return _HARNESSES[key]


def determinism_document(apis: list[str], epochs: int, seed: int) -> dict[str, Any]:
    """fitbench determinism's document for `apis` on this environment's backend, whichever signature this
    commit's check_determinism has (settings object now; keywords, and no backend keyword before jax/torch)."""
    require(check_determinism, ModelSpec)
    return _as_dict(_determinism(apis, epochs, seed))


def _as_dict(doc: Any) -> dict[str, Any]:
    """The document as a dict: a typed DeterminismDocument since 2026-11-30, a dict before."""
    return doc.to_dict() if hasattr(doc, "to_dict") else doc


def _determinism(apis: list[str], epochs: int, seed: int) -> Any:
    if KERAS_MAJOR == 2:  # tf-keras: only a commit whose settings know keras_major can train it
        fields = getattr(DeterminismSettings, "__dataclass_fields__", {})
        require(DeterminismSettings if "keras_major" in fields else None)
        return check_determinism(DeterminismSettings(apis=tuple(apis), epochs=epochs, seed=seed, backend=BACKEND,
                                                     keras_major=2))
    if DeterminismSettings is not None:
        return check_determinism(DeterminismSettings(apis=tuple(apis), epochs=epochs, seed=seed, backend=BACKEND))
    backend = {} if BACKEND == "tensorflow" else {"backend": BACKEND}
    return check_determinism(apis, ModelSpec(), epochs=epochs, seed=seed, **backend)


def _determinism_switch_on(stack: str) -> None:
    """The stack's default determinism switch on in this benchmark's process: its environment first (JAX reads
    XLA_FLAGS when it starts, which is after this in setup), then the call."""
    name = _default_switch(stack)
    for key, value in _switch_env(stack, name).items():  # appended to the user's XLA_FLAGS, not replacing them
        os.environ[key] = f"{os.environ.get(key, '')} {value}".strip() if key == "XLA_FLAGS" else value
    _turn_on(stack, name)


# None (n/a) at a commit without fitbench.determinism.switch
determinism_switch_on = _determinism_switch_on if _turn_on is not None else None
determinism_in_force = (lambda stack: _switch_in_force(stack, None)) if _switch_in_force is not None else None


def step_window(batch_size: int) -> int:
    """StepTime's training steps per timed window: 2048 samples, at least 10 steps. The same formula as
    fitbench.measure.harness.window_steps, written here rather than imported so that every commit an alert
    compares is timed with the same windows (an old commit's window_steps may differ)."""
    return min(256, max(10, 2048 // max(1, batch_size)))


def process_layout(name: str, repeat: int) -> str:
    """The asv `version` of a process-level benchmark: asv stores it with every result, so the alert cuts
    stored samples into processes by what that run did (`samples-per-process=N`, the format
    fitbench.regress.asvdata.LAYOUT reads), not by today's profile. Written out here, not imported: this
    file must import at old fitbench commits too."""
    return f"{name}; samples-per-process={repeat}"


class Benchmark:
    """asv attributes common to the suite; subclasses declare params and call fitbench."""

    timeout = 600
    number = 1  # one call per sample: each call is already many steps, and setup must run between calls
    warmup_time = 0.0  # warm-up is done explicitly in setup (compile + WARMUP_STEPS)
    repeat = PROFILE["repeat"]
    rounds = PROFILE["rounds"]
