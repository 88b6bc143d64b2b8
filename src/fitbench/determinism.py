"""Is training bit-identical across the three APIs and across processes?

Two halves: `train_trajectories` runs inside a fresh process (op determinism is process-global) and
records, per API and epoch, SHA-256 of the weights and of the predictions; the pure functions below
compare two such trajectories bit for bit, in float32 ULPs and in absolute terms.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fitbench.data import seed_input, seed_target, synthetic_batch
from fitbench.model import ModelSpec, build_model, compile_model, jit_effective, seed_keras


# ---------- pure comparison ----------

def sha256_arrays(arrays: list[np.ndarray]) -> str:
    """Hash of the exact bytes (and shapes) of a list of arrays: equal hashes mean bit-identical."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _ordered_float32(a: np.ndarray) -> np.ndarray:
    """Map float32 bit patterns onto integers that are ordered like the floats (so -0.0 == +0.0)."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise distance in float32 units in the last place (0 means bit-identical up to the sign of 0)."""
    return np.abs(_ordered_float32(a) - _ordered_float32(b))


def max_ulp(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return int(max((int(ulp_distance(x, y).max(initial=0)) for x, y in zip(a, b)), default=0))


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(max((float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
                      for x, y in zip(a, b)), default=0.0))


@dataclass
class PairResult:
    a: str
    b: str
    scope: str  # "api": two APIs in one process; "run_to_run": one API in two processes
    identical: bool
    identical_initial_weights: bool
    identical_per_epoch: list[bool]
    first_divergent_epoch: int | None  # 0 = the initial weights differ; None = never
    max_ulp: int  # over the initial and final weights and the predictions of every epoch
    max_ulp_weights: int
    max_ulp_predictions: int
    max_abs_diff_predictions: float
    cosine_a: float
    cosine_b: float
    jit_effective_a: bool
    jit_effective_b: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_trajectories(name_a: str, a: dict[str, Any], name_b: str, b: dict[str, Any], scope: str) -> PairResult:
    """Compare two trajectories from `train_trajectories` (with their weights loaded)."""
    epochs_a, epochs_b = a["epochs"], b["epochs"]
    same = [ea["weights_sha256"] == eb["weights_sha256"] and ea["predictions_sha256"] == eb["predictions_sha256"]
            for ea, eb in zip(epochs_a, epochs_b)]
    if len(epochs_a) != len(epochs_b):
        same.append(False)
    first_divergent = next((i for i, s in enumerate(same) if not s), None)
    preds_a = [np.asarray(e["predictions"], np.float32) for e in epochs_a]
    preds_b = [np.asarray(e["predictions"], np.float32) for e in epochs_b]
    ulp_w = max(max_ulp(a["initial_weights"], b["initial_weights"]), max_ulp(a["final_weights"], b["final_weights"]))
    ulp_p = max_ulp(preds_a, preds_b)
    return PairResult(
        a=name_a, b=name_b, scope=scope,
        identical=first_divergent is None,
        identical_initial_weights=bool(same[0]) if same else False,
        identical_per_epoch=same,
        first_divergent_epoch=first_divergent,
        max_ulp=max(ulp_w, ulp_p), max_ulp_weights=ulp_w, max_ulp_predictions=ulp_p,
        max_abs_diff_predictions=max_abs_diff(preds_a, preds_b),
        cosine_a=a["cosine_to_target"], cosine_b=b["cosine_to_target"],
        jit_effective_a=a["jit_effective"], jit_effective_b=b["jit_effective"],
    )


def pairs_to_compare(apis: list[str], runs: list[str]) -> list[tuple[tuple[str, str], tuple[str, str], str]]:
    """Every API against every other in the first run, and every API against itself across runs."""
    first = runs[0]
    pairs = [((first, x), (first, y), "api") for x, y in itertools.combinations(apis, 2)]
    pairs += [((r1, api), (r2, api), "run_to_run") for api in apis for r1, r2 in itertools.combinations(runs, 2)]
    return pairs


def nudge_one_ulp(weights: list[np.ndarray]) -> list[np.ndarray]:
    """The same weights with the first kernel's first element moved up by one float32 ULP."""
    out = [np.array(w, copy=True) for w in weights]
    flat = out[0].reshape(-1)
    flat[0] = np.nextafter(flat[0], np.float32(np.inf), dtype=np.float32)
    return out


# ---------- the framework half (runs in a fresh process) ----------

# JAX has no process-wide switch: XLA's flag makes GPU reductions deterministic and must be in XLA_FLAGS
# before jax starts (the parent puts it in the child's environment). On the CPU it changes nothing.
JAX_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


def determinism_env(backend: str, op_determinism: bool) -> dict[str, str]:
    """Environment a determinism child needs before its framework is imported."""
    if not op_determinism:
        return {}
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        return {"XLA_FLAGS": f"{flags} {JAX_DETERMINISM_FLAG}".strip()}
    if backend == "torch":
        return {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # what torch's deterministic cuBLAS asks for on GPU
    return {}


def enable_determinism(seed: int, intra_op_threads: int, inter_op_threads: int, op_determinism: bool,
                       backend: str = "tensorflow") -> dict[str, Any]:
    """Seed everything, fix the thread pools and switch the backend's determinism on (process-wide).

    TensorFlow: `tf.config.experimental.enable_op_determinism()`, intra/inter-op pools as asked.
    PyTorch: `torch.use_deterministic_algorithms(True)`, `torch.set_num_threads(intra)` and interop as asked.
    JAX: XLA_FLAGS (see determinism_env); XLA's CPU thread pool has no setting, so it is left as it is."""
    import keras

    if backend == "torch":
        import torch

        torch.set_num_threads(intra_op_threads)
        torch.set_num_interop_threads(inter_op_threads)
        seed_keras(seed)
        torch.use_deterministic_algorithms(bool(op_determinism))
        return {"threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
                "op_determinism": bool(torch.are_deterministic_algorithms_enabled())}
    if backend == "jax":
        seed_keras(seed)
        return {"threads": {}, "op_determinism": JAX_DETERMINISM_FLAG in os.environ.get("XLA_FLAGS", ""),
                "xla_flags": os.environ.get("XLA_FLAGS", "")}
    import tensorflow as tf

    from fitbench.runtime import set_threads

    threads = set_threads(intra_op_threads, inter_op_threads)
    keras.utils.set_random_seed(seed)
    if op_determinism:
        tf.config.experimental.enable_op_determinism()
    return {"threads": threads, "op_determinism": _op_determinism_enabled()}


def _op_determinism_enabled() -> bool:
    from tensorflow.python.framework.config import is_op_determinism_enabled  # not in tf.config's public API

    return bool(is_op_determinism_enabled())


def cosine_to_target(predictions: np.ndarray, target: np.ndarray) -> float:
    from sklearn.metrics.pairwise import cosine_similarity  # as the seed question measured it

    return float(cosine_similarity(np.asarray(predictions, np.float64).reshape(1, -1),
                                   np.asarray(target, np.float64).reshape(1, -1))[0, 0])


def train_trajectories(apis: list[str], spec: dict[str, Any], epochs: int, jit: bool, seed: int, samples: int,
                       batch_size: int, intra_op_threads: int, inter_op_threads: int, op_determinism: bool,
                       weights_dir: str, run_name: str, nudge_api: str | None = None,
                       backend: str = "tensorflow", device: str = "cpu") -> dict[str, Any]:
    """Train each API from `set_random_seed(seed)` with its own fresh optimizer; record every epoch."""
    from fitbench import runtime

    model_spec = ModelSpec.from_dict(spec)
    setup = enable_determinism(seed, intra_op_threads, inter_op_threads, op_determinism, backend)
    x_eval, target = seed_input(seed, model_spec.input_dim), seed_target()
    if samples == 1:
        x_train, y_train = x_eval, target  # the seed question's own data
    else:
        x_train, y_train = synthetic_batch(model_spec, samples, seed)
    out: dict[str, Any] = {**setup, **runtime.process_facts(device, backend), "device": device, "run": run_name,
                           "apis": {}}
    if device == "gpu" and not out["device_name"]:
        raise RuntimeError(f"no GPU visible to {backend} in this process")
    for api in apis:
        model = build_model(api, model_spec, seed=seed)
        if api == nudge_api:
            model.set_weights(nudge_one_ulp(model.get_weights()))
        compile_model(model, jit, model_spec)

        def snapshot(epoch: int) -> dict[str, Any]:
            predictions = np.asarray(model.predict(x_eval, verbose=0), np.float32)
            return {"epoch": epoch, "weights_sha256": sha256_arrays(model.get_weights()),
                    "predictions_sha256": sha256_arrays([predictions]),
                    "predictions": predictions.reshape(-1).tolist()}

        trajectory = [snapshot(0)]
        weights_paths = {"initial": os.path.join(weights_dir, f"{run_name}-{api}-initial.npz"),
                         "final": os.path.join(weights_dir, f"{run_name}-{api}-final.npz")}
        np.savez(weights_paths["initial"], *model.get_weights())
        for epoch in range(1, epochs + 1):
            model.fit(x_train, y_train, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
            trajectory.append(snapshot(epoch))
        np.savez(weights_paths["final"], *model.get_weights())
        where = runtime.variable_device(model)
        if not runtime.on_device(where, device):
            raise RuntimeError(f"{api}'s variables live on {where!r}, not on the {device}")
        out["apis"][api] = {
            "jit_requested": bool(jit), "jit_effective": jit_effective(model), "variable_device": where,
            "epochs": trajectory, "weights_paths": weights_paths,
            "cosine_to_target": cosine_to_target(trajectory[-1]["predictions"], target),
        }
    return out


def _load_npz(path: str) -> list[np.ndarray]:
    with np.load(path) as npz:  # np.savez names positional arrays arr_0, arr_1, ...
        return [npz[k] for k in sorted(npz.files, key=lambda k: int(k.split("_")[1]))]


def load_weights(api_run: dict[str, Any]) -> dict[str, Any]:
    """The API's run with its saved initial and final weights read back from disk."""
    return {**api_run, **{f"{when}_weights": _load_npz(path) for when, path in api_run["weights_paths"].items()}}


# ---------- the orchestrating half (parent process, no framework imported) ----------

def check_determinism(apis: list[str], spec: ModelSpec = ModelSpec(), epochs: int = 3, jit: bool = False,
                      seed: int = 0, samples: int = 1, batch_size: int = 1, intra_op_threads: int = 2,
                      inter_op_threads: int = 1, op_determinism: bool = True, nudge_api: str | None = None,
                      runs: int = 2, timeout_s: float | None = None, backend: str = "tensorflow",
                      device: str = "cpu") -> dict[str, Any]:
    """Train every API in `runs` separate processes and compare all pairs; returns the JSON document."""
    import tempfile

    from fitbench.isolation import child_env, run_isolated
    from fitbench.runtime import hide_gpus_env

    run_names = [f"run{i + 1}" for i in range(runs)]
    with tempfile.TemporaryDirectory(prefix="fitbench-det-") as weights_dir:
        results = {}
        for run_name in run_names:
            results[run_name] = run_isolated(
                "fitbench.determinism:train_trajectories",
                dict(apis=apis, spec=spec.to_dict(), epochs=epochs, jit=jit, seed=seed, samples=samples,
                     batch_size=batch_size, intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads,
                     op_determinism=op_determinism, weights_dir=weights_dir, run_name=run_name, nudge_api=nudge_api,
                     backend=backend, device=device),
                env=child_env({**hide_gpus_env(device), **determinism_env(backend, op_determinism)}, backend),
                timeout_s=timeout_s)
        loaded = {r: {api: load_weights(v) for api, v in results[r]["apis"].items()} for r in run_names}
        pairs = [compare_trajectories(f"{api_a}@{run_a}", loaded[run_a][api_a], f"{api_b}@{run_b}", loaded[run_b][api_b],
                                      scope).to_dict()
                 for (run_a, api_a), (run_b, api_b), scope in pairs_to_compare(apis, run_names)]
    for r in results.values():  # the document keeps hashes; predictions and weight files stay behind
        for api_run in r["apis"].values():
            api_run.pop("weights_paths")
            for e in api_run["epochs"]:
                e.pop("predictions")
    jit_effective_all = sorted({v["jit_effective"] for r in results.values() for v in r["apis"].values()})
    return {
        "command": "determinism",
        "backend": backend,
        "device": device,
        "settings": {"apis": apis, "spec": spec.to_dict(), "epochs": epochs, "jit_requested": jit, "seed": seed,
                     "samples": samples, "batch_size": batch_size, "intra_op_threads": intra_op_threads,
                     "inter_op_threads": inter_op_threads, "op_determinism": op_determinism,
                     "nudge_api": nudge_api, "runs": runs},
        "jit_requested": jit,
        "jit_effective": jit_effective_all[0] if len(jit_effective_all) == 1 else None,
        "jit_note": jit_note(jit, jit_effective_all, op_determinism and backend == "tensorflow"),
        "runs": list(results.values()),
        "pairs": pairs,
        "all_identical": all(p["identical"] for p in pairs),
    }


def jit_note(requested: bool, effective: list[bool], op_determinism: bool) -> str | None:
    """Say it when the result is not about the jit setting the user asked for."""
    if requested and effective != [True]:
        why = " because TF op determinism is on (XLA is not covered by it)" if op_determinism else ""
        return f"jit_compile=True was requested but Keras ran without XLA{why}: these results are for jit off"
    return None
