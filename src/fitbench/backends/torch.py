"""Keras 3 on PyTorch: what it can do, and its code (PyTorch imported inside the functions)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fitbench.backends import Switch
from fitbench.backends.common import (
    BETA_1,
    BETA_2,
    EPSILON,
    activation,
    is_float,
    keep_freed_heap,
    projection,
    set_thread_env,
)
from fitbench.backends.common import thread_env as _thread_env

NAME = "torch"
FRAMEWORK = "torch"
KERAS_MAJOR = 3
# cuBLAS needs a fixed workspace to be deterministic; torch raises without it on a GPU
SWITCHES = (
    Switch("deterministic-algorithms", "torch", "torch.use_deterministic_algorithms(True), "
           "CUBLAS_WORKSPACE_CONFIG=:4096:8", {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}),
    Switch("warn-only", "torch", "torch.use_deterministic_algorithms(True, warn_only=True), "
           "CUBLAS_WORKSPACE_CONFIG=:4096:8", {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}),
)
SWITCH_TURNS_OFF_XLA = False
SUPPORTS_DISTRIBUTION = False  # keras/src/backend/torch has no distribution_lib (Keras 3.15)
MODEL_KINDS = ("seed", "zoo", "factory", "file")  # what --model can name on this row
SUPPORTS_STEPS_PER_EXECUTION = False  # Keras on PyTorch raises ValueError for more than 1
SUPPORTS_LAYER_JIT = False  # torch.compile is per model, not per layer step
DEFAULT_JIT = False  # jit_compile="auto": eager (torch.compile is opt-in)
FEED = "python generator"
RAW_IDIOM = "nn.Module + torch.optim.Adam (torch.compile when jit is on)"
WARM_IMPORTS = ("torch", "keras")  # imported once by the template its cells fork from (processes.forked)
STEP_TRACES = "graphs torch.compile compiled (Dynamo; a recompile is one more, a graph break splits one in two)"
PERSISTENT_CACHE = "Inductor's on-disk caches of torch.compile (TORCHINDUCTOR_CACHE_DIR), jit on"


def child_env() -> dict[str, str]:
    return {"KERAS_BACKEND": "torch"}


def thread_env(threads: int | None) -> dict[str, str]:
    return _thread_env(threads)


def apply_threads(threads: int | None) -> None:
    """The environment, and PyTorch's in-process setting (OMP_NUM_THREADS alone leaves the inter-op pool at
    its default)."""
    if threads is None:
        return
    set_thread_env(threads)
    import torch

    torch.set_num_threads(int(threads))
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only possible before the first parallel op; then keep what is there
            pass


def thread_settings() -> dict[str, int]:
    import torch

    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}


def simulated_devices_env(device: str, count: int) -> dict[str, str]:
    return {}


def turn_on(switch: str) -> None:
    import torch

    torch.use_deterministic_algorithms(True, warn_only=switch == "warn-only")


def in_force(switch: str | None) -> bool:
    import torch

    return bool(torch.are_deterministic_algorithms_enabled())


def seed(value: int) -> None:
    from fitbench.models.seed import seed_keras

    seed_keras(value)


def prepare_training(seed_value: int, intra_op: int, inter_op: int, switch: str | None) -> dict[str, Any]:
    """Pools fixed, everything seeded, the switch on when given; what is in force."""
    import torch

    torch.set_num_threads(intra_op)
    torch.set_num_interop_threads(inter_op)
    seed(seed_value)
    if switch:
        turn_on(switch)
    return {"threads": thread_settings(), "op_determinism": in_force(switch)}


def gpu_names() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []


def flush_subnormals() -> None:
    """Subnormal floats to zero, as XLA does on the other backends: PyTorch computes them at full cost, and the
    seed network trained on one batch makes its gradients subnormal within a few dozen steps (docs/noise.md)."""
    import torch

    torch.set_flush_denormal(True)


def keep_freed_memory() -> bool:
    """glibc keeps freed memory for the next step (fitbench.backends.common.keep_freed_heap): PyTorch's CPU
    tensors come from malloc, and with glibc's defaults each step's large ones were mapped afresh, the kernel's
    page faults a large part of the seed network's step (docs/noise.md). Before the first tensor."""
    return keep_freed_heap()


class RawStep:
    """The seed network's step in PyTorch's idiom: a plain `nn.Module` and `torch.optim.Adam`; jit on means
    `torch.compile` of the module (whose epsilon is applied after the bias correction: a difference in the
    last bits, not in the work)."""

    def __init__(self, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: Any, jit: bool,
                 device: str = "cpu") -> None:
        import torch

        self.torch = torch
        act = activation(spec.activation, torch)
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


def raw_step(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, spec: Any, jit: bool,
             device: str = "cpu") -> RawStep:
    return RawStep(weights, x, y, spec, jit, device)


