"""Fit-loop timing: per-step samples from inside `model.fit`, warm-up and compile kept apart.

`FitHarness` and `SeedHarness` are what the CLI's cells, the asv suite and the micro-benchmarks all call.
`measure_cell` turns one cell into one record; it runs inside a fresh process (see fitbench.isolation).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from fitbench import APIS, BACKENDS, DEVICES
from fitbench.data import seed_input, seed_target, synthetic_batch
from fitbench.errors import UsageError
from fitbench.model import ModelSpec, build_model, compile_model, jit_effective, param_count, train_step_flops
from fitbench.profiles import Profile

FIT = "fit"  # cell kind: training steps on a synthetic batch
SEED_EPOCH = "seed_epoch"  # cell kind: the seed's workload, 1 sample + validation, timed per epoch


@dataclass(frozen=True)
class Cell:
    """One measurement: what `fitbench run` times in one fresh process."""

    kind: str
    api: str
    jit: bool
    device: str
    batch_size: int
    backend: str = "tensorflow"

    def label(self) -> str:
        what = f"batch {self.batch_size}" if self.kind == FIT else "seed epoch"
        return f"{self.api} jit={'on' if self.jit else 'off'} {self.device} {what}"


def plan_cells(apis: list[str], jits: list[bool], devices: list[str], batch_sizes: list[int],
               backend: str = "tensorflow", include_seed: bool = True) -> list[Cell]:
    """Every (api, jit, device, batch) fit cell, then the seed-workload cells; validates the choices."""
    for api in apis:
        if api not in APIS:
            raise UsageError(f"unknown api {api!r}; choose from {', '.join(APIS)}")
    for device in devices:
        if device not in DEVICES:
            raise UsageError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    for b in batch_sizes:
        if b <= 0:
            raise UsageError(f"batch size must be a positive integer, got {b}")
    cells = [Cell(FIT, api, jit, device, b, backend)
             for device in devices for b in batch_sizes for api in apis for jit in jits]
    if include_seed:
        cells += [Cell(SEED_EPOCH, api, jit, device, 1, backend) for device in devices for api in apis for jit in jits]
    return cells


def summarize(times: list[float]) -> dict[str, float]:
    """Robust summary of per-step samples (median and IQR: step times have a long right tail)."""
    ordered = sorted(times)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {
        "median_s": statistics.median(ordered),
        "mean_s": statistics.fmean(ordered),
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "p25_s": q[0],
        "p75_s": q[2],
        "iqr_s": q[2] - q[0],
        "stdev_s": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
    }


def _timer_callback(begin_hook: str, end_hook: str) -> Any:
    import keras

    class _Timer(keras.callbacks.Callback):
        # Not async-safe on purpose: Keras then syncs the step's logs before on_*_end, so the end
        # timestamp is taken after the step's work has finished on the device.
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self._start = 0.0

        def _begin(self, *args: Any, **kwargs: Any) -> None:
            self._start = time.perf_counter()

        def _end(self, *args: Any, **kwargs: Any) -> None:
            self.times.append(time.perf_counter() - self._start)

    setattr(_Timer, begin_hook, _Timer._begin)
    setattr(_Timer, end_hook, _Timer._end)
    return _Timer()


def step_timer() -> Any:
    """A Keras callback whose `.times` are the wall times of each training step."""
    return _timer_callback("on_train_batch_begin", "on_train_batch_end")


def epoch_timer() -> Any:
    """A Keras callback whose `.times` are the wall times of each epoch (validation included)."""
    return _timer_callback("on_epoch_begin", "on_epoch_end")


class FitHarness:
    """A compiled model and an endless dataset of one seeded batch, ready for timed `fit` calls."""

    def __init__(self, api: str, jit: bool, batch_size: int, spec: ModelSpec = ModelSpec(), seed: int = 0) -> None:
        import tensorflow as tf

        self.api, self.jit_requested, self.batch_size, self.spec = api, bool(jit), batch_size, spec
        self.model = compile_model(build_model(api, spec, seed=seed), jit, spec)
        x, y = synthetic_batch(spec, batch_size, seed)
        # One batch repeated: the input pipeline costs nothing, so the step is what gets timed.
        self.dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
        self.first_step_s: float | None = None

    @property
    def jit_effective(self) -> bool:
        return jit_effective(self.model)

    def fit_steps(self, steps: int) -> list[float]:
        """Run `fit` for `steps` steps; return each step's wall time in seconds."""
        timer = step_timer()
        self.model.fit(self.dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer],
                       shuffle=False)
        return timer.times

    def warm_up(self, steps: int) -> float:
        """Compile (first step) and warm up; returns the first step's time (trace + compile + run)."""
        times = self.fit_steps(max(1, steps))
        self.first_step_s = times[0]
        return self.first_step_s


