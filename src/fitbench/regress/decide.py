"""Deciding base vs head with the process as the unit of replication. Pure functions, no asv, no framework.

Why the process: a fit cell's step time differs more between two fresh processes of the same commit than
between two steps of one process (thread placement, allocator state, XLA's choices at compile time; the
between-process spread dominates at small batches, docs/noise.md). Pooling 20 samples from 2 processes and
testing them as if independent is far too confident: that is how a documentation-only commit made the old
alert exit 1. So each process contributes one value (the median of its samples), and every test, interval
and power figure here is about those values.

The design behind the numbers: n processes per commit, base and head interleaved (A B B A ...), in one or
two stages; under "no change" the per-process values of one stage are exchangeable. On the log scale a
change is a shift.

- Three answers per cell, as Chromium's Pinpoint gives them (different / same / unknown): `worse` or
  `better` (a significant change at least `min_change` large), `equivalent` (a significant equivalence
  within ±threshold), else `inconclusive`, which is never a pass.
- Test: exact two-sided Mann-Whitney U (Wilcoxon rank-sum) on the per-process values, stratified by stage
  (the sum of the stages' U, its exact null the convolution of theirs), with ties handled exactly (the
  permutation distribution of mid-rank U). Valid for any distribution of process effects and for any drift
  between stages; one wild process moves one rank.
- Equivalence: two one-sided exact tests (TOST) against ratios of 1/(1+threshold) and 1+threshold.
- Estimate and interval: Hodges-Lehmann shift of log values over the within-stage pairs and its
  distribution-free (Moses) interval from the same exact distribution: test, estimate and interval agree.
- Many cells, two stages: Holm over every cell of the alert at each stage, and Bonferroni across stages
  (alpha / stages each). Both hold under any dependence between cells and stages, which is what a shared
  machine gives: cells share rounds, and stage 2 re-uses stage 1's processes. For two looks the price over
  Pocock's boundary is small (at a family-wise 0.01, Pocock's nominal level per look is about 0.0056,
  Bonferroni's 0.005), and Pocock's and O'Brien-Fleming's boundaries rest on a normal joint distribution of
  the stages' statistics that an exact, discrete rank statistic with drift between stages does not have.
- Power: the smallest change a cell detects with 80 % probability, by simulating normal process effects
  through the exact test (the normal approximation promises too much at these sample sizes).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Callable, Sequence

from fitbench.errors import UsageError
from fitbench.regress.ranksum import (
    Values,
    equivalence_p,
    hodges_lehmann_ci,
    mann_whitney_u,
    min_attainable_p,
    min_detectable_change,
    stage_pairs,
    strata,
)

WORSE, BETTER, EQUIVALENT, INCONCLUSIVE = "worse", "better", "equivalent", "inconclusive"
UNPAIRED = "unpaired"
DECIDED = frozenset({WORSE, BETTER, EQUIVALENT})
# Compile time (a fresh model's first step: trace, compile, one step) is one event per model, not a window of
# many steps, and the host's load stretches a compile as a whole: these cells are decided at their own, wider
# margin.
COMPILE_TIME = re.compile(r"\.(time_first_step|track_first_step_s)(\(|$)")
DEFAULT_COMPILE_THRESHOLD = 0.25



@dataclass(frozen=True)
class DecisionSettings:
    """The decision's knobs, shared by `fitbench alert`, `gate` and `calibrate`."""

    alpha: float = 0.01  # family-wise over cells and stages: P(any false alarm in one alert) with no change
    threshold: float = 0.10  # the margin: "equivalent" means within ±threshold, with confidence
    min_change: float = 0.05  # a significant change smaller than this is not called worse or better
    equivalence_alpha: float = 0.05  # family-wise: P(a cell changed by the threshold or more is called equivalent)
    confidence: float = 0.95  # of the reported interval
    # the margin of the compile-time cells (COMPILE_TIME); optional in the schema: documents before it lack it
    compile_threshold: float = field(default=DEFAULT_COMPILE_THRESHOLD, metadata={"optional": True})
    # True (the alert, gate and bisect): alpha bounds each direction alone, so a false "worse" (the alarm, exit 1)
    # has probability at most alpha and a false "better" likewise. False: alpha bounds both together (cost,
    # versions, and every document written before 2026-12-05, which lacks the field)
    one_sided: bool = field(default=False, metadata={"optional": True})

    def change_level(self, stages: int = 1) -> float:
        """The family-wise level at which each of `stages` stages runs the two-sided change test: alpha / stages,
        twice that when alpha bounds each direction alone (a two-sided p here is twice the smaller exact tail,
        so the two-sided test at 2 alpha is the one-sided test of the estimate's direction at alpha; conclude
        then runs Holm per direction)."""
        return (2 if self.one_sided else 1) * self.alpha / stages

    def for_cell(self, key: str) -> "DecisionSettings":
        """The settings one cell is decided with: a compile-time cell's margin is compile_threshold, never
        narrower than --threshold, and the change it must reach to be called worse scales with it (min_change
        keeps its share of the margin)."""
        if self.compile_threshold <= self.threshold or not is_compile_time(key):
            return self
        return replace(self, threshold=self.compile_threshold,
                       min_change=self.min_change * self.compile_threshold / self.threshold)

    def check(self) -> "DecisionSettings":
        if not 0 < self.alpha < (0.5 if self.one_sided else 1):
            raise UsageError(f"--alpha must be between 0 and {0.5 if self.one_sided else 1}, got {self.alpha}")
        if not 0 < self.equivalence_alpha < 1:
            raise UsageError(f"--equivalence-alpha must be between 0 and 1, got {self.equivalence_alpha}")
        if not 0 < self.threshold < 1:  # the same bounds on every command that takes it (versions too)
            raise UsageError(f"--threshold must be a relative change between 0 and 1 (0.10 = 10 %), "
                             f"got {self.threshold}")
        if not 0 <= self.min_change <= self.threshold:
            raise UsageError(f"--min-change must be between 0 and --threshold ({self.threshold}), "
                             f"got {self.min_change}")
        if not 0 < self.compile_threshold < 1:
            raise UsageError(f"--compile-threshold must be a relative change between 0 and 1 (0.25 = 25 %), "
                             f"got {self.compile_threshold}")
        return self