def ctl_step(model: Any, loss_fn: Any, optimizer: Any, x: Any, y: Any, jit: bool) -> dict[str, Any]:
    """The custom training loop the Keras guide teaches on PyTorch: the model's forward, loss.backward(), the
    Keras optimizer applied to the parameters' grads."""
    import keras
    import torch

    device = next((v.value.device for v in model.trainable_variables), torch.device("cpu"))
    x, y = keras.tree.map_structure(lambda a: torch.as_tensor(np.asarray(a), device=device), (x, y))
    optimizer.build(model.trainable_variables)
    forward = torch.compile(model) if jit else model

    def step() -> float:
        loss = loss_fn(y, forward(x, training=True))
        loss.backward()
        variables = model.trainable_variables
        with torch.no_grad():
            optimizer.apply([v.value.grad for v in variables], variables)
        model.zero_grad()
        return float(loss.item())

    return {"step": step, "flops": None, "flops_source": None,
            "idiom": "forward, loss.backward(), Keras optimizer on the grads" + (" (torch.compile)" if jit else "")}


def matmul(a_host: np.ndarray, b_host: np.ndarray, device: str) -> Any:
    import torch

    dev = torch.device("cuda:0" if device == "gpu" else "cpu")
    a, b = torch.tensor(a_host, device=dev), torch.tensor(b_host, device=dev)
    return lambda: float(torch.sum(a @ b).item())


def layer_step(layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], seed_value: int, jit: bool
               ) -> tuple[list[Any], list[Any]]:
    """A layer's training step alone, eager (`jit` is not asked of PyTorch: SUPPORTS_LAYER_JIT)."""
    import keras
    import torch

    call_args = [a.detach().clone().requires_grad_(True) if is_float(a) else a for a in args]
    for v in layer.trainable_variables:
        v.value.grad = None
    outputs = [o for o in keras.tree.flatten(layer(*call_args, **kwargs)) if is_float(o)]
    grads: list[Any] = []
    if outputs:
        loss = sum((o.float() * torch.from_numpy(p).to(o.device)).sum()
                   for o, p in zip(outputs, projection(outputs, seed_value)))
        if loss.requires_grad:
            loss.backward()
            grads = [v.value.grad for v in layer.trainable_variables if v.value.grad is not None]
            grads += [a.grad for a in call_args if hasattr(a, "grad") and a.grad is not None]
    return [o.detach() for o in outputs], grads


def apply_gradients(model: Any, optimizer: Any, grads: list[Any]) -> None:
    import torch

    with torch.no_grad():
        optimizer.apply(grads, model.trainable_variables)
    model.zero_grad()


class DynamoGraphs:
    """Graphs Dynamo compiles from now on (fitbench.adapters.torch_dynamo); None where torch has no counter."""

    def __init__(self) -> None:
        from fitbench.adapters.torch_dynamo import graphs_compiled

        self._read = graphs_compiled
        self._start = graphs_compiled()

    def stop(self) -> int | None:
        now = self._read()
        return None if now is None or self._start is None else now - self._start


def step_trace_counter(model: Any) -> Any:
    """What counts the compilations of `model`'s training step from now on: Dynamo's graphs when Keras
    wraps the step in torch.compile (jit on), none when it runs eagerly."""
    from fitbench.backends.common import NotTraced

    return DynamoGraphs() if model.jit_compile and not model.run_eagerly else NotTraced()


def persistent_cache_env(directory: str) -> dict[str, str]:
    """Inductor's caches in `directory`. Without it they live in /tmp/torchinductor_<user> and survive the
    process: a "first" compile is then warm from the second process on."""
    return {"TORCHINDUCTOR_CACHE_DIR": directory}


def step_prefixes(model: Any, loss_fn: Any, x: Any, y: Any, jit: bool) -> dict[str, Any]:
    """The training step cut after each of its parts, as Keras runs it on PyTorch (torch.compile of the model
    when jit is on) (fitbench.measure.breakdown): the forward pass (autograd recording, as in training);
    forward and loss; forward, loss and loss.backward() (the gradients zeroed after, as the step does)."""
    import keras
    import torch

    device = next((v.value.device for v in model.trainable_variables), torch.device("cpu"))
    x, y = keras.tree.map_structure(lambda a: torch.as_tensor(np.asarray(a), device=device), (x, y))
    forward_model = torch.compile(model) if jit else model

    def forward() -> float:
        return float(sum(p.sum() for p in keras.tree.flatten(forward_model(x, training=True))).item())

    def loss() -> float:
        return float(loss_fn(y, forward_model(x, training=True)).item())

    def gradients() -> float:
        value = loss_fn(y, forward_model(x, training=True))
        value.backward()
        model.zero_grad()
        return float(value.item())

    return {"forward": forward, "forward+loss": loss, "gradients": gradients}
