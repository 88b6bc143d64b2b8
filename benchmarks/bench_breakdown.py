"""Where a step's time goes, as cells the alert can measure in pairs: when StepTime is worse on a backend,
`fitbench alert` measures these for the same batch size and says which phase grew (fitbench breakdown's
configurations; a phase is the difference of two of them)."""

from __future__ import annotations

from .bench_fit import DEFAULT_JIT
from .common import (
    BACKEND,
    PROCESSES,
    PROFILE,
    SEED,
    STACK,
    Benchmark,
    cached,
    per_step_clock,
    process_layout,
    require,
    safe_import,
    select_device,
    set_window,
    step_window,
)

step_configurations = safe_import("step_configurations", "fitbench")  # since 2026-12-04: older commits are n/a
# fitbench.measure.breakdown.CONFIGURATION_IDS, written out: both commits of a pair must see the same cells
CONFIGURATIONS = ("forward", "forward_loss", "gradients", "custom_step", "fit_no_metrics", "fit", "fit_progress")


class StepPhases(Benchmark):
    """Seconds per step of each configuration of the seed network's functional step (Keras' default jit), in
    windows of StepTime's length: the forward pass, + loss, + backward, the framework's own loop (+ optimizer),
    `fit` without metrics, `fit`, `fit` with the progress bar. One process builds all seven once and each cell
    times its own (a process per class in a pair's worker; asv's own runs give each cell a process)."""

    params = [list(CONFIGURATIONS), PROFILE["batch_sizes"]]
    param_names = ["configuration", "batch_size"]
    rounds = PROCESSES
    version = process_layout("StepPhases 1", PROFILE["repeat"])
    timer = staticmethod(per_step_clock)

    def setup(self, configuration: str, batch_size: int) -> None:
        require(step_configurations)
        select_device("cpu")
        set_window(step_window(batch_size))
        built = cached(("phases", batch_size), lambda: step_configurations(
            STACK, None, "functional", DEFAULT_JIT[BACKEND], batch_size, SEED))  # subnormals, heap: select_device
        self.window = built.window(configuration)

    def time_configuration(self, configuration: str, batch_size: int) -> None:
        """Seconds per step of one configuration: one window of step_window(batch) steps ÷ its steps."""
        self.window(step_window(batch_size))
