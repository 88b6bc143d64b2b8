"""The seed question's own workload: 1 sample, validation on it after every epoch."""

from __future__ import annotations

import statistics

from .common import APIS, SEED, Benchmark, ModelSpec, SeedHarness, cached, require, select_device

EPOCHS = 10  # epochs per timed fit() call, so fit()'s own set-up cost is spread as in a real run


class SeedEpoch(Benchmark):
    params = [list(APIS), [False, True]]
    param_names = ["api", "jit"]

    def setup(self, api: str, jit: bool) -> None:
        require(SeedHarness, ModelSpec)
        select_device("cpu")

        def make() -> SeedHarness:
            harness = SeedHarness(api, jit, ModelSpec(), seed=SEED)
            harness.warm_up(3)
            return harness

        self.harness = cached((api, jit), make)

    def time_fit_10_epochs(self, api: str, jit: bool) -> None:
        """Wall time of one `fit` call of 10 epochs of the seed's workload (1 sample + validation each)."""
        self.harness.fit_epochs(EPOCHS)

    def track_epoch_time(self, api: str, jit: bool) -> float:
        """Median wall time of one epoch inside fit (callback): one step on 1 sample + validation."""
        return statistics.median(self.harness.fit_epochs(EPOCHS))

    track_epoch_time.unit = "s/epoch"
