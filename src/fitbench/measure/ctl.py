"""The floor for any model: a custom training loop in each framework's own idiom around the same Keras model.

The seed network has a raw step written without Keras (fitbench.measure.raw); a user's or a zoo model has
no such twin, so its floor is the loop the Keras guides teach for each backend, as Keras' own
`torch_ctl_benchmark` compares loops:
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
from typing import Any

import numpy as np

from fitbench.models.workload import Workload


class CtlHarness:
    """One backend's custom training loop around a freshly built, seeded copy of the workload's model."""

    def __init__(self, backend: str, workload: Workload, api: str, jit: bool, batch_size: int) -> None:
        import keras

        self.backend, self.jit = backend, bool(jit)
        self.model = workload.compile(workload.build(api), jit=False)  # compile only to settle loss/optimizer
        loss = keras.losses.get(self.model.loss) if isinstance(self.model.loss, str) else self.model.loss
        # a loss by name is the per-sample function; fit reduces it to the batch mean, so does the loop
        self.loss_fn = lambda y, pred: keras.ops.mean(loss(y, pred))
        self.optimizer = self.model.optimizer.__class__.from_config(self.model.optimizer.get_config())
        x, y = workload.batch(self.model, batch_size)
        self.flops: int | None = None
        self.flops_source: str | None = None
        if backend == "tensorflow":
            self._tensorflow(x, y)
        elif backend == "jax":
            self._jax(x, y)
        elif backend == "torch":
            self._torch(x, y)
        else:
            raise ValueError(f"no custom training loop for backend {backend!r}")

    # ---------- the three idioms ----------

    def _tensorflow(self, x: Any, y: Any) -> None:
        import keras
        import tensorflow as tf

        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        self.x, self.y = keras.tree.map_structure(tf.constant, (x, y))

        @tf.function(jit_compile=self.jit)
        def step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        self._step = lambda: float(step(self.x, self.y))
        self.idiom = f"GradientTape around the Keras model in tf.function(jit_compile={self.jit})"

    def _jax(self, x: Any, y: Any) -> None:
        import jax
        import jax.numpy as jnp
        import keras

        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        optimizer.build(model.trainable_variables)
        self.x, self.y = keras.tree.map_structure(jnp.asarray, (x, y))

        def loss_and_state(trainable: Any, non_trainable: Any, x: Any, y: Any) -> Any:
            pred, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_fn(y, pred), non_trainable

        grad_fn = jax.value_and_grad(loss_and_state, has_aux=True)

        def train_step(state: Any, x: Any, y: Any) -> Any:
            trainable, non_trainable, opt_vars = state
            (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            return loss, (trainable, non_trainable, opt_vars)

        self.state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                      [v.value for v in optimizer.variables])
        # compiled either way for XLA's count of the step's FLOPs; run compiled only with jit on
        compiled = jax.jit(train_step).lower(self.state, self.x, self.y).compile()
        self.flops, self.flops_source = _xla_flops(compiled)
        run = compiled if self.jit else train_step

        def step() -> float:
            loss, self.state = run(self.state, self.x, self.y)
            return float(loss)

        self._step = step
        self.idiom = ("stateless_call + jax.value_and_grad + optimizer.stateless_apply"
                      + (" under jax.jit" if self.jit else ", op by op"))

    def _torch(self, x: Any, y: Any) -> None:
        import keras
        import torch

        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        device = next((v.value.device for v in model.trainable_variables), torch.device("cpu"))
        self.x, self.y = keras.tree.map_structure(lambda a: torch.as_tensor(np.asarray(a), device=device), (x, y))
        optimizer.build(model.trainable_variables)
        forward = torch.compile(model) if self.jit else model

        def step() -> float:
            loss = loss_fn(self.y, forward(self.x, training=True))
            loss.backward()
            variables = model.trainable_variables
            with torch.no_grad():
                optimizer.apply([v.value.grad for v in variables], variables)
            model.zero_grad()
            return float(loss.item())

        self._step = step
        self.idiom = "forward, loss.backward(), Keras optimizer on the grads" + (" (torch.compile)" if self.jit else "")

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
        value = self.model.trainable_variables[0].value
        return str(getattr(value, "device", "") or "")


def _xla_flops(compiled: Any) -> tuple[int | None, str | None]:
    """FLOPs of a compiled JAX step from XLA's cost analysis (a dict, or a list of one per computation)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # not offered by every jaxlib or platform: no number rather than a guess
        return None, None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return (int(flops), "xla_cost_analysis") if flops and flops > 0 else (None, None)
