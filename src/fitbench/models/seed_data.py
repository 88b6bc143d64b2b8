"""The seed's data (its 200-value target y and a seeded 1x4096 input) and seeded synthetic batches."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from fitbench.models.seed import ModelSpec


@lru_cache(maxsize=1)
def _seed_target_values() -> tuple[float, ...]:
    text = resources.files("fitbench").joinpath("models/seed_target.txt").read_text()
    return tuple(float(line) for line in text.splitlines() if line.strip() and not line.startswith("#"))


def seed_target() -> np.ndarray:
    """The seed question's y, shape (1, 200), float32 (what Keras trains in)."""
    return np.asarray(_seed_target_values(), dtype=np.float32).reshape(1, -1)


def seed_input(seed: int = 0, input_dim: int = 4096) -> np.ndarray:
    """x = uniform(0, 1) of shape (1, input_dim) from a seeded generator (the seed used an unseeded one)."""
    return np.random.default_rng(seed).random((1, input_dim), dtype=np.float32)


def synthetic_batch(spec: ModelSpec, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded (x, y) batch for throughput: x uniform(0,1), y uniform(0,1) (sigmoid's range)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, spec.input_dim), dtype=np.float32)
    y = rng.random((batch_size, spec.output_dim), dtype=np.float32)
    return x, y
