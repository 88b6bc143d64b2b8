"""Deciding on pairs: the paired design's statistics. Pure functions, no asv, no framework.

A pair is one fresh process of each commit, alive at the same time, measured window by window in turns (or
at once, each on its own CPUs); its value is the median over its rounds of the log of head's window over
base's. Whatever the machine did during the pair (a neighbour's burst, a slower hour) lands on both sides
and cancels in the ratio; what stays is what differs between two processes (placement, memory layout,
compile choices) and the change itself. Pairs are replicated with fresh processes, so those process effects
are inside the interval.

- Test: exact Wilcoxon signed-rank on the per-pair log ratios, two-sided. Under "no change" each pair's sign
  is a coin flip: which commit led the pair and each round was drawn at random, so the two sides are
  exchangeable. Ties in |d| by their exact mid-rank distribution; a pair whose ratio is exactly 1 carries no
  sign and is left out (Wilcoxon's rule).
- Several runners (or any other strata): the sum of each stratum's signed-rank statistic, ranks taken
  within the stratum, its exact null the convolution of theirs. A noisy runner's large ratios cannot
  outweigh a quiet runner's, and no pair is ever compared across runners.
- Estimate and interval: the Hodges-Lehmann estimate (median of the within-stratum Walsh averages) and its
  exact distribution-free (Tukey) interval from the same null, reported as a ratio head/base.
- Equivalence: two one-sided signed-rank tests of the log ratios against ±log(1 + threshold).
- Power: the smallest change seen with 80 % probability, by simulating normal pair effects through the exact
  test, as fitbench.regress.decide does for the unpaired design.

Why not a t-test on the log ratios: under load a pair sometimes catches a burst on one side only, and one
such pair would move a mean and a standard deviation; it moves one rank here. The price is the exact test's
floor: n pairs cannot give a two-sided p below 2 / 2**n (11 pairs for 0.001).
"""

from __future__ import annotations

import math
import statistics
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from fitbench.regress.exact import convolve, lower_interval_index, shift_for_power, tails, upper_critical

if TYPE_CHECKING:
    from fitbench.regress.decide import DecisionSettings, Evidence

# One cell's pairs: the log ratios (head over base) of each stratum (runner), or one flat list.
Strata = Sequence[Sequence[float]]


def as_strata(values: Sequence[float] | Strata) -> list[list[float]]:
    """A flat list is one stratum."""
    if not values:
        return [[]]
    if isinstance(values[0], (list, tuple)):
        return [list(s) for s in values]  # type: ignore[arg-type]
    return [list(values)]  # type: ignore[arg-type]


def log_ratio(base: Sequence[float], head: Sequence[float]) -> float:
    """One pair's value: the median over its rounds of log(head's window / base's window), the two windows of
    a round taken next to each other (or at once), in round order. Under load a window lands in a neighbour's
    burst or not, and a side's median of 5 windows flips with how many did; the two windows of one round
    mostly share the machine's state, so their ratio does not (docs/noise.md). Sides of unequal length (not
    rounds): the ratio of the medians."""
    if len(base) != len(head) or not base:
        return math.log(statistics.median(head)) - math.log(statistics.median(base))
    return statistics.median(math.log(h) - math.log(b) for b, h in zip(base, head))


