"""Cold against warm persistent compilation caches (fitbench.measure.compile_cache): the interleaving, the
folders each process gets, and the statistics, on a fake process runner with synthetic first-step times."""

from __future__ import annotations

import math

import pytest

from fitbench import backends
from fitbench.measure.compile_cache import COLD, PRIMING, WARM, compare_cold_warm


def fake_runner(calls: list[tuple[str, str, int]], cold_s: float = 1.0, warm_s: float = 0.25):
    def run(cache: str, directory: str, backend: str, round_index: int) -> dict:
        calls.append((cache, directory, round_index))
        seconds = {COLD: cold_s, PRIMING: cold_s, WARM: warm_s}[cache] * (1 + 0.01 * round_index)
        return {"backend": backend, "cache": cache, "round": round_index, "first_step_s": seconds,
                "jit_effective": True, "cache_entries_before": 0, "cache_entries_after": 15,
                "load_1min": 0.5 + round_index}
    return run


def test_one_priming_process_then_rounds_of_a_fresh_cold_folder_and_the_primed_warm_one_in_drawn_order():
    calls: list[tuple[str, str, int]] = []
    c = compare_cold_warm("jax", 8, order_seed=3, runner=fake_runner(calls))
    assert calls[0][0] == PRIMING and [k for k, _, _ in calls].count(PRIMING) == 1
    rounds = [calls[1 + 2 * i: 3 + 2 * i] for i in range(8)]
    assert all(sorted(k for k, _, _ in r) == [COLD, WARM] and {i for _, _, i in r} == {n}
               for n, r in enumerate(rounds))
    assert {d for k, d, _ in calls if k == WARM} == {calls[0][1]}  # every warm process reads the primed folder
    cold_folders = [d for k, d, _ in calls if k == COLD]
    assert len(set(cold_folders)) == 8 and calls[0][1] not in cold_folders  # a new empty folder each time
    assert {r[0][0] for r in rounds} == {COLD, WARM}  # the order is drawn, not fixed
    assert c.cache == backends.get("jax").PERSISTENT_CACHE and len(c.samples) == 17


def test_the_warm_over_cold_ratio_comes_with_its_exact_interval_over_the_rounds():
    c = compare_cold_warm("jax", 8, order_seed=1, runner=fake_runner([]))
    assert c.warm_over_cold == pytest.approx(0.25) and c.ci_low <= 0.25 <= c.ci_high < 1
    assert c.p_value == pytest.approx(2 / 2 ** 8)  # every round faster warm: the exact test's floor
    assert c.cold_median_s == pytest.approx(1.035) and c.load_1min_range == (-0.5, 7.5)
    few = compare_cold_warm("jax", 2, order_seed=1, runner=fake_runner([]))
    assert few.ci_low == 0.0 and math.isinf(few.ci_high)  # two rounds: no interval at 95 %, said as such


def test_rounds_below_one_are_refused_and_each_backend_names_its_cache_folder():
    with pytest.raises(ValueError, match="at least 1"):
        compare_cold_warm("jax", 0, runner=fake_runner([]))
    assert backends.get("jax").persistent_cache_env("/c")["JAX_COMPILATION_CACHE_DIR"] == "/c"
    assert backends.get("tensorflow").persistent_cache_env("/c")["TF_XLA_FLAGS"].endswith("=/c")
    assert backends.get("tf-keras").persistent_cache_env("/c") == backends.get("tensorflow").persistent_cache_env("/c")
    assert backends.get("torch").persistent_cache_env("/c") == {"TORCHINDUCTOR_CACHE_DIR": "/c"}
