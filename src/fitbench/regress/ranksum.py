"""The unpaired design's exact statistics: the Mann-Whitney rank-sum test on two groups of per-process values,
stratified by stage (or runner), ties by their exact permutation distribution; TOST equivalence; the
Hodges-Lehmann ratio and its distribution-free (Moses) interval; power by simulation. Pure functions; what
they decide and why: fitbench.regress.decide.
"""

from __future__ import annotations

import math
import statistics
from functools import lru_cache
from typing import Sequence, Union

from fitbench.regress.exact import convolve, lower_interval_index, shift_for_power, tails, upper_critical

# One side of one cell: a flat list of per-process values (one stage), or one list per stage.
Values = Union[Sequence[float], Sequence[Sequence[float]]]


def strata(values: Values) -> list[list[float]]:
    """A side's values as one list per stage (a flat list is one stage)."""
    if not values:
        return [[]]
    if isinstance(values[0], (list, tuple)):
        return [list(s) for s in values]  # type: ignore[arg-type]
    return [list(values)]  # type: ignore[arg-type]


@lru_cache(maxsize=256)
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """Number of arrangements giving each value of U (0..n*m) without ties, by the classic recursion: the
    largest of i + j values is one of the i (it beats all j others: U grows by j) or one of the j (U grows
    by 0). Two rows of the (i, j) table are kept at a time."""
    previous: list[tuple[int, ...]] = [(1,)] * (m + 1)  # i = 0: U is 0 whatever j
    for i in range(1, n + 1):
        current: list[tuple[int, ...]] = [(1,)]  # j = 0
        for j in range(1, m + 1):
            out = [0] * (i * j + 1)
            for u, c in enumerate(previous[j]):
                out[u + j] += c
            for u, c in enumerate(current[j - 1]):
                out[u] += c
            current.append(tuple(out))
        previous = current
    return previous[m]


@lru_cache(maxsize=512)
def _twice_u_null(n: int, m: int, ties: tuple[int, ...] | None) -> tuple[float, ...]:
    """P(2U = k), k = 0..2nm, of n values against m under exchangeability. ties None: all values distinct
    (the classic distribution on even k). Else `ties` are the sizes of the tied groups in sorted order, and
    this is the exact permutation distribution of mid-rank U given them: a dynamic programme over the
    groups, choosing j of a group of t for the n side in C(t, j) ways, each adding j doubled mid-ranks."""
    import numpy as np

    if ties is None:
        counts = _u_counts(n, m)
        total = float(sum(counts))
        out = np.zeros(2 * n * m + 1)
        out[::2] = [c / total for c in counts]
        return tuple(out.tolist())
    size = n + m
    top = size * (size + 1)  # the largest doubled rank sum
    dp = np.zeros((n + 1, top + 1))
    dp[0, 0] = 1.0
    below = 0
    for t in ties:
        doubled = 2 * below + t + 1  # twice the group's mid-rank
        new = np.zeros_like(dp)
        for j in range(0, min(t, n) + 1):
            shift = j * doubled
            if shift > top:
                break
            new[j:, shift:] += math.comb(t, j) * dp[:n + 1 - j, :top + 1 - shift]
        dp = new
        below += t
    twice_rank_sum = dp[n]  # 2U = 2R - n(n+1)
    out = twice_rank_sum[n * (n + 1): n * (n + 1) + 2 * n * m + 1]
    return tuple((out / out.sum()).tolist())


def _tie_sizes(values: Sequence[float]) -> tuple[int, ...] | None:
    ordered = sorted(values)
    if len(set(ordered)) == len(ordered):
        return None
    sizes, run = [], 1
    for a, b in zip(ordered, ordered[1:]):
        if a == b:
            run += 1
        else:
            sizes.append(run)
            run = 1
    sizes.append(run)
    return tuple(sizes)


def _twice_u(head: Sequence[float], base: Sequence[float]) -> int:
    """2U of head against base: 2 for every pair head wins, 1 for a tie."""
    return sum(2 if h > b else 1 if h == b else 0 for h in head for b in base)


def stage_pairs(base: Values, head: Values) -> list[tuple[list[float], list[float]]]:
    """The stages both sides have values in, as (base, head) pairs."""
    b, h = strata(base), strata(head)
    if len(b) != len(h):
        raise ValueError(f"base has {len(b)} stages and head {len(h)}")
    return [(x, y) for x, y in zip(b, h) if x and y]


def rank_sum(base: Values, head: Values) -> tuple[float, list[float]]:
    """(U of head against base summed over the stages, the exact null distribution of 2U)."""
    pairs = stage_pairs(base, head)
    if not pairs:
        raise ValueError("both groups need at least one value")
    twice = sum(_twice_u(h, b) for b, h in pairs)
    null = convolve([_twice_u_null(len(h), len(b), _tie_sizes(list(b) + list(h))) for b, h in pairs])
    return twice / 2, null


def mann_whitney_u(a: Values, b: Values) -> tuple[float, float]:
    """(U of a against b, two-sided exact p), stratified when the values come in stages; ties by their exact
    permutation distribution, not the normal approximation (which is about 2x too small at 4-5 processes)."""
    u, null = rank_sum(b, a)
    lower, upper = tails(round(2 * u), null)
    return u, min(1.0, 2 * min(lower, upper))


def one_sided_p(base: Values, head: Values, log_shift: float, upper: bool) -> float:
    """Exact one-sided p against H0: log(head/base) >= log_shift (upper=True: is head below the shift?) or
    <= log_shift (upper=False: is head above it?). The two halves of an equivalence test (TOST)."""
    shifted = [[v * math.exp(-log_shift) for v in s] for s in strata(head)]
    u, null = rank_sum(base, shifted)
    lower, upper_tail = tails(round(2 * u), null)
    return lower if upper else upper_tail


