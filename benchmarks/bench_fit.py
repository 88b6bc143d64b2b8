"""The fit loop: api x jit x device x batch size, compile and warm-up done in setup."""

from __future__ import annotations

import statistics

from .common import APIS, FIT_STEPS, PROFILE, SEED, WARMUP_STEPS, Benchmark, FitHarness, ModelSpec, cached, require, select_device


class FitLoop(Benchmark):
    params = [list(APIS), [False, True], ["cpu", "gpu"], PROFILE["batch_sizes"]]
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
