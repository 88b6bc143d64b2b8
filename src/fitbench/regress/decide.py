"""Deciding base vs head with the process as the unit of replication. Pure functions, no asv, no framework.

Why the process: a fit cell's step time differs more between two fresh processes of the same commit than
between two steps of one process (thread placement, allocator state, XLA's choices at compile time; the
between-process spread dominates at small batches, docs/noise.md). Pooling
20 samples from 2 processes and testing them as if independent is far too confident: that is how a
documentation-only commit made the old alert exit 1. So each process contributes one value (the median of
its samples), and every test, interval and power figure here is about those values.

The design behind the numbers: n processes per commit, base and head interleaved (A B A B ...) by asv, so
under "no change" the 2n per-process values are exchangeable. On the log scale a change is a shift.

- Test: exact two-sided Mann-Whitney U (Wilcoxon rank-sum) on the per-process values. Valid for any
  distribution of process effects (no normality: step times are skewed and sometimes bimodal), exact for
  the small n used here, and its p-value depends only on ranks, so one wild process cannot dominate.
- Estimate and interval: Hodges-Lehmann shift of log values (median of all n*m pairwise differences), and
  its distribution-free confidence interval (Moses), read off the same pairwise differences: test,
  estimate and interval agree with each other. Reported as ratios head/base.
- Many cells at once: Holm's step-down correction of the p-values, controlling the family-wise error
  rate, P(any false alarm in the whole alert) <= alpha. A CI gate fails a pull request on any alarm, so
  the family-wise rate is the rate a user sees; Benjamini-Hochberg's false discovery rate equals it only
  when nothing changed, and lets more false alarms through beside a real regression. Holm is valid under
  any dependence between cells (they share the machine, round by round).
- Power: the smallest change a cell can detect with 80 % probability, from its between-process spread
  (calibrated, or seen in this comparison) and the number of processes: the exact test's rejection
  region, and the power against a shift found by simulating normal process effects (the normal
  approximation promises too much at these sample sizes); infinite where the exact test cannot reach
  the level at all with that many processes.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

WORSE, BETTER, UNCHANGED, INCONCLUSIVE = "worse", "better", "unchanged", "inconclusive"


# ---------- per-process values ----------

def split_processes(samples: Sequence[float], per_process: int) -> list[list[float]]:
    """asv pools the samples of all processes of a commit in order, `per_process` (the benchmark's fixed
    `repeat`) from each: cut them back into processes. A length that is not a multiple means a process
    gave fewer samples (it failed or hit a time limit): ValueError, rather than mixing processes."""
    if per_process < 1:
        raise ValueError(f"per_process must be at least 1, got {per_process}")
    if len(samples) % per_process:
        raise ValueError(f"{len(samples)} samples do not split into processes of {per_process}")
    return [list(samples[i:i + per_process]) for i in range(0, len(samples), per_process)]


def process_values(samples: Sequence[float], per_process: int) -> list[float]:
    """One value per process: the median of its samples."""
    return [statistics.median(block) for block in split_processes(samples, per_process)]


def between_process_cv(values: Sequence[float]) -> float:
    """Spread of per-process values: the standard deviation of their logarithms (for small spreads the
    coefficient of variation; on the log scale a ratio change is a shift, whatever the level)."""
    if len(values) < 2:
        return math.nan
    return statistics.stdev(math.log(v) for v in values)


def _robust_sd(deviations: Sequence[float]) -> float:
    """IQR / 1.349 (the standard deviation for normal data), with the plain standard deviation below 4
    values, where quartiles mean little."""
    if len(deviations) < 4:
        return statistics.stdev(deviations) if len(deviations) > 1 else math.nan
    q = statistics.quantiles(deviations, n=4, method="inclusive")
    return (q[2] - q[0]) / 1.349


def robust_log_sd(values: Sequence[float]) -> float:
    """The between-process spread that sizes a rank test: robust to a rare wild process (the first
    process of a run is sometimes 50 % slow), which the rank-sum test shrugs off but a standard deviation
    would count as if every process were that noisy. About the CV for small spreads."""
    return _robust_sd([math.log(v) for v in values])


def pooled_log_sd(a: Sequence[float], b: Sequence[float]) -> float:
    """The robust spread of two commits' log per-process values, each around its own median."""
    if len(a) + len(b) < 3:
        return math.nan
    ma, mb = statistics.median(math.log(v) for v in a), statistics.median(math.log(v) for v in b)
    return _robust_sd([math.log(v) - ma for v in a] + [math.log(v) - mb for v in b])


# ---------- the exact rank-sum test ----------

