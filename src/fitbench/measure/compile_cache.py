"""The first training step with the framework's persistent compilation cache cold and warm, process by process.

A first step is trace + compile + one step; a persistent cache (JAX's, XLA's in TensorFlow, Inductor's in
PyTorch: each backend's PERSISTENT_CACHE and `persistent_cache_env`) lets a later process load the compiled
step instead of compiling it. The unit is the process: every sample is a fresh interpreter that builds the
model and runs its first `fit` step, with the 1-minute load average read beside it (host load alone makes a
compile many times slower). Rounds are interleaved: each round runs one cold process (a new, empty cache
folder) and one warm process (the folder a priming process filled before the first round), in an order drawn
at random, so a round is a pair and the warm/cold ratio is decided on the rounds' ratios (exact signed-rank
test, Hodges-Lehmann ratio with its 95 % interval: fitbench.regress.signedrank).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from fitbench import backends

SCHEMA_VERSION = 1
COLD, WARM, PRIMING = "cold", "warm", "priming"


@dataclass(frozen=True)
class FirstStepSample:
    """One process: its first `fit` step with the cache cold, warm, or priming the warm folder."""

    backend: str
    cache: str  # cold, warm or priming
    round: int  # -1 for the priming process
    first_step_s: float  # trace + compile (or the cache's load) + one step, as the Keras callback times it
    jit_effective: bool
    cache_entries_before: int  # files in the cache folder when the process started
    cache_entries_after: int
    load_1min: float | None  # the 1-minute load average just before the step
    schema_version: int = SCHEMA_VERSION


@dataclass
class CacheComparison:
    """Cold against warm over `rounds` interleaved rounds on one backend."""

    backend: str
    cache: str  # what the backend's cache is, in words
    api: str
    batch_size: int
    rounds: int
    samples: list[FirstStepSample] = field(default_factory=list)
    cold_median_s: float | None = None
    warm_median_s: float | None = None
    warm_over_cold: float | None = None  # Hodges-Lehmann estimate of the per-round ratio warm / cold
    ci_low: float | None = None  # its exact 95 % interval
    ci_high: float | None = None
    p_value: float | None = None  # exact two-sided signed-rank test of "warm is no faster"
    load_1min_range: tuple[float, float] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _entries(directory: str) -> int:
    return sum(len(files) for _, _, files in os.walk(directory))


def first_step(backend: str, cache: str, directory: str, round_index: int, api: str = "functional",
               batch_size: int = 32, seed: int = 0) -> dict[str, Any]:
    """Child side: the model built and its first `fit` step timed, jit on, with the cache folder the parent
    put in the environment (the framework read it when it started)."""
    from fitbench.measure.harness import FitHarness
    from fitbench.processes import runtime

    before = _entries(directory)
    harness = FitHarness(api, True, batch_size, seed=seed, keras_major=2 if backend == "tf-keras" else 3)
    load = runtime.load_1min()
    first_s = harness.warm_up(1)
    return asdict(FirstStepSample(backend=backend, cache=cache, round=round_index, first_step_s=first_s,
                                  jit_effective=harness.jit_effective, cache_entries_before=before,
                                  cache_entries_after=_entries(directory), load_1min=load))


Runner = Callable[[str, str, str, int], dict[str, Any]]


def first_step_isolated(backend: str, cache: str, directory: str, round_index: int = 0, api: str = "functional",
                        batch_size: int = 32, threads: int | None = 1) -> FirstStepSample:
    """`first_step` in a fresh interpreter of `backend` whose persistent cache is `directory` (what the
    comparison's processes, and the asv suite's FirstStepCache, run)."""
    from fitbench.processes.isolation import process_env, run_isolated
    from fitbench.stacks import parse_stack

    env = {**process_env(parse_stack(backend), threads=threads),
           **backends.get(backend).persistent_cache_env(directory)}
    return FirstStepSample(**run_isolated(first_step, {"backend": backend, "cache": cache, "directory": directory,
                                                       "round_index": round_index, "api": api,
                                                       "batch_size": batch_size}, env=env, timeout_s=900))


def _isolated(backend: str, api: str, batch_size: int, threads: int | None) -> Runner:
    def run(cache: str, directory: str, _: str, round_index: int) -> dict[str, Any]:
        return asdict(first_step_isolated(backend, cache, directory, round_index, api, batch_size, threads))

    return run


def compare_cold_warm(backend: str, rounds: int, api: str = "functional", batch_size: int = 32,
                      threads: int | None = 1, order_seed: int | None = None, runner: Runner | None = None,
                      progress: Callable[[str], None] = lambda line: None) -> CacheComparison:
    """`rounds` rounds of one cold and one warm process each (order drawn per round), after one process that
    primes the warm folder; the folders are temporary and removed at the end. `runner(cache, folder, backend,
    round)` runs one process (a fresh interpreter unless a test gives another)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    run = runner or _isolated(backend, api, batch_size, threads)
    order = random.Random(order_seed)
    comparison = CacheComparison(backend=backend, cache=backends.get(backend).PERSISTENT_CACHE, api=api,
                                 batch_size=batch_size, rounds=rounds)
    with tempfile.TemporaryDirectory(prefix="fitbench-cache-") as root:
        warm_dir = str(Path(root) / "warm")
        os.makedirs(warm_dir)
        comparison.samples.append(FirstStepSample(**run(PRIMING, warm_dir, backend, -1)))
        progress(f"primed the warm cache: {comparison.samples[-1].cache_entries_after} files")
        for index in range(rounds):
            sides = [COLD, WARM]
            order.shuffle(sides)
            for side in sides:
                directory = warm_dir if side == WARM else str(Path(root) / f"cold-{index}")
                os.makedirs(directory, exist_ok=True)
                comparison.samples.append(FirstStepSample(**run(side, directory, backend, index)))
            done = comparison.samples[-2:]
            progress(f"round {index + 1}/{rounds}: " + ", ".join(f"{s.cache} {s.first_step_s:.2f} s" for s in done))
    summarize(comparison)
    return comparison


def summarize(comparison: CacheComparison) -> None:
    """Medians of each side and the per-round ratio warm / cold with its exact interval and test."""
    from fitbench.regress import signedrank

    by_round: dict[int, dict[str, float]] = {}
    for s in comparison.samples:
        if s.cache in (COLD, WARM):
            by_round.setdefault(s.round, {})[s.cache] = s.first_step_s
    pairs = [r for r in by_round.values() if COLD in r and WARM in r]
    if not pairs:
        return
    comparison.cold_median_s = statistics.median(r[COLD] for r in pairs)
    comparison.warm_median_s = statistics.median(r[WARM] for r in pairs)
    log_ratios = [signedrank.log_ratio([r[COLD]], [r[WARM]]) for r in pairs]
    comparison.warm_over_cold, comparison.ci_low, comparison.ci_high = signedrank.hodges_lehmann_ci(log_ratios)
    comparison.p_value = signedrank.signed_rank_p(log_ratios)
    loads = [s.load_1min for s in comparison.samples if s.load_1min is not None]
    comparison.load_1min_range = (min(loads), max(loads)) if loads else None
