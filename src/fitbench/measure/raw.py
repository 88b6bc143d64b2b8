"""The floor: one training step of the seed network written in the framework's own idiom, no Keras `fit`.

The same network, loss, optimizer and initial weights as the Keras cells: the Dense kernels and biases
are taken from `build_model(..., seed=seed)` (so Keras's own initializers draw them), the loss is the mean
squared error over every output, and the update is Adam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
written out as Keras 3 writes it (PyTorch uses `torch.optim.Adam` with the same hyper-parameters, whose
epsilon is applied after the bias correction instead: a difference in the last bits, not in the work).

Each framework's step lives with its backend (`fitbench.backends.<name>.RawStep`): TensorFlow's
`tf.function(jit_compile=jit)` around `GradientTape`; JAX's `jax.value_and_grad` plus the Adam update under
`jax.jit` when jit is on; PyTorch's `nn.Module` and `torch.optim.Adam`, `torch.compile` when jit is on.

The data is one seeded batch that already lives on the device, so each step times only the step.
`RawHarness.run_steps` returns the wall time of each step, taken after the step's result is back
on the host (loss to a Python float), as the Keras callback's timestamps are.

Everything runs in the cell's own process; the framework is imported inside the functions.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fitbench import backends
from fitbench.models.seed import ModelSpec, build_model
from fitbench.models.seed_data import synthetic_batch


def initial_weights(spec: ModelSpec, seed: int) -> list[np.ndarray]:
    """[kernel, bias, kernel, bias, ...] exactly as the Keras model starts from `set_random_seed(seed)`."""
    return [np.asarray(w, np.float32) for w in build_model("sequential", spec, seed=seed).get_weights()]


class RawHarness:
    """The raw training step of the seed network on `backend`, ready for timed steps."""

    def __init__(self, backend: str, jit: bool, batch_size: int, spec: ModelSpec = ModelSpec(), seed: int = 0,
                 device: str = "cpu") -> None:
        self.backend, self.jit, self.batch_size, self.spec = backend, bool(jit), batch_size, spec
        weights = initial_weights(spec, seed)
        x, y = synthetic_batch(spec, batch_size, seed)
        if backend not in backends.KERAS3:
            raise ValueError(f"no raw step for backend {backend!r}")
        chosen = backends.get(backend)
        self._step: Any = chosen.raw_step(weights, x, y, spec, jit, device)
        self.idiom = chosen.RAW_IDIOM
        self.first_step_s: float | None = None
        self.losses: list[float] = []

    def run_steps(self, steps: int) -> list[float]:
        """Run `steps` training steps; return each one's wall time in seconds (result back on the host)."""
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.losses.append(self._step())
            times.append(time.perf_counter() - start)
        return times

    def warm_up(self, steps: int) -> float:
        """The first step (trace + compile + run) and the rest of the warm-up; returns the first's time."""
        times = self.run_steps(max(1, steps))
        self.first_step_s = times[0]
        return self.first_step_s

    def weights(self) -> list[np.ndarray]:
        return self._step.weights()

    def variable_device(self) -> str:
        """Where the framework says the first kernel lives."""
        return self._step.device()
