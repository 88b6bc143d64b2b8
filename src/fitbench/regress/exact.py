"""The exact tests' shared arithmetic: distributions of discrete statistics convolved over strata, their tails
and critical values, and the shift at which a simulated power curve reaches a target. Pure functions; the
rank-sum test (fitbench.regress.ranksum) and the signed-rank test (fitbench.regress.signedrank) stand on them.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence


def convolve(distributions: list[tuple[float, ...]]) -> list[float]:
    import numpy as np

    out = np.array([1.0])
    for d in distributions:
        out = np.convolve(out, np.asarray(d))
    return out.tolist()


def tails(observed: int, null: Sequence[float]) -> tuple[float, float]:
    """(P(X <= observed), P(X >= observed)) of a discrete statistic by value, with a little slack for float
    sums."""
    lower = sum(null[: observed + 1])
    upper = sum(null[observed:])
    return min(1.0, lower * (1 + 1e-12)), min(1.0, upper * (1 + 1e-12))


def upper_critical(null: Sequence[float], alpha: float) -> int | None:
    """The smallest value of a discrete statistic (its null distribution `null`, by value) at which the exact
    two-sided test rejects upwards at `alpha`; None when none can."""
    tail = 0.0
    for k in range(len(null) - 1, -1, -1):
        tail += null[k]
        if 2 * tail > alpha * (1 + 1e-12):
            return k + 1 if k + 1 < len(null) else None
    return None


def shift_for_power(power_at: Callable[[float], float], power: float) -> float:
    """The smallest shift (in standard deviations) at which `power_at`, rising with the shift (common random
    numbers make it monotone), reaches `power`: doubling, then bisection; inf when even 1000 does not."""
    low, high = 0.0, 1.0
    while power_at(high) < power:
        low, high = high, high * 2
        if high > 1e3:
            return math.inf
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if power_at(mid) < power else (low, mid)
    return high


def lower_interval_index(null: Sequence[float], confidence: float) -> int:
    """The largest k with P(S < k) <= (1 - confidence) / 2, for a null of twice the statistic (integer
    statistics at its even indices): the rank of the interval's lower end among the Walsh averages or
    pairwise differences (0: none)."""
    tail = (1 - confidence) / 2
    cumulative, k = 0.0, 0
    for twice in range(0, len(null), 2):
        if cumulative + null[twice] > tail * (1 + 1e-12):
            return k
        cumulative += null[twice]
        k = twice // 2 + 1
    return k
