"""The seed question replayed: one optimizer shared by two models vs one fresh optimizer each.

Both models start from the same weights (set_random_seed before each build), so what differs between
the two modes is only the optimizer. Keras 3 refuses a shared optimizer (`Unknown variable`); the legacy
Keras 2 optimizer (tf-keras, TF_USE_LEGACY_KERAS=1) accepts it and diverges silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fitbench import __version__
from fitbench.adapters import tf_keras
from fitbench.determinism.compare import cosine_to_target
from fitbench.determinism.train import enable_determinism
from fitbench.models.seed import ModelSpec, build_model, compile_model, jit_effective, make_optimizer
from fitbench.models.seed_data import seed_input, seed_target
from fitbench.report.document import Document
from fitbench.report.io import utc_stamp

SCHEMA_VERSION = 2  # of the replay document (2: typed; runs carry every field, null where not measured)
KERAS3 = "keras3"
LEGACY = "tf_keras_legacy"


@dataclass
class ReplayRun:
    """One replay process: two models trained one after the other, with a shared or a fresh optimizer."""

    keras: str = field(metadata={"doc": f"{KERAS3!r} or {LEGACY!r} (tf-keras, TF_USE_LEGACY_KERAS=1)"})
    optimizer_shared: bool
    status: str = field(metadata={"doc": "ok or error"})
    keras_version: str | None = None
    optimizer: str | None = None
    epochs: int | None = None
    initial_weights_identical: bool | None = None
    cosine_functional: float | None = None
    cosine_sequential: float | None = None
    identical: bool | None = field(default=None, metadata={"doc": "the two models' predictions bit-identical"})
    jit_effective_functional: bool | None = None
    jit_effective_sequential: bool | None = None
    failed_model: str | None = field(default=None, metadata={"doc": "the model whose fit raised"})
    error: str | None = None


@dataclass
class ReplayOutcome:
    """One mode's answer, taken from one of the runs."""

    keras: str
    optimizer: str | None
    status: str
    cosine_functional: float | None
    cosine_sequential: float | None
    identical: bool | None
    error: str | None


@dataclass
class ReplayDocument(Document):
    """What `fitbench replay --json` writes (fitbench/schemas/replay.schema.json, built from this)."""

    epochs: int
    shared: ReplayOutcome = field(metadata={"doc": "the run that can show the divergence (legacy Keras 2 when "
                                                   "installed, else Keras 3)"})
    keras3_shared_outcome: str = field(metadata={"doc": "Keras 3 with one shared optimizer: its error, or "
                                                        "'accepted'"})
    fresh: ReplayOutcome = field(metadata={"doc": "Keras 3 with one fresh optimizer per model"})
    legacy_fresh: ReplayOutcome | None
    legacy_note: str | None
    runs: list[ReplayRun]
    fitbench_version: str
    finished: str
    command: str = "replay"
    schema_version: int = SCHEMA_VERSION


    @property
    def succeeded(self) -> bool:
        """Every replay ran, except Keras 3's shared optimizer, which is meant to fail (its protection)."""
        return all(r.status == "ok" or r.keras == KERAS3 and r.optimizer_shared for r in self.runs)


def replay(epochs: int, shared: bool, keras_flavour: str, seed: int = 0) -> dict[str, Any]:
    """Train the Functional model, then the Sequential one, as the seed did. Runs in a fresh process; returns
    a ReplayRun's fields (a plain dict crosses the process)."""
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


def replay_question(epochs: int = 200, seed: int = 0, timeout_s: float | None = None) -> ReplayDocument:
    """Run the four replays, each in its own process, and summarise them as `shared` and `fresh`."""
    from fitbench.processes.isolation import IsolatedError, process_env, run_isolated
    from fitbench.stacks import Stack

    flavours = [KERAS3] + ([LEGACY] if tf_keras.available() else [])
    runs: list[ReplayRun] = []
    for flavour in flavours:
        env = process_env(Stack("tensorflow", 2 if flavour == LEGACY else 3), "cpu")
        for shared in (True, False):
            try:
                runs.append(ReplayRun(**run_isolated(
                    replay, {"epochs": epochs, "shared": shared, "keras_flavour": flavour, "seed": seed},
                    env=env, timeout_s=timeout_s)))
            except IsolatedError as exc:
                runs.append(ReplayRun(keras=flavour, optimizer_shared=shared, status="error", error=str(exc)))
    return summarise(runs, epochs, legacy_missing=LEGACY not in flavours)


def summarise(runs: list[ReplayRun], epochs: int, legacy_missing: bool) -> ReplayDocument:
    """`shared`: the run that can show the divergence (legacy when there); `fresh`: Keras 3."""
    def pick(shared: bool, flavour: str) -> ReplayRun | None:
        return next((r for r in runs if r.optimizer_shared == shared and r.keras == flavour), None)

    def outcome(run: ReplayRun) -> ReplayOutcome:
        return ReplayOutcome(keras=run.keras, optimizer=run.optimizer, status=run.status,
                             cosine_functional=run.cosine_functional, cosine_sequential=run.cosine_sequential,
                             identical=run.identical, error=run.error)

    keras3_shared, fresh = pick(True, KERAS3), pick(False, KERAS3)
    if keras3_shared is None or fresh is None:
        raise ValueError("the replay needs Keras 3's shared and fresh runs")
    legacy_fresh = pick(False, LEGACY)
    return ReplayDocument(
        epochs=epochs,
        shared=outcome(pick(True, LEGACY) or keras3_shared),
        keras3_shared_outcome=(keras3_shared.error or "error") if keras3_shared.status == "error" else "accepted",
        fresh=outcome(fresh),
        legacy_fresh=outcome(legacy_fresh) if legacy_fresh else None,
        legacy_note="tf-keras is not installed: pip install 'fitbench[legacy]' to replay the silent divergence"
        if legacy_missing else None,
        runs=runs, fitbench_version=__version__, finished=utc_stamp())