# the alert's, the gate's and bisect's defaults: their alarm is one direction (decision_settings of the CLI agrees)
ALERT_SETTINGS = DecisionSettings(one_sided=True)


def is_compile_time(key: str) -> bool:
    """A cell ("module.Class.method(params) [backend]", or asv's name) that times a first step: compile time."""
    return bool(COMPILE_TIME.search(key.split(" [")[0]))


# ---------- per-process values ----------

def split_processes(samples: Sequence[float], per_process: int) -> list[list[float]]:
    """asv pools the samples of all processes of a commit in order, `per_process` (the benchmark's fixed
    `repeat`) from each: cut them back into processes. A length that is not a multiple means a process
    gave fewer samples: ValueError, never a silent regroup."""
    if per_process < 1:
        raise ValueError(f"per_process must be at least 1, got {per_process}")
    if len(samples) % per_process:
        raise ValueError(f"{len(samples)} samples do not split into processes of {per_process}")
    return [list(samples[i:i + per_process]) for i in range(0, len(samples), per_process)]


def usable(value: float | None) -> bool:
    """A value the log-scale statistics can use: finite and above 0 (a time of 0 or NaN is a broken
    process, not a fast one)."""
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class Grouped:
    """One commit's processes: the median of each good process, in order, and how many were dropped."""

    values: list[float]
    dropped: int  # processes with a sample that is not finite or not above 0

    @property
    def measured(self) -> int:
        return len(self.values) + self.dropped


def group_processes(samples: Sequence[float | None], per_process: int) -> Grouped:
    """Split first (so a bad sample cannot shift the boundaries), then drop the processes that hold one."""
    blocks = split_processes(samples, per_process)
    kept = [statistics.median(b) for b in blocks if all(usable(x) for x in b)]
    return Grouped(kept, len(blocks) - len(kept))


def process_values(samples: Sequence[float], per_process: int) -> list[float]:
    """One value per good process: the median of its samples."""
    return group_processes(samples, per_process).values


def usable_values(values: Sequence[float | None]) -> Grouped:
    """Per-process values from elsewhere (a session, a round): the usable ones, and how many were not."""
    kept = [float(v) for v in values if usable(v)]
    return Grouped(kept, len(values) - len(kept))


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


def pooled_log_sd(a: Values, b: Values) -> float:
    """The robust spread of two commits' log per-process values, each stage of each around its own median."""
    deviations = []
    for stratum in (*strata(a), *strata(b)):
        if stratum:
            centre = statistics.median(math.log(v) for v in stratum)
            deviations += [math.log(v) - centre for v in stratum]
    return _robust_sd(deviations) if len(deviations) >= 3 else math.nan


