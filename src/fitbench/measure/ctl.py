"""The floor for any model: a custom training loop in each framework's own idiom around the same Keras model.

The seed network has a raw step written without Keras (fitbench.measure.raw); a user's or a zoo model has
no such twin, so its floor is the loop the Keras guides teach for each backend, as Keras' own
`torch_ctl_benchmark` compares loops (each backend's loop lives with it: `fitbench.backends.<name>.ctl_step`):
- TensorFlow: `GradientTape` in a `tf.function(jit_compile=jit)`, the Keras optimizer's `apply_gradients`;
- JAX: `model.stateless_call` + `jax.value_and_grad` + `optimizer.stateless_apply`, the whole step under
  `jax.jit` when jit is on (op by op when off, as Keras on JAX runs jit_compile=False); XLA's cost analysis
  of the compiled step gives its FLOPs;
- PyTorch: the model's forward, `loss.backward()`, and the Keras optimizer applied to the parameters' grads.
Same model, same seeded weights, loss and optimizer as the fit cell; the batch already on the device; each
step timed until its loss is back on the host. Runs in the cell's process (Keras imported inside).
"""

from __future__ import annotations

import time

from fitbench import backends
from fitbench.models.workload import Workload


class CtlHarness:
    """One backend's custom training loop around a freshly built, seeded copy of the workload's model."""

    def __init__(self, backend: str, workload: Workload, api: str, jit: bool, batch_size: int) -> None:
        """`backend`: a stack's name (tensorflow, jax, torch, or tf-keras for Keras 2 on TensorFlow)."""
        if backend not in backends.NAMES:
            raise ValueError(f"no custom training loop for backend {backend!r}")
        self.backend, self.jit = backend, bool(jit)
        self.model = workload.compile(workload.build(api), jit=False)  # compile only to settle loss/optimizer
        self.loss_fn = workload.batch_loss(self.model)
        self.optimizer = self.model.optimizer.__class__.from_config(self.model.optimizer.get_config())
        x, y = workload.batch(self.model, batch_size)
        loop = backends.get(backend).ctl_step(self.model, self.loss_fn, self.optimizer, x, y, self.jit)
        self._step = loop["step"]
        self.idiom = loop["idiom"]
        self.flops: int | None = loop["flops"]
        self.flops_source: str | None = loop["flops_source"]

    # ---------- timing, as RawHarness ----------

    def warm_up(self, steps: int) -> float:
        first = 0.0
        for i in range(max(1, steps)):
            start = time.perf_counter()
            self._step()
            if i == 0:
                first = time.perf_counter() - start
        return first

    def run_steps(self, steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self._step()
            times.append(time.perf_counter() - start)
        return times

    def variable_device(self) -> str:
        from fitbench.processes.runtime import variable_device

        return variable_device(self.model)