def equivalence_p(base: Values, head: Values, threshold: float) -> float:
    """TOST: the larger of the two one-sided p-values against ratios 1+threshold and 1/(1+threshold); small
    means "the change lies within ±threshold"."""
    margin = math.log1p(threshold)
    return max(one_sided_p(base, head, margin, upper=True), one_sided_p(base, head, -margin, upper=False))


def min_attainable_p(n: int, m: int) -> float:
    """The smallest two-sided p-value the exact test can give with n and m processes (all of one commit
    above all of the other): below this level nothing can ever be detected."""
    return 2 / math.comb(n + m, n)


# ---------- estimate and interval ----------

@lru_cache(maxsize=256)
def _interval_rank(sizes: tuple[tuple[int, int], ...], confidence: float) -> int:
    """The largest k with P(U < k) <= (1 - confidence) / 2 for the stratified U without ties (0: none)."""
    null = convolve([_twice_u_null(m, n, None) for n, m in sizes])
    return lower_interval_index(null, confidence)


def hodges_lehmann_ci(base: Values, head: Values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(ratio, low, high) of head over base: exp of the Hodges-Lehmann shift of the log values (the median
    of the within-stage pairwise differences) and its distribution-free (Moses) interval, those differences
    cut where the exact stratified distribution puts (1 - confidence) / 2 in each tail."""
    pairs = stage_pairs(base, head)
    diffs = sorted(math.log(y) - math.log(x) for b, h in pairs for x in b for y in h)
    estimate = math.exp(statistics.median(diffs))
    k = _interval_rank(tuple((len(b), len(h)) for b, h in pairs), round(confidence, 12))
    if k <= 0:
        return estimate, 0.0, math.inf  # too few processes for any interval at this confidence
    return estimate, math.exp(diffs[k - 1]), math.exp(diffs[len(diffs) - k])


# ---------- power ----------

@lru_cache(maxsize=256)
def _critical_twice_u(sizes: tuple[tuple[int, int], ...], alpha: float) -> int | None:
    """The smallest 2U (head over base) at which the exact two-sided stratified test rejects at `alpha`;
    None when none can."""
    return upper_critical(convolve([_twice_u_null(m, n, None) for n, m in sizes]), alpha)


@lru_cache(maxsize=512)
def _detectable_shift_in_sds(sizes: tuple[tuple[int, int], ...], alpha: float, power: float) -> float:
    """The shift of log values, in between-process standard deviations, at which the exact (stratified)
    rank-sum test rejects with probability `power`, for normal process effects. Found by simulation (fixed
    seed, common random numbers, so power rises monotonically with the shift) rather than the normal
    approximation, which promises too much for the few processes and small levels used here."""
    import numpy as np

    critical = _critical_twice_u(sizes, alpha)
    if critical is None:
        return math.inf
    rng = np.random.default_rng(20261127)
    draws = [(rng.standard_normal((4000, n)), rng.standard_normal((4000, m))) for n, m in sizes]

    def power_at(shift: float) -> float:
        twice = sum(2 * ((h[:, :, None] + shift) > b[:, None, :]).sum(axis=(1, 2)) for b, h in draws)
        return float((twice >= critical).mean())

    return shift_for_power(power_at, power)


def min_detectable_change(log_sd: float, n: int, m: int, alpha: float, power: float = 0.8,
                          sizes: Sequence[tuple[int, int]] | None = None) -> float:
    """Smallest relative change (0.10 = 10 %) a cell with between-process log-SD `log_sd` detects with
    probability `power` at two-sided level `alpha` with n and m processes (or the stages' `sizes`, (base,
    head) each); inf where the exact test cannot reach `alpha` with so few processes, nan without a spread."""
    strata = tuple(tuple(s) for s in sizes) if sizes else ((n, m),)
    if sum(a for a, _ in strata) < 2 or sum(b for _, b in strata) < 2:
        return math.inf
    if _critical_twice_u(strata, round(alpha, 15)) is None:
        return math.inf
    if not math.isfinite(log_sd):
        return math.nan
    return math.exp(_detectable_shift_in_sds(strata, round(alpha, 15), power) * log_sd) - 1


def processes_needed(log_sd: float, change: float, alpha: float, power: float = 0.8, limit: int = 60) -> int | None:
    """Fewest processes per commit for `min_detectable_change` to reach `change`; None if more than
    `limit` (the detectable change falls as processes are added, so a bisection finds it)."""
    def enough(n: int) -> bool:
        return min_detectable_change(log_sd, n, n, alpha, power) <= change

    if not enough(limit):
        return None
    low, high = 1, limit  # enough(high) holds, enough(low) does not (1 process can show no spread)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def processes_for(log_sds: Sequence[float], threshold: float, alpha: float, power: float = 0.8,
                  floor: int = 3, limit: int = 60, family: int | None = None) -> int | None:
    """Processes per commit so that every cell (spreads `log_sds`, tested under Holm with `family` cells in
    all, default as many as spreads, at family-wise `alpha`) can detect `threshold`: the largest need over
    the cells; None if one needs more than `limit`."""
    strictest = alpha / max(1, family or 0, len(log_sds))
    needs = [processes_needed(sd, threshold, strictest, power, limit) for sd in log_sds]
    if any(n is None for n in needs):
        return None
    return max([floor, *needs])