@lru_cache(maxsize=128)
def _spread_pivot(processes: int, quantile: float) -> float:
    """The `quantile` of robust_log_sd(k normal values) / sigma, by simulation (fixed seed). The ratio does
    not depend on sigma, so it turns one estimate into a confidence bound; it also carries the estimator's
    small-sample bias (IQR / 1.349 of 20 values reads about 0.9 sigma on average)."""
    import numpy as np

    rng = np.random.default_rng(20261130)
    x = rng.standard_normal((20000, processes))
    if processes < 4:
        estimates = x.std(axis=1, ddof=1)
    else:
        q1, q3 = np.percentile(x, [25, 75], axis=1)  # numpy's linear = statistics' "inclusive"
        estimates = (q3 - q1) / 1.349
    return float(np.quantile(estimates, quantile))


def spread_upper_bound(log_sd: float, processes: int, confidence: float = 0.9) -> float:
    """An upper confidence bound of the between-process spread behind a robust estimate from `processes`
    values (normal process effects). Planning from the estimate itself under-powers about half the time."""
    if not math.isfinite(log_sd) or processes < 2:
        return math.nan
    return log_sd / _spread_pivot(processes, 1 - confidence)


def spread_lower_bound(log_sd: float, processes: int, confidence: float = 0.9) -> float:
    """The matching lower bound: the most optimistic spread the data allow (used to give up on a cell only
    when even that could not see the threshold)."""
    if not math.isfinite(log_sd) or processes < 2:
        return math.nan
    return log_sd / _spread_pivot(processes, confidence)


def budget_check(processes: int, settings: DecisionSettings, family: int, stages: int = 1,
                 flag: str = "--processes") -> str | None:
    """Before anything runs: a note (str) when `processes` per side and stage can never call a change at the
    first Holm level (it can still show equivalence), None when it can; UsageError when they could decide
    nothing at all, neither a change nor equivalence (the exact rank-sum test's floor: two-sided p >= 2 /
    C(2n, n), one-sided 1 / C(2n, n), per stage's stratum)."""
    one_sided = (1 / math.comb(2 * processes, processes)) ** stages  # every stage's stratum at its extreme
    family = max(1, family)
    if one_sided > settings.equivalence_alpha / stages / family:
        need = next(n for n in range(2, 200)
                    if (1 / math.comb(2 * n, n)) ** stages <= settings.equivalence_alpha / stages / family)
        raise UsageError(f"{flag} {processes}: with {processes} a side the exact test can decide nothing at these "
                         f"levels ({family} cell(s), {stages} stage(s)), not even equivalence: it needs at least "
                         f"{need}")
    if min_attainable_p(processes, processes) > settings.change_level(stages) / family:
        need = next(n for n in range(2, 200) if min_attainable_p(n, n) <= settings.change_level(stages) / family)
        return (f"note: {flag} {processes}: with {processes} a side no cell can be called slower or faster by "
                f"the first stage (alpha {settings.alpha:g} over {family} cell(s) and {stages} stage(s)), only "
                f"equivalent; {need} could")
    return None


def holm(p_values: Sequence[float], family: int | None = None) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given). `family` counts hypotheses that are not
    given (cells a later stage does not test again: p = 1 for them), so the correction stays the alert's."""
    k = len(p_values)
    padded = list(p_values) + [1.0] * max(0, (family or k) - k)
    order = sorted(range(len(padded)), key=lambda i: padded[i])
    adjusted = [1.0] * len(padded)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(padded) - rank) * padded[i]))
        adjusted[i] = running
    return adjusted[:k]


# ---------- one cell, and a whole alert ----------

@dataclass(frozen=True)
class CellDecision:
    """What the alert says about one cell at one stage, in numbers a reader can check."""

    change: str  # worse | better | equivalent | inconclusive
    ratio: float  # head / base (Hodges-Lehmann) of the metric as measured (seconds: above 1 is slower)
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # two-sided exact rank-sum on per-process values, stratified by stage
    p_adjusted: float  # Holm over every cell of the alert, at this stage
    p_equivalence: float  # TOST against ±threshold
    p_equivalence_adjusted: float  # Holm over every cell, at this stage
    significant: bool  # p_adjusted at or below this stage's level
    level: float  # what the Holm-adjusted two-sided p is held against at this stage: settings.change_level
    equivalence_level: float  # equivalence_alpha / stages
    stage: int  # 1 or 2: the stage whose processes this decision saw (all stages up to it)
    processes_base: int
    processes_head: int
    log_sd: float  # between-process spread behind the detectable change (about the CV)
    log_sd_source: str  # "calibration" or "this comparison"
    observed_log_sd: float  # the spread seen in this comparison, each stage around its own median
    min_detectable_change: float  # relative, e.g. 0.07 = 7 %: found with 80 % power at Holm's strictest level
    threshold: float  # the equivalence margin and the change the alert must be able to see, e.g. 0.10
    min_change: float  # a significant change smaller than this is not called a change, e.g. 0.05
    design: str = UNPAIRED  # unpaired (two groups of processes), alternate or duet (pairs)


