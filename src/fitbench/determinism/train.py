"""Child side of `fitbench determinism`: seed, switch the backend's determinism on, train, record.

Runs in a fresh process per run (fitbench.determinism.check starts it): TF op determinism is
process-global and cannot be turned off once on, and Keras picks its backend at import.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fitbench.determinism.compare import cosine_to_target, nudge_one_ulp, sha256_arrays
from fitbench.determinism.settings import DeterminismSettings
from fitbench.models.choice import SEED
from fitbench.models.seed import jit_effective
from fitbench.models.seed_data import seed_input, seed_target, synthetic_batch
from fitbench.models.workload import Workload, first_rows
from fitbench.stacks import keras_module


def enable_determinism(seed: int, intra_op_threads: int, inter_op_threads: int, op_determinism: bool | str,
                       backend: str = "tensorflow", keras_major: int = 3) -> dict[str, Any]:
    """Seed everything, fix the thread pools and switch the backend's determinism on (process-wide): the
    backend's own `prepare_training` (fitbench.backends), with its default switch when `op_determinism` is
    True, that switch when it is a name. keras_major=2 seeds tf-keras (Keras 2) instead of Keras 3."""
    from fitbench import backends
    from fitbench.determinism.switch import default_switch
    from fitbench.stacks import Stack

    stack = Stack(backend, keras_major).name
    switch = op_determinism if isinstance(op_determinism, str) else default_switch(stack) if op_determinism else None
    return backends.get(stack).prepare_training(seed, intra_op_threads, inter_op_threads, switch)


def _leaves(value: Any) -> list[Any]:
    """The arrays of a prediction structure in a fixed order (dict keys sorted, as keras.tree does)."""
    if isinstance(value, dict):
        return [leaf for key in sorted(value) for leaf in _leaves(value[key])]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def flat_predictions(predictions: Any) -> np.ndarray:
    """One float32 vector of a model's predictions, whatever its outputs (one array, a list, a dict), from
    Keras 3 or tf-keras alike."""
    return np.concatenate([np.asarray(p, np.float32).reshape(-1) for p in _leaves(predictions)])


def predict_rows(model: Any, x: Any, device_count: int = 1, several_hosts: bool = False) -> Any:
    """model.predict(x); on N devices (this process's, `device_count`) the rows are repeated N times
    (DataParallel splits a batch evenly) and the first copy's predictions kept. With several hosts the output
    is a global array: this process reads its own shard, which holds its rows."""
    if device_count == 1 and not several_hosts:
        return model.predict(x, verbose=0)
    import keras

    repeated = keras.tree.map_structure(lambda a: np.repeat(np.asarray(a), device_count, axis=0), x)
    rows = len(keras.tree.flatten(x)[0])

    if not several_hosts:
        return keras.tree.map_structure(lambda p: np.asarray(p)[:rows], model.predict(repeated, verbose=0))
    # predict() would read the global output whole, which no host can: the batch is made a global array from
    # each host's rows, the forward pass compiled as predict's is, and each host reads its own shard
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    sharding = NamedSharding(keras.distribution.distribution().device_mesh.backend_mesh, PartitionSpec("batch"))
    global_x = keras.tree.map_structure(lambda a: jax.make_array_from_process_local_data(sharding, a), repeated)
    out = jax.jit(lambda batch: model(batch, training=False))(global_x)
    return keras.tree.map_structure(lambda p: np.asarray(p.addressable_data(0))[:rows], out)


def train_trajectories(settings: dict[str, Any], weights_dir: str, run_name: str, device_count: int = 1,
                       host: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train each API from `set_random_seed(seed)` with its own fresh optimizer; record every epoch.

    `settings` is a DeterminismSettings as a dict (it crosses the process boundary as JSON); `device_count` > 1
    trains data-parallel over that many devices (fitbench.measure.distributed), over every host's when `host`
    (a distributed.Host as a dict) makes this process one of several."""
    from fitbench.measure import distributed
    from fitbench.processes import runtime

    if host:  # first: JAX must not have picked its devices yet
        distributed.join_hosts(host)
    st = DeterminismSettings.from_dict(settings)
    model_spec, seed, device, backend, jit = st.spec, st.seed, st.device, st.backend, st.jit
    setup = enable_determinism(seed, st.intra_op_threads, st.inter_op_threads, st.op_determinism, backend,
                               st.keras_major)
    if device_count > 1:  # before any model is built: its variables are laid out on the mesh
        setup.update(distributed.use_data_parallel(device_count, device, auto_shard=host is None))
    setup["device_count"], setup["host"] = device_count, host
    weights_of = distributed.local_weights if host else (lambda m: m.get_weights())
    workload = Workload(st.model, seed, spec=model_spec,
                        keras_module=keras_module(2) if st.keras_major == 2 else None)
    target = None
    if workload.kind == SEED:
        x_eval, target = seed_input(seed, model_spec.input_dim), seed_target()
        if st.samples == 1:
            x_train, y_train = x_eval, target  # the seed question's own data
        else:
            x_train, y_train = synthetic_batch(model_spec, st.samples, seed)
    out: dict[str, Any] = {**setup, **runtime.process_facts(device, backend, st.keras_major), "device": device,
                           "run": run_name,
                           "apis": {}}
    if device == "gpu" and not out["device_name"]:
        raise RuntimeError(f"no GPU visible to {backend} in this process")
    for api in st.apis:
        model = workload.build(api)
        if api == st.nudge_api:
            model.set_weights(nudge_one_ulp(model.get_weights()))
        workload.compile(model, jit)
        if workload.kind != SEED and api == st.apis[0]:  # any other model: its own data, evaluated on 1 row
            x_train, y_train = workload.batch(model, st.samples)
            x_eval = first_rows(x_train, 1)

        def snapshot(epoch: int, model: Any = model, x_eval: Any = x_eval) -> dict[str, Any]:
            local_devices = device_count // (host or {}).get("count", 1)
            predictions = flat_predictions(predict_rows(model, x_eval, local_devices, several_hosts=bool(host)))
            return {"epoch": epoch, "weights_sha256": sha256_arrays(weights_of(model)),
                    "predictions_sha256": sha256_arrays([predictions]),
                    "predictions": predictions.reshape(-1).tolist()}

        trajectory = [snapshot(0)]
        weights_paths = {"initial": os.path.join(weights_dir, f"{run_name}-{api}-initial.npz"),
                         "final": os.path.join(weights_dir, f"{run_name}-{api}-final.npz")}
        np.savez(weights_paths["initial"], *weights_of(model))
        x_fit, y_fit, batch = x_train, y_train, st.batch_size
        if host:  # this host's rows of every global batch, as a cluster's input pipeline would shard them
            rows = distributed.host_rows(st.samples, st.batch_size, host)
            x_fit, y_fit, batch = x_train[rows], y_train[rows], st.batch_size // host["count"]
        for epoch in range(1, st.epochs + 1):
            model.fit(x_fit, y_fit, batch_size=batch, epochs=1, shuffle=False, verbose=0)
            trajectory.append(snapshot(epoch))
        np.savez(weights_paths["final"], *weights_of(model))
        where = runtime.variable_device(model)
        if not runtime.on_device(where, device):
            raise RuntimeError(f"{api}'s variables live on {where!r}, not on the {device}")
        out["apis"][api] = {
            "jit_requested": bool(jit), "jit_effective": jit_effective(model), "variable_device": where,
            "epochs": trajectory, "weights_paths": weights_paths,
            "cosine_to_target": (cosine_to_target(trajectory[-1]["predictions"], target)
                                 if target is not None else None),
        }
    return out