class SeedHarness:
    """The seed's workload: 1 sample, validation on the same sample, timed per epoch."""

    def __init__(self, api: str, jit: bool, spec: ModelSpec = ModelSpec(), seed: int = 0) -> None:
        self.api, self.jit_requested, self.spec = api, bool(jit), spec
        self.model = compile_model(build_model(api, spec, seed=seed), jit, spec)
        self.x, self.y = seed_input(seed, spec.input_dim), seed_target()
        self.first_epoch_s: float | None = None

    @property
    def jit_effective(self) -> bool:
        return jit_effective(self.model)

    def fit_epochs(self, epochs: int) -> list[float]:
        timer = epoch_timer()
        self.model.fit(self.x, self.y, validation_data=(self.x, self.y), epochs=epochs, verbose=0,
                       callbacks=[timer], shuffle=False)
        return timer.times

    def warm_up(self, epochs: int) -> float:
        times = self.fit_epochs(max(1, epochs))
        self.first_epoch_s = times[0]
        return self.first_epoch_s


def empty_record(cell: Cell, status: str, reason: str) -> dict[str, Any]:
    """A record for a cell that produced no timing (skipped or error), with every contract field present."""
    return {**asdict(cell), "jit_requested": cell.jit, "jit_effective": None, "step_time_median_s": None,
            "samples_per_s": None, "gflops_per_s": None, "status": status,
            ("reason" if status == "skipped" else "error"): reason}


def measure_cell(cell: dict[str, Any], profile: dict[str, Any], spec: dict[str, Any] | None = None,
                 seed: int = 0) -> dict[str, Any]:
    """Time one cell in this process and return its record (JSON-able). Runs in a fresh child."""
    from fitbench import runtime

    c, p = Cell(**cell), Profile(**{**profile, "batch_sizes": tuple(profile["batch_sizes"])})
    model_spec = ModelSpec.from_dict(spec) if spec else ModelSpec()
    record: dict[str, Any] = {**asdict(c), **runtime.process_facts(c.device)}
    if c.device == "gpu" and not record["device_name"]:
        return {**empty_record(c, "skipped", "no GPU visible to TensorFlow on this machine"), **record}
    if c.kind == FIT:
        harness: FitHarness | SeedHarness = FitHarness(c.api, c.jit, c.batch_size, model_spec, seed)
        first_s = harness.warm_up(p.warmup_steps)
        times = [t for _ in range(p.repeats) for t in harness.fit_steps(p.steps)]
        warmup = p.warmup_steps
    else:
        harness = SeedHarness(c.api, c.jit, model_spec, seed)
        first_s = harness.warm_up(p.seed_warmup_epochs)
        times = harness.fit_epochs(p.seed_epochs)
        warmup = p.seed_warmup_epochs
    stats = summarize(times)
    flops = train_step_flops(model_spec, c.batch_size)
    return {
        **record,
        "jit_requested": c.jit,
        "jit_effective": harness.jit_effective,
        "params": param_count(model_spec),
        "widths": list(model_spec.widths),
        "warmup_steps": warmup,
        "steps_timed": len(times),
        "step_times_s": times,
        "step_time_median_s": stats["median_s"],
        "step_time_iqr_s": stats["iqr_s"],
        "step_time_min_s": stats["min_s"],
        "step_time_mean_s": stats["mean_s"],
        "samples_per_s": c.batch_size / stats["median_s"],
        "first_step_s": first_s,
        "flops_per_step": flops,
        "gflops_per_s": flops / stats["median_s"] / 1e9,
        "threads": runtime.thread_settings(),
        "peak_rss_bytes": runtime.peak_rss_bytes(),
        "status": "ok",
    }