def classify(ratio: float, significant: bool, equivalent: bool, min_change: float,
             higher_is_better: bool = False) -> str:
    """worse / better: significant after Holm and the estimate at least `min_change` away from 1 in that
    direction; equivalent: the equivalence test says the change lies within ±threshold (a significant change
    smaller than `min_change` can be both: it is then equivalent, and the row says it was significant);
    else inconclusive: with this noise and this many processes it cannot say, and that is not a pass."""
    if significant and (ratio >= 1 + min_change or ratio <= 1 / (1 + min_change)):
        return BETTER if (ratio > 1) == higher_is_better else WORSE
    if equivalent:
        return EQUIVALENT
    return INCONCLUSIVE


@dataclass(frozen=True)
class Evidence:
    """One cell's tests before the family's correction, from either design (unpaired here, paired in
    fitbench.regress.signedrank): what `conclude` needs to decide it among the others."""

    p_value: float  # two-sided exact test of "no change"
    p_equivalence: float  # TOST against ±threshold
    ratio: float  # head / base, Hodges-Lehmann
    ci_low: float
    ci_high: float
    processes_base: int  # the processes the test used (pairs: one each)
    processes_head: int
    log_sd: float  # the spread behind the detectable change
    log_sd_source: str
    observed_log_sd: float  # the spread seen in this comparison
    detectable: Callable[[float], float]  # level -> the change seen with 80 % power at that level
    design: str = UNPAIRED


def unpaired_evidence(base: Values, head: Values, settings: DecisionSettings, calibrated_log_sd: float | None = None,
                      power: float = 0.8) -> Evidence:
    """The exact rank-sum test, TOST, Hodges-Lehmann interval and power of two groups of processes."""
    ratio, low, high = hodges_lehmann_ci(base, head, settings.confidence)
    observed = pooled_log_sd(base, head)
    sd, source = calibrated_log_sd, "calibration"
    if sd is None or not math.isfinite(sd):
        sd, source = observed, "this comparison"
    pairs = stage_pairs(base, head)  # the stages with processes on both sides: what the test uses
    sizes = [(len(b), len(h)) for b, h in pairs]
    return Evidence(p_value=mann_whitney_u(head, base)[1], p_equivalence=equivalence_p(base, head, settings.threshold),
                    ratio=ratio, ci_low=low, ci_high=high, processes_base=sum(len(b) for b, _ in pairs),
                    processes_head=sum(len(h) for _, h in pairs), log_sd=sd, log_sd_source=source,
                    observed_log_sd=observed,
                    detectable=lambda level: min_detectable_change(sd, 0, 0, level, power, sizes=sizes))


def conclude(evidence: dict[str, Evidence], settings: DecisionSettings = DecisionSettings(),
             higher_is_better: dict[str, bool] | None = None, stage: int = 1, stages: int = 1,
             family: int | None = None) -> dict[str, CellDecision]:
    """Every cell decided among the others: Holm over `family` cells (default: those given; a second stage
    passes the first's count, the cells it does not test again count with p = 1) at the stage's level
    (settings.change_level), for the change and for equivalence. One-sided, Holm runs once per direction, each
    cell in the direction of its estimate and counted with p = 1 in the other: a cell significant one way then
    never lowers the bar for another cell the other way, so each direction keeps alpha under any dependence
    between cells. The detectable change is at Holm's strictest level."""
    names = list(evidence)
    family = max(family or 0, len(names))
    level, equivalence_level = settings.change_level(stages), settings.equivalence_alpha / stages
    if settings.one_sided:
        up = [evidence[c].ratio > 1 for c in names]
        rising = holm([evidence[c].p_value if u else 1.0 for c, u in zip(names, up)], family)
        falling = holm([evidence[c].p_value if not u else 1.0 for c, u in zip(names, up)], family)
        adjusted = [r if u else f for r, f, u in zip(rising, falling, up)]
    else:
        adjusted = holm([evidence[c].p_value for c in names], family)
    adjusted_eq = holm([evidence[c].p_equivalence for c in names], family)
    out = {}
    for i, name in enumerate(names):
        e = evidence[name]
        mine = settings.for_cell(name)
        significant = adjusted[i] <= level
        change = classify(e.ratio, significant, adjusted_eq[i] <= equivalence_level, mine.min_change,
                          (higher_is_better or {}).get(name, False))
        out[name] = CellDecision(
            change=change, ratio=e.ratio, ci_low=e.ci_low, ci_high=e.ci_high, confidence=settings.confidence,
            p_value=e.p_value, p_adjusted=adjusted[i], p_equivalence=e.p_equivalence,
            p_equivalence_adjusted=adjusted_eq[i], significant=significant, level=level,
            equivalence_level=equivalence_level, stage=stage, processes_base=e.processes_base,
            processes_head=e.processes_head, log_sd=e.log_sd, log_sd_source=e.log_sd_source,
            observed_log_sd=e.observed_log_sd, min_detectable_change=e.detectable(level / family),
            threshold=mine.threshold, min_change=mine.min_change, design=e.design)
    return out


