"""Fit-loop timing: per-step samples from inside `model.fit`, warm-up and compile kept apart.

`FitHarness` and `SeedHarness` are what the CLI's cells, the asv suite and the micro-benchmarks all call.
`measure_cell` turns one cell into one record; it runs inside a fresh process (see fitbench.isolation).
Each fit record also carries the floor: the raw training step of the same network in the backend's own
idiom (fitbench.raw), timed the same way in the same process, and the device's peak matmul GFLOP/s
(fitbench.peak, measured once per run and passed in).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from fitbench import APIS, BACKENDS, DEVICES
from fitbench.data import seed_input, seed_target, synthetic_batch
from fitbench.errors import UsageError
from fitbench.model import ModelSpec, build_model, compile_model, jit_effective, param_count, train_step_flops
from fitbench.profiles import Profile

FIT = "fit"  # cell kind: training steps on a synthetic batch
SEED_EPOCH = "seed_epoch"  # cell kind: the seed's workload, 1 sample + validation, timed per epoch
PLAIN, TUNED = "plain", "tuned"  # fit variants: compile + fit as written, or with the speed knobs on
VARIANTS = (PLAIN, TUNED)
TUNED_STEPS_PER_EXECUTION = 8  # FitHarness's default for the tuned variant (a Profile can set its own)


@dataclass(frozen=True)
class Cell:
    """One measurement: what `fitbench run` times in one fresh process."""

    kind: str
    api: str
    jit: bool
    device: str
    batch_size: int
    backend: str = "tensorflow"
    variant: str = PLAIN

    def label(self) -> str:
        what = f"batch {self.batch_size}" if self.kind == FIT else "seed epoch"
        tuned = " tuned" if self.variant == TUNED else ""
        return f"{self.backend} {self.api} jit={'on' if self.jit else 'off'}{tuned} {self.device} {what}"


def plan_cells(apis: list[str], jits: list[bool], devices: list[str], batch_sizes: list[int],
               backend: str | list[str] = "tensorflow", include_seed: bool = True,
               variants: list[str] = (PLAIN,)) -> list[Cell]:
    """Every (backend, device, batch, api, jit, variant) fit cell, then the seed-workload cells (plain
    only: the tuned knobs are about many steps per epoch); validates the choices."""
    backends = [backend] if isinstance(backend, str) else list(backend)
    for what, chosen, known in (("api", apis, APIS), ("device", devices, DEVICES), ("backend", backends, BACKENDS),
                                ("variant", variants, VARIANTS)):
        for value in chosen:
            if value not in known:
                raise UsageError(f"unknown {what} {value!r}; choose from {', '.join(known)}")
    for b in batch_sizes:
        if b <= 0:
            raise UsageError(f"batch size must be a positive integer, got {b}")
    cells = [Cell(FIT, api, jit, device, b, backend, variant)
             for backend in backends for device in devices for b in batch_sizes for api in apis for jit in jits
             for variant in variants]
    if include_seed:
        cells += [Cell(SEED_EPOCH, api, jit, device, 1, backend)
                  for backend in backends for device in devices for api in apis for jit in jits]
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


def supports_steps_per_execution() -> bool:
    """Keras 3 runs several steps per call on TensorFlow and JAX, not on PyTorch (it raises ValueError)."""
    import keras

    return keras.backend.backend() != "torch"


class FitHarness:
    """A compiled model and an endless feed of one seeded batch, ready for timed `fit` calls.

    variant="plain" is `compile` + `fit` as the seed wrote them. variant="tuned" turns on the knobs
    Keras offers for a faster loop on the cell's backend, jit staying the cell's own axis (so "tuned,
    jit on" is the full set):
    - `steps_per_execution` (default TUNED_STEPS_PER_EXECUTION steps per call into the compiled
      function), on TensorFlow and JAX; Keras on PyTorch refuses more than 1: there it stays 1 and
      `note` says so;
    - on TensorFlow, a prefetched tf.data pipeline (`prefetch(AUTOTUNE)`);
    - on JAX and PyTorch, the batch already on the device (`keras.ops.convert_to_tensor` once, so no step
      copies it from host numpy), where the plain variant feeds host numpy arrays as `fit(x, y)` does.
    The JAX and PyTorch feeds are Python generators, not tf.data: those cells never import TensorFlow
    (it need not be installed). `steps_per_execution`, `prefetch` and `data_on_device` override the
    variant's knobs one by one, to measure the gain each brings (`prefetch` is TensorFlow's only,
    `data_on_device` JAX's and PyTorch's only: asking for one elsewhere raises ValueError).
    """

    def __init__(self, api: str, jit: bool, batch_size: int, spec: ModelSpec = ModelSpec(), seed: int = 0,
                 variant: str = PLAIN, steps_per_execution: int | None = None, prefetch: bool | None = None,
                 data_on_device: bool | None = None) -> None:
        import keras

        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        tuned = variant == TUNED
        self.backend = keras.backend.backend()
        on_tf = self.backend == "tensorflow"
        if prefetch and not on_tf:
            raise ValueError(f"prefetch is a tf.data knob: the {self.backend} backend's feed is a Python generator")
        if data_on_device and on_tf:
            raise ValueError("data_on_device is a knob of the jax and torch backends (TensorFlow feeds tf.data)")
        self.api, self.jit_requested, self.batch_size, self.spec = api, bool(jit), batch_size, spec
        self.variant = variant
        self.steps_per_execution = int(steps_per_execution or (TUNED_STEPS_PER_EXECUTION if tuned else 1))
        self.note: str | None = None
        if self.steps_per_execution > 1 and not supports_steps_per_execution():
            self.note = (f"steps_per_execution={self.steps_per_execution} asked, but Keras on PyTorch only "
                         "runs 1: this cell ran 1")
            self.steps_per_execution = 1
        self.prefetch = on_tf and bool(tuned if prefetch is None else prefetch)
        self.data_on_device = not on_tf and bool(tuned if data_on_device is None else data_on_device)
        self.input_pipeline = "tf.data" if on_tf else "python generator"
        self.model = compile_model(build_model(api, spec, seed=seed), jit, spec,
                                   steps_per_execution=self.steps_per_execution)
        x, y = synthetic_batch(spec, batch_size, seed)
        self.batch = (x, y)  # host numpy: the one seeded batch every step trains on
        # One batch repeated: the input pipeline costs nothing, so the step is what gets timed.
        if on_tf:
            import tensorflow as tf

            dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
            if self.prefetch:
                self._dataset = dataset.prefetch(tf.data.AUTOTUNE)
            else:
                # No prefetch thread, not even the one tf.data injects by itself: with one, the step
                # sometimes waits for the producer thread's wake-up, a whole scheduler tick (10 ms on
                # this kernel), and a batch-32 step reads either ~5 or ~9.8 ms, process by process
                # (docs/noise.md). The one batch costs nothing to produce, so a synchronous feed is
                # the honest "the input pipeline costs nothing".
                options = tf.data.Options()
                options.experimental_optimization.inject_prefetch = False
                options.autotune.enabled = False
                self._dataset = dataset.with_options(options)
        else:
            self._batch = ((keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y))
                           if self.data_on_device else (x, y))
        self.first_step_s: float | None = None

    def _feed(self) -> Any:
        """What `fit` gets: the tf.data pipeline, or a fresh endless generator of the one batch."""
        if self.input_pipeline == "tf.data":
            return self._dataset

        def repeat_batch() -> Iterator[tuple[Any, Any]]:
            while True:
                yield self._batch

        return repeat_batch()

    @property
    def jit_effective(self) -> bool:
        return jit_effective(self.model)

    def fit_executions(self, executions: int) -> list[float]:
        """Run `fit` for `executions` × steps_per_execution steps; return each execution's wall time.

        Keras calls the batch callbacks once per execution (k = steps_per_execution steps), so that is
        the finest time there is with k > 1."""
        timer = step_timer()
        self.model.fit(self._feed(), epochs=1, steps_per_epoch=executions * self.steps_per_execution,
                       verbose=0, callbacks=[timer], shuffle=False)
        return timer.times

    def fit_steps(self, steps: int) -> list[float]:
        """Run `fit` for `steps` training steps (rounded up to whole executions); return the time per
        training step of each execution (the execution's wall time ÷ steps_per_execution)."""
        k = self.steps_per_execution
        return [t / k for t in self.fit_executions(-(-steps // k))]

    def warm_up(self, steps: int) -> float:
        """Compile and warm up for `steps` executions; returns the first execution's wall time (trace +
        compile + steps_per_execution steps; one step for the plain variant)."""
        times = self.fit_executions(max(1, steps))
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
            "samples_per_s": None, "gflops_per_s": None, "raw_step_time_s": None, "efficiency": None,
            "pct_of_peak": None, "status": status,
            ("reason" if status == "skipped" else "error"): reason}


def measure_cell(cell: dict[str, Any], profile: dict[str, Any], spec: dict[str, Any] | None = None,
                 seed: int = 0, peak: dict[str, Any] | None = None, raw: bool = True, threads: int | None = None,
                 cpus: list[int] | None = None) -> dict[str, Any]:
    """Time one cell in this process and return its record (JSON-able). Runs in a fresh child.

    `peak` is the device's peak-probe record (fitbench.peak.measure_peak, measured once per run);
    `raw=False` leaves out the raw-step floor; `threads` fixes the framework's thread pools (None: its
    defaults) and `cpus` pins the process, both before the framework is imported."""
    from fitbench import runtime

    affinity = runtime.pin_cpus(set(cpus) if cpus else None)
    runtime.apply_threads(cell.get("backend", "tensorflow"), threads)
    c = Cell(**cell)
    p = Profile(**{**profile, "batch_sizes": tuple(profile["batch_sizes"])})
    model_spec = ModelSpec.from_dict(spec) if spec else ModelSpec()
    record: dict[str, Any] = {**asdict(c), **runtime.process_facts(c.device, c.backend)}
    if c.device == "gpu" and not record["device_name"]:
        return {**empty_record(c, "skipped", f"no GPU visible to {c.backend} on this machine"), **record}
    k, note = 1, None
    if c.kind == FIT:
        harness: FitHarness | SeedHarness = FitHarness(
            c.api, c.jit, c.batch_size, model_spec, seed, variant=c.variant,
            steps_per_execution=p.steps_per_execution if c.variant == TUNED else 1)
        k, note = harness.steps_per_execution, harness.note
        first_s = harness.warm_up(p.warmup_steps)
        # p.steps samples per repeat: executions of k steps, each sample = execution time / k
        times = [t for _ in range(p.repeats) for t in harness.fit_steps(p.steps * k)]
        warmup = p.warmup_steps * k
    else:
        harness = SeedHarness(c.api, c.jit, model_spec, seed)
        first_s = harness.warm_up(p.seed_warmup_epochs)
        times = harness.fit_epochs(p.seed_epochs)
        warmup = p.seed_warmup_epochs
    where = runtime.variable_device(harness.model)
    if not runtime.on_device(where, c.device):  # a "gpu" result must have run on the GPU
        return {**empty_record(c, "error", f"the model's variables live on {where!r}, not on the {c.device}"),
                **record, "variable_device": where}
    stats = summarize(times)
    flops = train_step_flops(model_spec, c.batch_size)
    gflops = flops / stats["median_s"] / 1e9
    floor = measure_raw(c, p, model_spec, seed, harness.jit_effective) if raw and c.kind == FIT else {}
    if floor and not runtime.on_device(floor["raw_device"], c.device):
        return {**empty_record(c, "error", f"the raw step's variables live on {floor['raw_device']!r}, "
                                          f"not on the {c.device}"), **record, "variable_device": where}
    peak_gflops = peak.get("gflops_per_s") if peak else None
    return {
        **record,
        "jit_requested": c.jit,
        "jit_effective": harness.jit_effective,
        "variable_device": where,
        "raw_device": floor.get("raw_device"),
        "params": param_count(model_spec),
        "widths": list(model_spec.widths),
        "steps_per_execution": k,
        "prefetch": bool(getattr(harness, "prefetch", False)),
        "data_on_device": bool(getattr(harness, "data_on_device", False)),
        "input_pipeline": getattr(harness, "input_pipeline", "numpy arrays"),
        "variant_note": note,
        "warmup_steps": warmup,
        "steps_timed": len(times) * k,
        "step_times_s": times,
        "step_time_median_s": stats["median_s"],
        "step_time_iqr_s": stats["iqr_s"],
        "step_time_min_s": stats["min_s"],
        "step_time_mean_s": stats["mean_s"],
        "samples_per_s": c.batch_size / stats["median_s"],
        "first_step_s": first_s,
        "flops_per_step": flops,
        "gflops_per_s": gflops,
        "raw_step_time_s": floor.get("raw_step_time_s"),
        "raw_first_step_s": floor.get("raw_first_step_s"),
        "raw_jit": floor.get("raw_jit"),
        "raw_idiom": floor.get("raw_idiom"),
        "efficiency": floor["raw_step_time_s"] / stats["median_s"] if floor else None,
        "peak_gflops_per_s": peak_gflops,
        "pct_of_peak": 100.0 * gflops / peak_gflops if peak_gflops else None,
        "threads": runtime.thread_settings(c.backend),
        "threads_setting": threads,  # what was asked: None = the framework's defaults
        "affinity": affinity,
        "peak_rss_bytes": runtime.peak_rss_bytes(),
        "status": "ok",
    }


def measure_raw(c: Cell, p: Profile, spec: ModelSpec, seed: int, jit: bool) -> dict[str, Any]:
    """The raw step of the cell's network and batch, jit as Keras really ran it, timed like the fit cell
    (the profile's warm-up steps excluded, then repeats × steps samples)."""
    from fitbench.raw import RawHarness

    raw = RawHarness(c.backend, jit, c.batch_size, spec, seed, device=c.device)
    first_s = raw.warm_up(p.warmup_steps)
    times = raw.run_steps(p.repeats * p.steps)
    return {"raw_step_time_s": summarize(times)["median_s"], "raw_first_step_s": first_s, "raw_jit": bool(jit),
            "raw_idiom": raw.idiom, "raw_device": raw.variable_device()}


def window_steps(batch_size: int) -> int:
    """Training steps in one timed window (one `fit` call) of the process-level benchmarks: enough that a
    window lasts a few hundred ms on a 2-core CPU (the batch-32 step takes ~5 ms, batch 256 ~30 ms), so a
    window is far longer than the timer's resolution and fit()'s per-call set-up is a small share of it."""
    return min(256, max(10, 2048 // max(1, batch_size)))


def measure_windows(backend: str, api: str, jit: bool, batch_sizes: list[int], windows: int,
                    threads: int | None = None, cpus: list[int] | None = None, seed: int = 0,
                    warmup_steps: int = 3) -> dict[str, Any]:
    """One process's samples for the noise study: for each batch size, `windows` timed `fit` calls of
    `window_steps(batch)` steps after warm-up (each window's wall time ÷ steps = seconds per step).

    Runs in a fresh child: the thread setting and CPU affinity must be in force before the framework is
    imported."""
    from fitbench import runtime

    pinned = runtime.pin_cpus(set(cpus) if cpus else None)
    applied = runtime.apply_threads(backend, threads)
    out: dict[str, Any] = {"backend": backend, "api": api, "jit": jit, **applied, "affinity": pinned, "cells": []}
    for batch_size in batch_sizes:
        harness = FitHarness(api, jit, batch_size, ModelSpec(), seed=seed)
        harness.warm_up(warmup_steps)
        steps = window_steps(batch_size)
        per_step = []
        for _ in range(windows):
            start = time.perf_counter()
            harness.fit_steps(steps)
            per_step.append((time.perf_counter() - start) / steps)
        out["cells"].append({"batch_size": batch_size, "steps_per_window": steps, "window_step_s": per_step,
                             "jit_effective": harness.jit_effective})
    out["threads_in_force"] = runtime.thread_settings(backend)
    return out
