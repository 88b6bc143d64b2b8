"""The fit loop: api x jit x device x batch size, compile and warm-up done in setup; and its tuned variant."""

from __future__ import annotations

import os
import statistics

from .common import (
    APIS,
    BACKEND,
    DEVICES,
    FIT_STEPS,
    KERAS_MAJOR,
    PROCESSES,
    PROFILE,
    SEED,
    TUNED,
    WARMUP_STEPS,
    Benchmark,
    FitHarness,
    ModelSpec,
    RawHarness,
    apply_threads,
    cached,
    determinism_in_force,
    determinism_switch_on,
    device_env,
    efficiency,
    gflops_per_s,
    measure_peak,
    pct_of_peak,
    per_step_clock,
    process_layout,
    require,
    select_device,
    set_window,
    step_window,
    train_step_flops,
    use_data_parallel,
)

# What Keras' jit_compile="auto" picks on a CPU: XLA on TensorFlow and JAX, eager on PyTorch (torch.compile
# is opt-in). StepTime times the loop a user gets by default.
DEFAULT_JIT = {"tensorflow": True, "jax": True, "torch": False}


def raw_step_time(jit_effective: bool, device: str, batch_size: int) -> float:
    """Median time of the raw step (fitbench.measure.raw) with the fit model's effective jit, built once per process."""
    require(RawHarness)

    def make() -> RawHarness:
        raw = RawHarness(BACKEND, jit_effective, batch_size, ModelSpec(), seed=SEED, device=device)
        raw.warm_up(WARMUP_STEPS)
        return raw

    raw = cached(("raw", jit_effective, device, batch_size), make)
    return statistics.median(raw.run_steps(FIT_STEPS))


class FitLoop(Benchmark):
    params = [list(APIS), [False, True], DEVICES, PROFILE["batch_sizes"]]
    param_names = ["api", "jit", "device", "batch_size"]

    def setup(self, api: str, jit: bool, device: str, batch_size: int) -> None:
        require(FitHarness, ModelSpec)
        select_device(device)

        def make() -> FitHarness:
            harness = FitHarness(api, jit, batch_size, ModelSpec(), seed=SEED)
            harness.warm_up(WARMUP_STEPS)
            return harness

        self.harness = cached((api, jit, device, batch_size), make)

    def time_fit_10_steps(self, api: str, jit: bool, device: str, batch_size: int) -> None:
        """Wall time of one `fit` call of FIT_STEPS (10) training steps on the seed network."""
        self.harness.fit_steps(FIT_STEPS)

    def track_samples_per_second(self, api: str, jit: bool, device: str, batch_size: int) -> float:
        """Training samples per second: batch size / median per-step time inside fit (callback)."""
        return batch_size / statistics.median(self.harness.fit_steps(FIT_STEPS))

    track_samples_per_second.unit = "samples/s"

    def track_jit_effective(self, api: str, jit: bool, device: str, batch_size: int) -> int:
        """1 when XLA really compiles the step (read back from Keras), 0 when it does not."""
        return int(self.harness.jit_effective)

    track_jit_effective.unit = "XLA on (1/0)"

    def peakmem_fit_steps(self, api: str, jit: bool, device: str, batch_size: int) -> None:
        """Peak resident memory of the process after build, compile and FIT_STEPS steps."""
        self.harness.fit_steps(FIT_STEPS)

    def track_raw_step_time(self, api: str, jit: bool, device: str, batch_size: int) -> float:
        """Median time of the raw training step (the framework's own idiom, no fit; fitbench.measure.raw)."""
        return raw_step_time(self.harness.jit_effective, device, batch_size)

    track_raw_step_time.unit = "s/step"

    def track_efficiency(self, api: str, jit: bool, device: str, batch_size: int) -> float:
        """Raw step time ÷ fit step time, both medians measured in this process (1 = fit costs nothing)."""
        raw = raw_step_time(self.harness.jit_effective, device, batch_size)
        return efficiency(raw, statistics.median(self.harness.fit_steps(FIT_STEPS)))

    track_efficiency.unit = "raw/fit"

    def track_pct_of_peak(self, api: str, jit: bool, device: str, batch_size: int) -> float:
        """The fit step's GFLOP/s as a percentage of the device's peak matmul GFLOP/s (fitbench.measure.peak)."""
        require(measure_peak, train_step_flops)
        peak = cached(("peak", device), lambda: measure_peak(BACKEND, device))
        step_s = statistics.median(self.harness.fit_steps(FIT_STEPS))
        return pct_of_peak(gflops_per_s(train_step_flops(ModelSpec(), batch_size), step_s), peak["gflops_per_s"])

    track_pct_of_peak.unit = "% of peak"


class TunedFitLoop(Benchmark):
    """The tuned variant of the functional fit loop (fitbench.measure.harness.FitHarness, variant="tuned"):
    steps_per_execution on TensorFlow and JAX, prefetch on TensorFlow, the batch on the device on JAX and
    PyTorch. Per training step: each execution's time ÷ steps_per_execution."""

    params = [[False, True], DEVICES, PROFILE["batch_sizes"]]
    param_names = ["jit", "device", "batch_size"]

    def setup(self, jit: bool, device: str, batch_size: int) -> None:
        require(FitHarness, ModelSpec, TUNED)
        select_device(device)

        def make() -> FitHarness:
            harness = FitHarness("functional", jit, batch_size, ModelSpec(), seed=SEED, variant=TUNED)
            harness.warm_up(WARMUP_STEPS)
            return harness

        self.harness = cached(("tuned", jit, device, batch_size), make)

    def _step_times(self) -> list[float]:
        # FIT_STEPS executions of k steps: the first execution of each fit() call also carries fit's own
        # set-up (tens of ms), so a median needs many executions, not FIT_STEPS steps' worth (2 of 8)
        return self.harness.fit_steps(FIT_STEPS * self.harness.steps_per_execution)

    def track_samples_per_second(self, jit: bool, device: str, batch_size: int) -> float:
        """Training samples per second of the tuned fit: batch size / median time per training step."""
        return batch_size / statistics.median(self._step_times())

    track_samples_per_second.unit = "samples/s"

    def track_efficiency(self, jit: bool, device: str, batch_size: int) -> float:
        """Raw step time ÷ tuned fit step time, both measured in this process (above 1: faster than the
        per-step raw loop, which goes back to the host after every step)."""
        raw = raw_step_time(self.harness.jit_effective, device, batch_size)
        return efficiency(raw, statistics.median(self._step_times()))

    track_efficiency.unit = "raw/fit"