def _doubled_ranks(values: Sequence[float]) -> list[int]:
    """Twice the mid-ranks of |values| (integers, so that ties stay exact)."""
    order = sorted(range(len(values)), key=lambda i: abs(values[i]))
    ranks = [0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and abs(values[order[j + 1]]) == abs(values[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = i + j + 2  # twice the mid-rank of positions i..j (1-based)
        i = j + 1
    return ranks


@lru_cache(maxsize=1024)
def _null(doubled_ranks: tuple[int, ...]) -> tuple[float, ...]:
    """P(2T+ = k): each rank joins the positive sum with probability 1/2, independently (sign flips)."""
    import numpy as np

    out = np.zeros(sum(doubled_ranks) + 1)
    out[0] = 1.0
    for r in doubled_ranks:  # every doubled rank is 2 or more
        shifted = np.zeros_like(out)
        shifted[r:] = out[:-r]
        out = 0.5 * out + 0.5 * shifted
    return tuple(out.tolist())


def signed_rank(values: Sequence[float] | Strata, shift: float = 0.0) -> tuple[int, list[float]]:
    """(twice the stratified T+ of values - shift, the exact null distribution of that doubled statistic).
    Values equal to `shift` carry no sign and are left out."""
    observed, nulls = 0, []
    for stratum in as_strata(values):
        d = [v - shift for v in stratum if v - shift != 0]
        if not d:
            continue
        ranks = _doubled_ranks(d)
        observed += sum(r for r, x in zip(ranks, d) if x > 0)
        nulls.append(_null(tuple(sorted(ranks))))
    if not nulls:
        return 0, [1.0]
    return observed, convolve(nulls)


def signed_rank_p(values: Sequence[float] | Strata) -> float:
    """Two-sided exact p of the (stratified) signed-rank test that the log ratios are centred on 0."""
    if count(values) == 0:
        return 1.0
    lower, upper = tails(*signed_rank(values))
    return min(1.0, 2 * min(lower, upper))


def equivalence_p(values: Sequence[float] | Strata, threshold: float) -> float:
    """TOST: the larger of the one-sided exact p-values that the centre lies below log(1 + threshold) and
    above -log(1 + threshold). Small means: shown to lie within ±threshold."""
    if count(values) == 0:
        return 1.0
    margin = math.log(1 + threshold)
    below = tails(*signed_rank(values, margin))[0]  # few positive ranks against +margin: the centre is below
    above = tails(*signed_rank(values, -margin))[1]
    return max(below, above)


def count(values: Sequence[float] | Strata) -> int:
    return sum(len(s) for s in as_strata(values))


def min_attainable_p(pairs: int) -> float:
    """The smallest two-sided p the exact test can give with `pairs` pairs (every one the same sign)."""
    return 2 / 2 ** pairs


def min_pairs(level: float) -> int:
    """The fewest pairs with which the exact test can reach `level` at all."""
    n = 1
    while min_attainable_p(n) > level:
        n += 1
    return n


@lru_cache(maxsize=256)
def _interval_rank(sizes: tuple[int, ...], confidence: float) -> int:
    """The largest k with P(T+ < k) <= (1 - confidence) / 2 for the stratified T+ without ties (0: none)."""
    null = convolve([_null(tuple(2 * r for r in range(1, n + 1))) for n in sizes if n])
    return lower_interval_index(null, confidence)


def shift_ci(values: Sequence[float] | Strata, confidence: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) on the values' own scale: the median of the within-stratum Walsh averages and its
    exact (Tukey) interval, the averages cut where the stratified signed-rank null puts (1 - confidence) / 2
    in each tail; (estimate, -inf, inf) when there are too few values for that confidence."""
    strata = [s for s in as_strata(values) if s]
    if not strata:
        return math.nan, -math.inf, math.inf
    walsh = sorted((s[i] + s[j]) / 2 for s in strata for i in range(len(s)) for j in range(i, len(s)))
    estimate = statistics.median(walsh)
    k = _interval_rank(tuple(len(s) for s in strata), round(confidence, 12))
    if k <= 0:
        return estimate, -math.inf, math.inf
    return estimate, walsh[k - 1], walsh[len(walsh) - k]


def hodges_lehmann_ci(values: Sequence[float] | Strata, confidence: float = 0.95) -> tuple[float, float, float]:
    """(ratio, low, high): shift_ci of the log ratios, as ratios."""
    estimate, low, high = shift_ci(values, confidence)
    return math.exp(estimate), math.exp(low), math.exp(high)


def robust_spread(values: Sequence[float] | Strata) -> float:
    """The spread of the per-pair log ratios, each stratum around its own median: IQR / 1.349 (about the
    standard deviation for normal values, untouched by one wild pair); the plain standard deviation below 4."""
    deviations = []
    for stratum in as_strata(values):
        if stratum:
            centre = statistics.median(stratum)
            deviations += [v - centre for v in stratum]
    if len(deviations) < 2:
        return math.nan
    if len(deviations) < 4:
        return statistics.stdev(deviations)
    q = statistics.quantiles(deviations, n=4, method="inclusive")
    return (q[2] - q[0]) / 1.349


# ---------- power ----------

@lru_cache(maxsize=256)
def _critical(sizes: tuple[int, ...], alpha: float) -> int | None:
    """The smallest doubled T+ at which the exact two-sided stratified test rejects upwards at `alpha`."""
    return upper_critical(convolve([_null(tuple(2 * r for r in range(1, n + 1))) for n in sizes if n]), alpha)


@lru_cache(maxsize=512)
def _detectable_shift_in_sds(sizes: tuple[int, ...], alpha: float, power: float) -> float:
    """The shift of the pairs' log ratios, in pair standard deviations, at which the exact test rejects with
    probability `power`, for normal pair effects (simulated: fixed seed, common random numbers)."""
    import numpy as np

    critical = _critical(sizes, alpha)
    if critical is None:
        return math.inf
    rng = np.random.default_rng(20261203)
    draws = [rng.standard_normal((4000, n)) for n in sizes if n]

    def power_at(shift: float) -> float:
        twice = 0
        for x in draws:
            y = x + shift
            ranks = np.abs(y).argsort(axis=1).argsort(axis=1) + 1
            twice = twice + 2 * (ranks * (y > 0)).sum(axis=1)
        return float((twice >= critical).mean())

    return shift_for_power(power_at, power)


def min_detectable_change(spread: float, sizes: Sequence[int], alpha: float, power: float = 0.8) -> float:
    """Smallest relative change (0.10 = 10 %) that pairs with log-ratio spread `spread`, `sizes` pairs per
    stratum, detect with probability `power` at two-sided level `alpha`; inf where the exact test cannot
    reach `alpha` with so few pairs, nan without a spread."""
    strata = tuple(n for n in sizes if n)
    if not strata or _critical(strata, round(alpha, 15)) is None:
        return math.inf
    if not math.isfinite(spread):
        return math.nan
    return math.exp(_detectable_shift_in_sds(strata, round(alpha, 15), power) * spread) - 1


def pairs_needed(spread: float, change: float, alpha: float, power: float = 0.8, limit: int = 60) -> int | None:
    """Fewest pairs (one stratum) for min_detectable_change to reach `change`; None if more than `limit`."""
    def enough(n: int) -> bool:
        return min_detectable_change(spread, [n], alpha, power) <= change

    if not enough(limit):
        return None
    low, high = min_pairs(alpha) - 1, limit
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


# ---------- one cell's evidence, for fitbench.regress.decide.conclude ----------

def paired_evidence(values: Sequence[float] | Strata, settings: "DecisionSettings", design: str,
                    power: float = 0.8) -> "Evidence":
    """The signed-rank test, TOST, Hodges-Lehmann interval and power of one cell's pairs (log ratios, one
    list per runner)."""
    from fitbench.regress.decide import Evidence

    strata = [s for s in as_strata(values) if s]
    ratio, low, high = hodges_lehmann_ci(strata, settings.confidence)
    spread = robust_spread(strata)
    sizes = [len(s) for s in strata]
    n = sum(sizes)
    return Evidence(p_value=signed_rank_p(strata), p_equivalence=equivalence_p(strata, settings.threshold),
                    ratio=ratio, ci_low=low, ci_high=high, processes_base=n, processes_head=n, log_sd=spread,
                    log_sd_source="per pair, this comparison", observed_log_sd=spread,
                    detectable=lambda level: min_detectable_change(spread, sizes, level, power), design=design)
