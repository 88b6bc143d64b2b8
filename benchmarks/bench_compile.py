"""Compile cost: a freshly built and compiled model, timed to the end of its first training step; and how many
times `fit` traces the step (an exact count: any increase is a retrace regression, no statistics needed)."""

from __future__ import annotations

import tempfile

from .common import (
    APIS,
    PROCESSES,
    SEED,
    STACK,
    Benchmark,
    FitHarness,
    ModelSpec,
    count_fit_traces,
    first_step_isolated,
    process_layout,
    require,
    require_backend,
    select_device,
)

FIRST_STEPS = 3  # samples per process: a fresh model each (the first also pays the process's own first compile)


class FirstStep(Benchmark):
    """Compile time, process by process: the alert decides it at its own, wider margin (--compile-threshold)."""

    params = [list(APIS), [False, True]]
    param_names = ["api", "jit"]
    repeat = FIRST_STEPS  # every sample builds a new model in setup: a fixed small count, so processes split back
    rounds = PROCESSES  # processes per commit, as StepTime's (`fitbench alert` sets FITBENCH_PROCESSES)
    version = process_layout("FirstStep 2", FIRST_STEPS)

    def setup(self, api: str, jit: bool) -> None:
        # Not cached: with number = 1, asv runs setup before every timed call, so each call sees a
        # model that has never stepped (trace + XLA compile + first step are what is timed).
        require(FitHarness, ModelSpec)
        select_device("cpu")
        self.harness = FitHarness(api, jit, 32, ModelSpec(), seed=SEED)

    def time_first_step(self, api: str, jit: bool) -> None:
        """Wall time of the first `fit` step: tracing, (XLA) compilation and one step, batch 32."""
        self.harness.fit_steps(1)


class FirstStepCache(Benchmark):
    params = [["cold", "warm"]]
    param_names = ["cache"]
    repeat = 1  # one sample per asv process: each is a fresh interpreter's first step (in-memory caches differ)
    timeout = 900

    def setup_cache(self) -> str:
        require(first_step_isolated)
        require_backend()
        # left in the temporary folder after the run (asv has no teardown for setup_cache): a few MB at most
        warm = tempfile.mkdtemp(prefix="fitbench-asv-cache-")
        first_step_isolated(STACK, "priming", warm, -1)  # the warm folder, filled once per asv run
        return warm

    def track_first_step_s(self, warm: str, cache: str) -> float:
        """Seconds to the end of the first `fit` step (jit on, functional, batch 32) of a fresh interpreter
        whose framework reads its persistent compilation cache from an empty folder (cold) or from one a
        previous process filled (warm): trace + compile or load + one step."""
        if cache == "warm":
            return first_step_isolated(STACK, cache, warm).first_step_s
        with tempfile.TemporaryDirectory(prefix="fitbench-asv-cold-") as cold:
            return first_step_isolated(STACK, cache, cold).first_step_s

    track_first_step_s.unit = "seconds"


class Traces(Benchmark):
    params = [list(APIS), [False, True]]
    param_names = ["api", "jit"]
    rounds, repeat = 1, 1  # an exact count: one process, one call say it all
    unit = "traces"

    def setup(self, api: str, jit: bool) -> None:
        require(FitHarness, ModelSpec, count_fit_traces)
        select_device("cpu")
        self.harness = FitHarness(api, jit, 32, ModelSpec(), seed=SEED)  # never fit: its first trace is counted

    def track_step_traces(self, api: str, jit: bool) -> int:
        """How many times one `fit` of 3 epochs traced (compiled) the training step: 2 on TensorFlow (a
        tf.function is traced twice on its first call), 1 on JAX with jit, torch.compile's graphs on PyTorch
        with jit, 0 where the step runs op by op. A count that grows with the epochs is a retrace bug."""
        return count_fit_traces(self.harness).step_traces

    track_step_traces.unit = "traces"
