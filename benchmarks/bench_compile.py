"""Compile cost: a freshly built and compiled model, timed to the end of its first training step."""

from __future__ import annotations

from .common import APIS, SEED, Benchmark, FitHarness, ModelSpec, require, select_device


class FirstStep(Benchmark):
    params = [list(APIS), [False, True]]
    param_names = ["api", "jit"]
    repeat = (3, 5, 60.0)  # every sample builds a new model in setup: keep the count small

    def setup(self, api: str, jit: bool) -> None:
        # Not cached: with number = 1, asv runs setup before every timed call, so each call sees a
        # model that has never stepped (trace + XLA compile + first step are what is timed).
        require(FitHarness, ModelSpec)
        select_device("cpu")
        self.harness = FitHarness(api, jit, 32, ModelSpec(), seed=SEED)

    def time_first_step(self, api: str, jit: bool) -> None:
        """Wall time of the first `fit` step: tracing, (XLA) compilation and one step, batch 32."""
        self.harness.fit_steps(1)
