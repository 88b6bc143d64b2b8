"""Pure comparison of two training trajectories: bit identity (SHA-256), float32 ULPs, absolute differences.

Parent side: numpy only. The trajectories come from fitbench.determinism.train, run in fresh processes.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from fitbench.report.document import Document


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
class PairResult(Document):
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
    cosine_a: float | None  # cos(predictions, the seed's y): the seed network only
    cosine_b: float | None
    jit_effective_a: bool
    jit_effective_b: bool



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


def cosine_to_target(predictions: np.ndarray, target: np.ndarray) -> float:
    from sklearn.metrics.pairwise import cosine_similarity  # as the seed question measured it

    return float(cosine_similarity(np.asarray(predictions, np.float64).reshape(1, -1),
                                   np.asarray(target, np.float64).reshape(1, -1))[0, 0])


def _load_npz(path: str) -> list[np.ndarray]:
    with np.load(path) as npz:  # np.savez names positional arrays arr_0, arr_1, ...
        return [npz[k] for k in sorted(npz.files, key=lambda k: int(k.split("_")[1]))]


def load_weights(api_run: dict[str, Any]) -> dict[str, Any]:
    """The API's run with its saved initial and final weights read back from disk."""
    return {**api_run, **{f"{when}_weights": _load_npz(path) for when, path in api_run["weights_paths"].items()}}


def jit_note(requested: bool, effective: list[bool], op_determinism: bool) -> str | None:
    """Say it when the result is not about the jit setting the user asked for."""
    if requested and effective != [True]:
        why = " because TF op determinism is on (XLA is not covered by it)" if op_determinism else ""
        return f"jit_compile=True was requested but Keras ran without XLA{why}: these results are for jit off"
    return None