class StepTime(Benchmark):
    """Seconds per training step of the functional fit loop with Keras' default jit, process by process:
    the cells `fitbench alert` decides on.

    Each process (asv round) builds, compiles and warms up, then times `repeat` windows, each one `fit`
    call of `step_window(batch)` steps (60-300 ms); asv's clock for it counts in steps, so a sample
    is seconds per step. `repeat` is fixed and written into the benchmark's `version`, which asv stores with
    each result, so the samples asv pools over `rounds` processes split back into processes by the layout
    of the run that stored them (fitbench.regress.asvdata); asv's stored value, the median over all windows
    of all processes, is robust for the published graphs."""

    params = [PROFILE["batch_sizes"]]
    param_names = ["batch_size"]
    rounds = PROCESSES
    version = process_layout("StepTime 2", PROFILE["repeat"])  # results keep their layout across profiles
    timer = staticmethod(per_step_clock)  # a plain function, not a method: asv calls it with no arguments

    def setup(self, batch_size: int) -> None:
        require(FitHarness, ModelSpec, apply_threads)
        select_device("cpu")
        set_window(step_window(batch_size))

        def make() -> FitHarness:
            harness = FitHarness("functional", DEFAULT_JIT[BACKEND], batch_size, ModelSpec(), seed=SEED)
            harness.warm_up(WARMUP_STEPS)
            return harness

        self.harness = cached(("step", batch_size), make)

    def time_step(self, batch_size: int) -> None:
        """Seconds per training step: one window (`fit` call) of step_window(batch) steps ÷ its steps."""
        self.harness.fit_steps(step_window(batch_size))


class StepTimeDeterministic(StepTime):
    """StepTime with the backend's determinism switch on (fitbench.determinism.switch: TF op determinism, torch's
    deterministic algorithms, XLA's deterministic-ops flag; tf-keras: TensorFlow's): a slowdown that exists only
    under the switch (TensorFlow 2.14's op determinism made one user's training eight times slower) shows
    here and not in StepTime. Not in the alert's default set; `fitbench alert --bench 'StepTime'` watches
    both. Each process turns the switch on before its framework starts: asv runs every benchmark in a fresh
    process (launch_method spawn), and TensorFlow's switch cannot be turned off again."""

    version = process_layout("StepTimeDeterministic 1", PROFILE["repeat"])

    def setup(self, batch_size: int) -> None:
        require(determinism_switch_on)
        determinism_switch_on("tf-keras" if KERAS_MAJOR == 2 else BACKEND)
        super().setup(batch_size)

    def track_switch_in_force(self, batch_size: int) -> int:
        """1 when the framework says the determinism switch is on in the benchmark's process."""
        return int(determinism_in_force("tf-keras" if KERAS_MAJOR == 2 else BACKEND))

    track_switch_in_force.unit = "switch on (1/0)"
    track_switch_in_force.rounds = 1  # a fact of the process, not a timing: one process says it

    def track_jit_effective(self, batch_size: int) -> int:
        """1 when the step is compiled under the switch (Keras turns XLA off under TF op determinism)."""
        return int(self.harness.jit_effective)

    track_jit_effective.unit = "XLA on (1/0)"
    track_jit_effective.rounds = 1


class DataParallelStepTime(Benchmark):
    """Seconds per training step of the functional fit loop at batch 256 over N devices
    (keras.distribution.DataParallel, the batch split; fitbench.measure.distributed), on JAX, the backend with
    Keras' distribution engine (n/a elsewhere). On a CPU the devices are simulated and share its cores: the
    figure tracks what the distribution machinery costs across commits, not a speed-up."""

    params = [[1, 2, 4]]
    param_names = ["devices"]
    rounds = PROCESSES
    # each device count is a process of its own (JAX reads it at start-up): also when fitbench alert pairs it
    version = process_layout("DataParallelStepTime 1", PROFILE["repeat"]) + "; process-per-parameters"
    timer = staticmethod(per_step_clock)
    batch_size = 256

    def setup(self, devices: int) -> None:
        require(FitHarness, ModelSpec, use_data_parallel, device_env)
        if BACKEND != "jax":
            raise NotImplementedError(f"keras.distribution runs on jax; this environment is {BACKEND}")
        select_device("cpu")
        os.environ.update(device_env(BACKEND, "cpu", devices))  # before JAX starts: it reads it once
        set_window(step_window(self.batch_size))

        def make() -> FitHarness:
            use_data_parallel(devices, "cpu")
            harness = FitHarness("functional", True, self.batch_size, ModelSpec(), seed=SEED)
            harness.warm_up(WARMUP_STEPS)
            return harness

        self.harness = cached(("data-parallel", devices), make)

    def time_step(self, devices: int) -> None:
        """Seconds per training step over `devices` devices: one window of step_window(256) steps ÷ its steps."""
        self.harness.fit_steps(step_window(self.batch_size))
