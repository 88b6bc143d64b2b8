"""Beyond one device: Keras' data parallelism (`keras.distribution.DataParallel`) as fitbench's devices axis.

One process, N devices: the global batch is split over a one-axis mesh ("batch"), the weights replicated, the
gradients reduced by XLA. On a CPU the devices are simulated (`JAX_NUM_CPU_DEVICES=N`, what Keras' own CI uses
for its multi-device tests): they share the machine's cores, so a speed-up measured on them says nothing about
real devices — what they do measure is the cost of the distribution machinery itself, and whether training
stays bit-identical when the device count changes.

The engine: Keras 3's `keras.distribution` runs on JAX (XLA SPMD). Its TensorFlow side is in development and
this Keras has none for PyTorch (`keras/src/backend/torch` has no `distribution_lib`): those backends, and
tf-keras, are refused with one line. Parent side (`device_env`, `check_device_counts`) imports no framework;
`use_data_parallel` runs in the child before its model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from fitbench import backends
from fitbench.errors import UsageError

ENGINE_BACKENDS = tuple(name for name in backends.NAMES if backends.get(name).SUPPORTS_DISTRIBUTION)
MAX_SIMULATED_DEVICES = 64  # XLA makes any number; more than this is a typo, not an experiment


def parse_device_counts(text: str | None) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; UsageError for anything else."""
    counts = []
    for part in (text or "1").split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise UsageError(f"--devices takes device counts like 1,2,4; got {text!r}")
        counts.append(int(part))
    return list(dict.fromkeys(counts))


def check_device_counts(counts: Iterable[int], stacks: Iterable[str], batch_sizes: Iterable[int],
                        device: str = "cpu") -> None:
    """Bad input in one line, before any process starts: a backend without Keras' distribution engine, tf-keras,
    more simulated devices than MAX_SIMULATED_DEVICES, a batch that does not split evenly."""
    counts = list(counts)
    if max(counts, default=1) <= 1:
        return
    for stack in stacks:
        if backends.get(stack).KERAS_MAJOR == 2:
            raise UsageError("--devices above 1 uses keras.distribution, which Keras 2 (tf-keras) does not have")
        if stack not in ENGINE_BACKENDS:
            raise UsageError(f"--devices above 1 uses keras.distribution's DataParallel, which this Keras runs on "
                             f"{', '.join(ENGINE_BACKENDS)} only, not on {stack}")
    too_many = [n for n in counts if n > MAX_SIMULATED_DEVICES]
    if too_many and device == "cpu":
        raise UsageError(f"--devices {too_many[0]}: at most {MAX_SIMULATED_DEVICES} simulated CPU devices")
    for b in batch_sizes:
        for n in counts:
            if b % n:
                raise UsageError(f"batch {b} does not split over {n} devices (DataParallel shards the batch evenly)")


def device_env(backend: str, device: str, count: int) -> dict[str, str]:
    """What a child with `count` devices needs before its framework starts (JAX's simulated CPU devices)."""
    return backends.get(backend).simulated_devices_env(device, count)


def use_data_parallel(count: int, device: str = "cpu", auto_shard: bool = True) -> dict[str, Any]:
    """In the child, before the model is built: a DataParallel distribution over the first `count` devices of
    the kind asked (every host's, after `join_hosts`); RuntimeError when there are fewer (more devices asked than
    exist). `auto_shard=False`: each host feeds its own rows of every global batch (`host_rows`)."""
    import keras

    found = keras.distribution.list_devices(device)
    if len(found) < count:
        raise RuntimeError(f"--devices {count}: Keras sees {len(found)} {device} device(s) in this process")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=found[:count],
                                                                        auto_shard_dataset=auto_shard))
    return {"device_count": count, "mesh_devices": [str(d) for d in found[:count]]}


@dataclass(frozen=True)
class Host:
    """One of several local processes standing in for a cluster's hosts (jax.distributed over gloo)."""

    index: int
    count: int
    coordinator: str  # "127.0.0.1:PORT"


def join_hosts(host: dict[str, Any]) -> None:
    """In the child, before JAX computes anything: join the other processes (the coordinator is host 0), with
    gloo for the CPU's collectives. What a cluster job calls first; here the hosts are local processes."""
    import jax

    h = Host(**host)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=h.coordinator, num_processes=h.count, process_id=h.index)


def host_rows(samples: int, batch_size: int, host: dict[str, Any]) -> Any:
    """The row indices this host feeds: its slice of every global batch, in order (host i of k takes rows
    [B·j + i·B/k, B·j + (i+1)·B/k) of batch j), so k hosts train on exactly the batches one process would."""
    import numpy as np

    h = Host(**host)
    local = batch_size // h.count
    return np.concatenate([np.arange(batch_size * j + local * h.index, batch_size * j + local * (h.index + 1))
                           for j in range(samples // batch_size)])


def local_weights(model: Any) -> list[Any]:
    """The model's weights as arrays, from this process's own copy: with several hosts a replicated weight spans
    devices this process cannot read, and `get_weights()` would fail."""
    import numpy as np

    return [np.asarray(v.value.addressable_data(0)) for v in model.weights]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
