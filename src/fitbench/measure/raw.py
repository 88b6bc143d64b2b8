"""The floor: one training step of the seed network written in the framework's own idiom, no Keras `fit`.

The same network, loss, optimizer and initial weights as the Keras cells: the Dense kernels and biases
are taken from `build_model(..., seed=seed)` (so Keras's own initializers draw them), the loss is the mean
squared error over every output, and the update is Adam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
written out as Keras 3 writes it (PyTorch uses `torch.optim.Adam` with the same hyper-parameters, whose
epsilon is applied after the bias correction instead: a difference in the last bits, not in the work).

- TensorFlow: a `tf.function(jit_compile=jit)` around `GradientTape`, variables and data as tensors.
- JAX: `jax.value_and_grad` plus the Adam update, the whole step under `jax.jit` when jit is on
  (op-by-op eager dispatch when it is off, as Keras on JAX does with `jit_compile=False`).
- PyTorch: a plain `nn.Module` and `torch.optim.Adam`; jit on means `torch.compile` of the module.

The data is one seeded batch that already lives on the device, so each step times only the step.
`RawHarness.run_steps` returns the wall time of each step, taken after the step's result is back
on the host (loss to a Python float), as the Keras callback's timestamps are.

Everything runs in the cell's own process; the framework is imported inside the functions.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fitbench.data import synthetic_batch
from fitbench.model import ModelSpec, build_model

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras 3's Adam defaults (and the seed's Adam(0.01))


def initial_weights(spec: ModelSpec, seed: int) -> list[np.ndarray]:
    """[kernel, bias, kernel, bias, ...] exactly as the Keras model starts from `set_random_seed(seed)`."""
    return [np.asarray(w, np.float32) for w in build_model("sequential", spec, seed=seed).get_weights()]


def _activation(name: str, module: Any) -> Any:
    if name == "sigmoid":
        return module.sigmoid
    if name == "relu":
        return module.relu if hasattr(module, "relu") else (lambda h: module.maximum(h, 0))
    if name == "linear":
        return lambda h: h
    raise ValueError(f"the raw step knows sigmoid, relu and linear activations, not {name!r}")


class _TensorFlowStep:
    def __init__(self, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: ModelSpec, jit: bool) -> None:
        import tensorflow as tf

        act = _activation(spec.activation, tf.math)
        self.vars = [tf.Variable(w) for w in weights]
        self.m = [tf.Variable(tf.zeros_like(w)) for w in weights]
        self.v = [tf.Variable(tf.zeros_like(w)) for w in weights]
        self.t = tf.Variable(0.0, dtype=tf.float32)
        self.x, self.y = tf.constant(x), tf.constant(y)
        lr = float(spec.learning_rate)
        params, m_slots, v_slots, t = self.vars, self.m, self.v, self.t

        @tf.function(jit_compile=bool(jit))
        def step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                h = x
                for kernel, bias in zip(params[0::2], params[1::2]):
                    h = act(tf.matmul(h, kernel) + bias)
                loss = tf.reduce_mean(tf.square(h - y))
            grads = tape.gradient(loss, params)
            t.assign_add(1.0)
            alpha = lr * tf.sqrt(1.0 - tf.pow(BETA_2, t)) / (1.0 - tf.pow(BETA_1, t))
            for p, g, m, v in zip(params, grads, m_slots, v_slots):
                m.assign_add((g - m) * (1.0 - BETA_1))
                v.assign_add((tf.square(g) - v) * (1.0 - BETA_2))
                p.assign_sub(alpha * m / (tf.sqrt(v) + EPSILON))
            return loss

        self.step = step

    def __call__(self) -> float:
        return float(self.step(self.x, self.y).numpy())

    def weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.vars]

    def device(self) -> str:
        return self.vars[0].device


class _JaxStep:
    def __init__(self, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: ModelSpec, jit: bool) -> None:
        import jax
        import jax.numpy as jnp

        self.jax = jax
        act = _activation(spec.activation, jax.nn)
        lr = float(spec.learning_rate)
        device = jax.devices()[0]
        self.params = [jax.device_put(w, device) for w in weights]
        self.m = [jnp.zeros_like(p) for p in self.params]
        self.v = [jnp.zeros_like(p) for p in self.params]
        self.t = jnp.zeros((), jnp.float32)
        self.x, self.y = jax.device_put(x, device), jax.device_put(y, device)

        def loss_fn(params: list[Any], x: Any, y: Any) -> Any:
            h = x
            for kernel, bias in zip(params[0::2], params[1::2]):
                h = act(h @ kernel + bias)
            return jnp.mean(jnp.square(h - y))

        def step(params: list[Any], m: list[Any], v: list[Any], t: Any, x: Any, y: Any) -> Any:
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            t = t + 1.0
            alpha = lr * jnp.sqrt(1.0 - BETA_2 ** t) / (1.0 - BETA_1 ** t)
            m = [mi + (g - mi) * (1.0 - BETA_1) for mi, g in zip(m, grads)]
            v = [vi + (jnp.square(g) - vi) * (1.0 - BETA_2) for vi, g in zip(v, grads)]
            params = [p - alpha * mi / (jnp.sqrt(vi) + EPSILON) for p, mi, vi in zip(params, m, v)]
            return params, m, v, t, loss

        self.step = jax.jit(step, donate_argnums=(0, 1, 2)) if jit else step

    def __call__(self) -> float:
        self.params, self.m, self.v, self.t, loss = self.step(self.params, self.m, self.v, self.t, self.x, self.y)
        self.jax.block_until_ready(self.params)
        return float(loss)

    def weights(self) -> list[np.ndarray]:
        return [np.asarray(p) for p in self.params]

    def device(self) -> str:
        return str(next(iter(self.params[0].devices())))


class _TorchStep:
    def __init__(self, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: ModelSpec, jit: bool,
                 device: str = "cpu") -> None:
        import torch

        self.torch = torch
        act = _activation(spec.activation, torch)
        dev = torch.device("cuda:0" if device == "gpu" else "cpu")

        class DenseStack(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                # Keras's layout: kernel (fan_in, fan_out), y = act(x @ kernel + bias)
                self.params = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(w)) for w in weights])

            def forward(self, h: Any) -> Any:
                for kernel, bias in zip(self.params[0::2], self.params[1::2]):
                    h = act(h @ kernel + bias)
                return h

        self.module = DenseStack().to(dev)
        self.forward = torch.compile(self.module) if jit else self.module
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=float(spec.learning_rate),
                                          betas=(BETA_1, BETA_2), eps=EPSILON)
        self.x, self.y = torch.tensor(x, device=dev), torch.tensor(y, device=dev)

    def __call__(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.torch.mean(self.torch.square(self.forward(self.x) - self.y))
        loss.backward()
        self.optimizer.step()
        return float(loss.item())

    def weights(self) -> list[np.ndarray]:
        return [p.detach().cpu().numpy() for p in self.module.parameters()]

    def device(self) -> str:
        return str(next(self.module.parameters()).device)


RAW_IDIOMS = {
    "tensorflow": "tf.function(jit_compile) + GradientTape + Adam update",
    "jax": "jax.jit(value_and_grad + Adam update)",
    "torch": "nn.Module + torch.optim.Adam (torch.compile when jit is on)",
}


class RawHarness:
    """The raw training step of the seed network on `backend`, ready for timed steps."""

    def __init__(self, backend: str, jit: bool, batch_size: int, spec: ModelSpec = ModelSpec(), seed: int = 0,
                 device: str = "cpu") -> None:
        self.backend, self.jit, self.batch_size, self.spec = backend, bool(jit), batch_size, spec
        weights = initial_weights(spec, seed)
        x, y = synthetic_batch(spec, batch_size, seed)
        if backend == "tensorflow":
            self._step: Any = _TensorFlowStep(weights, x, y, spec, jit)
        elif backend == "jax":
            self._step = _JaxStep(weights, x, y, spec, jit)
        elif backend == "torch":
            self._step = _TorchStep(weights, x, y, spec, jit, device)
        else:
            raise ValueError(f"no raw step for backend {backend!r}")
        self.idiom = RAW_IDIOMS[backend]
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
