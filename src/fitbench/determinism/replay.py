"""The seed question replayed: one optimizer shared by two models vs one fresh optimizer each.

Both models start from the same weights (set_random_seed before each build), so what differs between
the two modes is only the optimizer. Keras 3 refuses a shared optimizer (`Unknown variable`); the legacy
Keras 2 optimizer (tf-keras, TF_USE_LEGACY_KERAS=1) accepts it and diverges silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fitbench import __version__
from fitbench.adapters import tf_keras
from fitbench.data import seed_input, seed_target
from fitbench.determinism.compare import cosine_to_target
from fitbench.determinism.train import enable_determinism
from fitbench.model import ModelSpec, build_model, compile_model, jit_effective, make_optimizer
from fitbench.report.io import utc_stamp

SCHEMA_VERSION = 1  # of the replay document
KERAS3 = "keras3"
LEGACY = "tf_keras_legacy"


def replay(epochs: int, shared: bool, keras_flavour: str, seed: int = 0) -> dict[str, Any]:
    """Train the Functional model, then the Sequential one, as the seed did. Runs in a fresh process."""
    enable_determinism(seed, intra_op_threads=2, inter_op_threads=1, op_determinism=True)
    if keras_flavour == LEGACY:
        keras_module = tf_keras.keras2()
        optimizer_name = tf_keras.OPTIMIZER_NAME
    else:
        import keras as keras_module

        optimizer_name = "keras.optimizers.Adam"
    legacy = keras_flavour == LEGACY
    spec = ModelSpec()
    x, y = seed_input(seed, spec.input_dim), seed_target()
    functional = build_model("functional", spec, seed=seed, keras_module=keras_module)
    sequential = build_model("sequential", spec, seed=seed, keras_module=keras_module)
    initial_identical = all(np.array_equal(a, b) for a, b in zip(functional.get_weights(), sequential.get_weights()))
    first_optimizer = make_optimizer(spec, keras_module, legacy=legacy)
    second_optimizer = first_optimizer if shared else make_optimizer(spec, keras_module, legacy=legacy)
    result: dict[str, Any] = {"keras": keras_flavour, "keras_version": keras_module.__version__,
                              "optimizer": optimizer_name, "optimizer_shared": shared, "epochs": epochs,
                              "initial_weights_identical": initial_identical}
    predictions = {}
    for name, model, optimizer in (("functional", functional, first_optimizer),
                                   ("sequential", sequential, second_optimizer)):
        if legacy:
            model.compile(loss="mse", optimizer=optimizer)
        else:
            compile_model(model, False, spec, optimizer=optimizer)
        try:
            model.fit(x, y, validation_data=(x, y), epochs=epochs, verbose=0)
        except ValueError as exc:  # Keras 3's protection against a shared optimizer
            first_line = str(exc).strip().splitlines()[0]
            return {**result, "status": "error", "error": f"ValueError: {first_line}"[:300],
                    "failed_model": name, "cosine_functional": None, "cosine_sequential": None, "identical": None}
        predictions[name] = np.asarray(model.predict(x, verbose=0), np.float32)
        result[f"jit_effective_{name}"] = (jit_effective(model) if not legacy
                                           else bool(getattr(model, "_jit_compile", False)))
    return {**result, "status": "ok",
            "cosine_functional": cosine_to_target(predictions["functional"], y),
            "cosine_sequential": cosine_to_target(predictions["sequential"], y),
            "identical": bool(np.array_equal(predictions["functional"], predictions["sequential"]))}


def replay_question(epochs: int = 200, seed: int = 0, timeout_s: float | None = None) -> dict[str, Any]:
    """Run the four replays, each in its own process, and summarise them as `shared` and `fresh`."""
    from fitbench.isolation import IsolatedError, process_env, run_isolated
    from fitbench.stacks import Stack

    flavours = [KERAS3] + ([LEGACY] if tf_keras.available() else [])
    runs = []
    for flavour in flavours:
        env = process_env(Stack("tensorflow", 2 if flavour == LEGACY else 3), "cpu")
        for shared in (True, False):
            try:
                runs.append(run_isolated(replay,
                                         {"epochs": epochs, "shared": shared, "keras_flavour": flavour, "seed": seed},
                                         env=env, timeout_s=timeout_s))
            except IsolatedError as exc:
                runs.append({"keras": flavour, "optimizer_shared": shared, "status": "error", "error": str(exc),
                             "cosine_functional": None, "cosine_sequential": None, "identical": None})
    return {**summarise(runs, epochs, legacy_missing=LEGACY not in flavours), "fitbench_version": __version__,
            "finished": utc_stamp()}


def replay_succeeded(doc: dict[str, Any]) -> bool:
    """Every replay ran, except Keras 3's shared optimizer, which is meant to fail (its protection)."""
    return all(r["status"] == "ok" or r["keras"] == KERAS3 and r["optimizer_shared"] for r in doc["runs"])


def summarise(runs: list[dict[str, Any]], epochs: int, legacy_missing: bool) -> dict[str, Any]:
    """`shared`: the run that can show the divergence (legacy when there); `fresh`: Keras 3."""
    def pick(shared: bool, flavour: str) -> dict[str, Any] | None:
        return next((r for r in runs if r["optimizer_shared"] == shared and r["keras"] == flavour), None)

    keras3_shared = pick(True, KERAS3)
    shared = pick(True, LEGACY) or keras3_shared
    fresh = pick(False, KERAS3)
    keep = ("keras", "optimizer", "status", "cosine_functional", "cosine_sequential", "identical", "error")
    return {
        "command": "replay",
        "schema_version": SCHEMA_VERSION,
        "epochs": epochs,
        "shared": {**{k: shared.get(k) for k in keep if k in shared},
                   "keras3_outcome": keras3_shared.get("error") if keras3_shared["status"] == "error" else "accepted"},
        "fresh": {k: fresh.get(k) for k in keep if k in fresh},
        "legacy_fresh": {k: v for k, v in (pick(False, LEGACY) or {}).items() if k in keep} or None,
        "legacy_note": "tf-keras is not installed: pip install 'fitbench[legacy]' to replay the silent divergence"
        if legacy_missing else None,
        "runs": runs,
    }