def decide(cells: dict[str, tuple[Values, Values]], settings: DecisionSettings = DecisionSettings(),
           calibrated_log_sd: dict[str, float] | None = None, higher_is_better: dict[str, bool] | None = None,
           power: float = 0.8, stage: int = 1, stages: int = 1, family: int | None = None) -> dict[str, CellDecision]:
    """Every cell's decision from its per-process values {cell: (base, head)}, each side a flat list or one
    list per stage (unpaired_evidence, then conclude). The detectable change uses the calibrated spread where
    there is one, else the spread seen here."""
    evidence = {name: unpaired_evidence(base, head, settings.for_cell(name), (calibrated_log_sd or {}).get(name),
                                        power)
                for name, (base, head) in cells.items()}
    return conclude(evidence, settings, higher_is_better, stage, stages, family)


# ---------- the second stage ----------

def worth_continuing(decision: CellDecision, more: int, settings: DecisionSettings, family: int,
                     stages: int = 2, power: float = 0.8) -> str | None:
    """Why an inconclusive cell is not given a second stage of `more` processes per commit (None: it is):
    even the lowest spread this comparison allows (its 90 % lower bound) would leave the threshold out of
    reach. Stopping for futility only ever removes rejections, so it costs no error rate."""
    if decision.change in DECIDED:
        return "decided"
    processes = decision.processes_base + decision.processes_head
    optimistic = spread_lower_bound(decision.observed_log_sd, processes)
    if not math.isfinite(optimistic):
        return None
    reach = min_detectable_change(optimistic, 0, 0, settings.change_level(stages) / family, power,
                                  sizes=[(decision.processes_base, decision.processes_head), (more, more)])
    if reach > decision.threshold:  # the cell's own margin (a compile-time cell's is wider)
        total = min(decision.processes_base, decision.processes_head) + more
        return (f"futile: at the spread seen here (lowest plausible {100 * optimistic:.1f} %) {total} processes "
                f"per commit could detect {'∞' if math.isinf(reach) else f'{100 * reach:.1f} %'}, not "
                f"{100 * decision.threshold:.1f} %")  # one decimal: 10.4 % is not 10 %
    return None


FASTER, SLOWER = "faster", "slower"


@dataclass
class SpeedComparison:
    """A CellDecision on seconds per step, told as speed: samples/s of `column` ÷ `reference` with its interval
    and faster | slower | equivalent | inconclusive (what `versions` and `cost` report per cell)."""

    column: str
    reference: str
    speed_ratio: float  # samples/s of `column` ÷ `reference` (Hodges-Lehmann over per-process values)
    ci_low: float | None  # null: too few processes for an interval at this confidence
    ci_high: float | None
    confidence: float
    p_value: float  # exact two-sided rank-sum on per-process step times
    p_adjusted: float  # Holm over every comparison of the document
    verdict: str  # faster | slower | equivalent | inconclusive
    processes: list[int]  # [reference, column]
    min_detectable_change: float | None  # relative; null: this many processes cannot detect any change

    @classmethod
    def from_decision(cls, d: CellDecision, column: str, reference: str) -> "SpeedComparison":
        # the decision's ratio is of seconds per step (column ÷ reference); samples/s is its inverse
        bounded = d.ci_low > 0 and math.isfinite(d.ci_high)
        return cls(column=column, reference=reference, speed_ratio=1 / d.ratio,
                   ci_low=1 / d.ci_high if bounded else None, ci_high=1 / d.ci_low if bounded else None,
                   confidence=d.confidence, p_value=d.p_value, p_adjusted=d.p_adjusted,
                   verdict={WORSE: SLOWER, BETTER: FASTER}.get(d.change, d.change),
                   processes=[d.processes_base, d.processes_head],
                   min_detectable_change=d.min_detectable_change if math.isfinite(d.min_detectable_change) else None)