@lru_cache(maxsize=256)
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """Number of arrangements giving each value of U (0..n*m) under H0, by the classic recursion: the
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


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(U of a against b, two-sided p). Exact null distribution without ties; with ties, mid-ranks and the
    normal approximation with the tie correction (ties are rare in timings, common in 0/1 tracks)."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        raise ValueError("both groups need at least one value")
    u = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)
    if len(set(a) | set(b)) == n + m and n * m <= 10_000:
        counts = _u_counts(n, m)
        total = sum(counts)
        lo = sum(counts[: int(math.floor(min(u, n * m - u))) + 1])
        return u, min(1.0, 2 * lo / total)
    values = sorted(list(a) + list(b))
    ties = [values.count(v) for v in set(values)]
    sigma2 = n * m / 12 * ((n + m + 1) - sum(t ** 3 - t for t in ties) / ((n + m) * (n + m - 1)))
    if sigma2 <= 0:
        return u, 1.0
    z = (abs(u - n * m / 2) - 0.5) / math.sqrt(sigma2)
    return u, min(1.0, 2 * (1 - statistics.NormalDist().cdf(max(z, 0.0))))


def min_attainable_p(n: int, m: int) -> float:
    """The smallest two-sided p-value the exact test can give with n and m processes (all of one commit
    above all of the other): below this level nothing can ever be detected."""
    return 2 / math.comb(n + m, n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    k = len(p_values)
    order = sorted(range(k), key=lambda i: p_values[i])
    adjusted = [1.0] * k
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# ---------- estimate and interval ----------

def hodges_lehmann_ci(base: Sequence[float], head: Sequence[float],
                      confidence: float = 0.95) -> tuple[float, float, float]:
    """(ratio, low, high) of head over base: exp of the Hodges-Lehmann shift of the log values and its
    distribution-free (Moses) interval, the order statistics of the n*m pairwise log differences cut
    where the exact rank-sum distribution puts (1 - confidence) / 2 in each tail (coverage >= confidence)."""
    n, m = len(base), len(head)
    diffs = sorted(math.log(y) - math.log(x) for x in base for y in head)
    estimate = math.exp(statistics.median(diffs))
    counts = _u_counts(n, m) if n * m <= 10_000 else None
    alpha = 1 - confidence
    if counts is not None:
        total, cumulative, k = sum(counts), 0, 0
        # largest k with P(U < k) <= alpha/2: the interval is [d_(k), d_(nm-k-1)] (0-based)
        for u, c in enumerate(counts):
            if (cumulative + c) / total > alpha / 2:
                k = u
                break
            cumulative += c
    else:
        z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
        k = int(math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12)))
    if k <= 0:
        return estimate, 0.0, math.inf  # too few processes for any interval at this confidence
    return estimate, math.exp(diffs[k - 1]), math.exp(diffs[n * m - k])


# ---------- power ----------

def rejection_u(n: int, m: int, alpha: float) -> int | None:
    """The smallest U (head over base) at which the exact two-sided test rejects at `alpha`; None when no
    U can (too few processes)."""
    counts = _u_counts(n, m)
    total, tail = sum(counts), 0
    for u in range(n * m, -1, -1):  # P(U >= u), from the top
        tail += counts[u]
        if 2 * tail / total > alpha:
            return u + 1 if u < n * m else None
    return None


@lru_cache(maxsize=512)
def _detectable_shift_in_sds(n: int, m: int, alpha: float, power: float) -> float:
    """The shift of log values, in between-process standard deviations, at which the exact rank-sum test
    rejects with probability `power`, for normal process effects. Found by simulation (fixed seed, common
    random numbers, so power rises monotonically with the shift) rather than the normal approximation,
    which promises too much for the few processes and small levels used here (checked in the tests)."""
    import numpy as np

    critical = rejection_u(m, n, alpha)
    if critical is None:
        return math.inf
    rng = np.random.default_rng(20261127)
    base, head = rng.standard_normal((4000, n)), rng.standard_normal((4000, m))

    def power_at(shift: float) -> float:
        u = ((head[:, :, None] + shift) > base[:, None, :]).sum(axis=(1, 2))
        return float((u >= critical).mean())

    low, high = 0.0, 1.0
    while power_at(high) < power:
        low, high = high, high * 2
        if high > 1e3:
            return math.inf
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if power_at(mid) < power else (low, mid)
    return high


def min_detectable_change(log_sd: float, n: int, m: int, alpha: float, power: float = 0.8) -> float:
    """Smallest relative change (0.10 = 10 %) a cell with between-process log-SD `log_sd` detects with
    probability `power` at two-sided level `alpha` with n and m processes; inf where the exact test cannot
    reach `alpha` with so few processes, nan without a spread."""
    if n < 2 or m < 2 or min_attainable_p(n, m) > alpha:
        return math.inf
    if not math.isfinite(log_sd):
        return math.nan
    return math.exp(_detectable_shift_in_sds(n, m, round(alpha, 12), power) * log_sd) - 1


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


# ---------- one cell, and a whole alert ----------

@dataclass(frozen=True)
class CellDecision:
    """What the alert says about one cell, in numbers a reader can check."""

    change: str  # worse | better | unchanged | inconclusive
    ratio: float  # head / base (Hodges-Lehmann) of the metric as measured (seconds: above 1 is slower)
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # two-sided exact rank-sum on per-process values
    p_adjusted: float  # Holm, over every tested cell of the alert
    processes_base: int
    processes_head: int
    log_sd: float  # between-process spread behind the detectable change (about the CV)
    log_sd_source: str  # "calibration" or "this comparison"
    observed_log_sd: float  # the spread seen in this comparison, pooled over base and head
    min_detectable_change: float  # relative, e.g. 0.07 = 7 %: found with 80 % power at Holm's strictest level
    threshold: float  # the change the alert must be able to see, e.g. 0.10
    min_change: float  # a significant change smaller than this is not called a change, e.g. 0.05


def classify(ratio: float, ci_low: float, ci_high: float, p_adjusted: float, alpha: float, min_change: float,
             min_detectable: float, threshold: float, higher_is_better: bool = False) -> str:
    """worse / better: significant after Holm and the estimate at least `min_change` away from 1 in that
    direction (a true change of the threshold size passes both most of the time; see docs/alerts.md);
    unchanged: this cell could have detected a change of `threshold` (its detectable change is no larger)
    and its confidence interval lies inside ±threshold; else inconclusive: with this noise and this many
    processes it cannot say, and the alert must not call that unchanged."""
    if p_adjusted <= alpha and (ratio >= 1 + min_change or ratio <= 1 / (1 + min_change)):
        return BETTER if (ratio > 1) == higher_is_better else WORSE
    if min_detectable <= threshold and 1 / (1 + threshold) < ci_low and ci_high < 1 + threshold:
        return UNCHANGED
    return INCONCLUSIVE


def decide(cells: dict[str, tuple[Sequence[float], Sequence[float]]], alpha: float = 0.01, threshold: float = 0.10,
           min_change: float = 0.05, confidence: float = 0.95, calibrated_log_sd: dict[str, float] | None = None,
           higher_is_better: dict[str, bool] | None = None, power: float = 0.8) -> dict[str, CellDecision]:
    """Every cell's decision from its per-process values {cell: (base values, head values)}, Holm across
    all of them. The detectable change uses the calibrated spread where there is one, else the spread
    seen in this comparison; it is computed at Holm's strictest level (alpha / number of cells), the only
    level at which every cell is sure to be tested."""
    names = list(cells)
    p_values = [mann_whitney_u(cells[c][1], cells[c][0])[1] for c in names]
    adjusted = holm(p_values)
    strictest = alpha / max(1, len(names))
    out = {}
    for name, p, p_adj in zip(names, p_values, adjusted):
        base, head = cells[name]
        ratio, low, high = hodges_lehmann_ci(base, head, confidence)
        observed = pooled_log_sd(base, head)
        sd, source = (calibrated_log_sd or {}).get(name), "calibration"
        if sd is None or not math.isfinite(sd):
            sd, source = observed, "this comparison"
        mdc = min_detectable_change(sd, len(base), len(head), strictest, power)
        change = classify(ratio, low, high, p_adj, alpha, min_change, mdc, threshold,
                          (higher_is_better or {}).get(name, False))
        out[name] = CellDecision(
            change=change, ratio=ratio, ci_low=low, ci_high=high, confidence=confidence, p_value=p,
            p_adjusted=p_adj, processes_base=len(base), processes_head=len(head), log_sd=sd,
            log_sd_source=source, observed_log_sd=observed, min_detectable_change=mdc, threshold=threshold,
            min_change=min_change)
    return out


def processes_for(log_sds: Sequence[float], threshold: float, alpha: float, power: float = 0.8,
                  floor: int = 3, limit: int = 60) -> int | None:
    """Processes per commit so that every cell (spreads `log_sds`, tested together under Holm) can
    detect `threshold`: the largest need over the cells; None if one needs more than `limit`."""
    strictest = alpha / max(1, len(log_sds))
    needs = [processes_needed(sd, threshold, strictest, power, limit) for sd in log_sds]
    if any(n is None for n in needs):
        return None
    return max([floor, *needs])
