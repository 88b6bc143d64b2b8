"""The paired design's statistics on synthetic pairs (fitbench.regress.signedrank): exact p-values checked
against brute-force sign flips (ties and zeros included), the stratified test over runners with unequal
pairs, the interval's coverage, the planning floor, and the family-wise rate of a two-stage paired alert
over 10,000 simulated A/A decisions (a few seconds)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest

from fitbench.errors import UsageError
from fitbench.regress import decide, signedrank
from fitbench.regress.decide import DecisionSettings


def brute_force_p(strata: list[list[float]], shift: float = 0.0) -> float:
    """Two-sided p by enumerating every sign flip of every stratum's non-zero values (ranks within strata)."""
    def t_plus(values: list[list[float]]) -> float:
        total = 0.0
        for s in values:
            nonzero = [v for v in s if v != 0]
            ranked = sorted(abs(v) for v in nonzero)
            for v in nonzero:
                if v > 0:
                    ties = [i + 1 for i, a in enumerate(ranked) if a == abs(v)]
                    total += sum(ties) / len(ties)
        return total

    shifted = [[v - shift for v in s] for s in strata]
    observed = t_plus(shifted)
    flat = [(i, j) for i, s in enumerate(shifted) for j in range(len(s))]
    low = high = 0
    count = 0
    for signs in itertools.product((1, -1), repeat=len(flat)):
        flipped = [list(s) for s in shifted]
        for (i, j), sign in zip(flat, signs):
            flipped[i][j] = abs(flipped[i][j]) * sign
        t = t_plus(flipped)
        low += t <= observed + 1e-9
        high += t >= observed - 1e-9
        count += 1
    return min(1.0, 2 * min(low, high) / count)


def test_exact_p_matches_brute_force_with_ties_zeros_and_strata():
    rng = random.Random(3)
    cases = [
        [[0.05, 0.02, -0.01, 0.04, 0.03, 0.06, 0.01]],  # no ties
        [[0.02, 0.02, -0.02, 0.04, 0.04, 0.01, 0.0, 0.03]],  # ties in |d| across signs, and a zero (left out)
        [[0.01, 0.03, -0.02, 0.05], [0.2, -0.1, 0.3, 0.25, 0.4]],  # two runners, unequal pairs and spreads
        [[round(rng.gauss(0.01, 0.02), 2) for _ in range(6)], [round(rng.gauss(0, 0.05), 2) for _ in range(5)]],
    ]
    for strata in cases:
        assert signedrank.signed_rank_p(strata) == pytest.approx(brute_force_p(strata), rel=1e-9)


def test_the_stratified_test_ranks_within_each_runner():
    # a noisy runner's large ratios do not outweigh a quiet runner's: the quiet runner's eight positive pairs
    # count with its own ranks, however large the noisy runner's values are
    quiet = [0.02, 0.03, 0.025, 0.04, 0.035, 0.03, 0.045, 0.02]
    noisy = [0.5, -0.6, 0.4, -0.45, 0.7, -0.55]
    assert signedrank.signed_rank_p([quiet, noisy]) < signedrank.signed_rank_p([quiet + noisy])
    assert signedrank.signed_rank_p([quiet, noisy]) == pytest.approx(brute_force_p([quiet, noisy]), rel=1e-9)
    # an empty stratum (a runner whose pairs all failed) changes nothing
    assert signedrank.signed_rank_p([quiet, []]) == signedrank.signed_rank_p([quiet])
    assert signedrank.signed_rank_p([]) == 1.0 and signedrank.equivalence_p([[]], 0.1) == 1.0
    # the floor is set by all the pairs together: three runners of 4 pairs reach what 12 on one runner reach
    agreeing = [[0.01, 0.02, 0.03, 0.04]] * 3
    assert signedrank.signed_rank_p(agreeing) == pytest.approx(2 / 2 ** 12) == signedrank.signed_rank_p(
        [[0.01 * i for i in range(1, 13)]])


def test_equivalence_and_the_interval_agree_with_the_test():
    pairs = [math.log(1.02) + d for d in (-0.01, 0.004, 0.012, -0.006, 0.0, 0.008, -0.003, 0.01, -0.012, 0.002)]
    ratio, low, high = signedrank.hodges_lehmann_ci(pairs)
    assert 1.0 < ratio < 1.04 and low < ratio < high
    assert signedrank.equivalence_p(pairs, 0.10) < 0.01  # well inside ±10 %
    assert signedrank.equivalence_p(pairs, 0.01) > 0.05  # not inside ±1 %
    # the interval is the set of ratios the test does not reject: just outside it rejects, just inside not
    for bound, outward in ((low, 0.999), (high, 1.001)):
        assert signedrank.signed_rank_p([p - math.log(bound * outward) for p in pairs]) <= 0.05
        assert signedrank.signed_rank_p([p - math.log(bound / outward) for p in pairs]) > 0.05


def test_the_interval_covers_the_true_ratio_at_its_level():
    rng = random.Random(11)
    trials, covered = 2000, 0
    for _ in range(trials):
        pairs = [math.log(1.05) + rng.gauss(0, 0.03) * (3 if rng.random() < 0.1 else 1) for _ in range(12)]
        _, low, high = signedrank.hodges_lehmann_ci(pairs, 0.95)
        covered += low <= 1.05 <= high
    assert abs(covered / trials - 0.95) < 3 * math.sqrt(0.95 * 0.05 / trials) + 0.01


def test_the_floor_of_the_exact_test_sets_the_fewest_pairs():
    assert signedrank.min_attainable_p(6) == pytest.approx(0.03125)  # 6 pairs: the first that can reach 0.05
    assert signedrank.min_pairs(0.05) == 6 and signedrank.min_pairs(0.01 / 2 / 3) == 11
    assert signedrank.min_detectable_change(0.03, [10], 0.01 / 2 / 3) == math.inf  # below the floor: nothing
    small, large = (signedrank.min_detectable_change(0.03, [n], 0.01 / 2 / 3) for n in (12, 20))
    assert 0 < large < small < 0.10
    assert signedrank.pairs_needed(0.03, 0.05, 0.01 / 2 / 3) in range(12, 20)


def test_too_few_pairs_say_before_anything_runs_whether_a_later_stage_could_still_call_a_cell_worse():
    from fitbench.regress.pairedalert import plan_pairs

    keys = ["bench_fit.StepTime.time_step(256) [tensorflow]"]  # one timed cell: the floor is 9 pairs at stage 1
    lines: list[str] = []
    assert plan_pairs(4, keys, DecisionSettings(), 2, lines.append)[0] == [4, 4]
    assert "with 8 pairs per cell over 2 stage(s) no cell can be called worse" in lines[-1]
    assert "only say equivalent or undecided; 5 a stage could" in lines[-1]
    plan_pairs(6, keys, DecisionSettings(), 2, lines.append)
    assert "only once stage 2 has run (12 pairs)" in lines[-1] and "however much" not in lines[-1]
    before = len(lines)
    plan_pairs(9, keys, DecisionSettings(), 2, lines.append)
    assert len(lines) == before  # enough: nothing to say
    # a runner's share of a decision over several runners (--machine): below every floor, said, not refused
    three = [f"bench_fit.StepTime.time_step(256) [{b}]" for b in ("tensorflow", "jax", "torch")]
    with pytest.raises(UsageError, match="can decide nothing"):
        plan_pairs(4, three, DecisionSettings(), 1, lines.append)
    assert plan_pairs(4, three, DecisionSettings(), 1, lines.append, share="runner-1")[0] == [4]
    assert "on runner runner-1: alone these pairs can decide nothing" in lines[-1] and "need 10 per cell" in lines[-1]


def test_the_default_alert_plans_pairs_for_its_timed_cells_only():
    # the default set: StepTime(256), the determinism tracks and the trace count (parametrised: an exact track
    # too) on three backends: 3 timed cells, whose floor is 11 pairs over two stages; the trace cells once
    # counted as timed (6 cells: 12 + 1 pairs a stage, a round of pairs more than needed)
    from fitbench.regress.alertdoc import is_exact
    from fitbench.regress.pairedalert import plan_pairs

    keys = [f"{name} [{backend}]" for backend in ("tensorflow", "jax", "torch")
            for name in ("bench_fit.StepTime.time_step(256)", "bench_compile.Traces.track_step_traces('functional', "
                         "True)", "bench_determinism.Determinism.track_run_to_run_identical")]
    assert [is_exact(k) for k in keys[:3]] == [False, True, True]
    assert plan_pairs(None, keys, DecisionSettings(), 2, print)[0] == [12, 12]


def simulated_paired_alert(rng: random.Random, settings: DecisionSettings, change: float,
                           spreads: tuple[float, ...], n1: int = 12, n2: int = 12,
                           runners: tuple[float, ...] = (1.0,)) -> dict[str, decide.CellDecision]:
    """One two-stage paired alert on synthetic pairs: each pair's log ratio = change + a process effect on each
    side (normal, with a rare wild process) + the load of that moment, which pairing cancels; several runners
    with their own noise level and unequal pairs; the alert's own continuation rule."""
    from fitbench.regress.pairedalert import futile

    def pairs(n: int, spread: float, scale: float) -> list[float]:
        out = []
        for _ in range(n):
            a, b = (rng.gauss(0, spread * scale) + (0.4 if rng.random() < 0.02 else 0.0) for _ in range(2))
            out.append(math.log1p(change) + b - a)
        return out

    def strata(n: int, spread: float) -> list[list[float]]:
        return [pairs(n + i, spread, scale) for i, scale in enumerate(runners)]

    first = {f"c{i}": strata(n1, s) for i, s in enumerate(spreads)}
    family = len(first)
    evidence = {k: signedrank.paired_evidence(v, settings, "alternate") for k, v in first.items()}
    out = decide.conclude(evidence, settings, stage=1, stages=2, family=family)
    going = [k for k, d in out.items() if d.change == decide.INCONCLUSIVE and futile(d, n2, settings, family) is None]
    if going:
        more = {k: [a + b for a, b in zip(first[k], strata(n2, spreads[int(k[1:])]))] for k in going}
        evidence = {k: signedrank.paired_evidence(v, settings, "alternate") for k, v in more.items()}
        out.update(decide.conclude(evidence, settings, stage=2, stages=2, family=family))
    return out


def test_two_stage_paired_aa_alerts_keep_the_family_wise_rate_over_10000_trials():
    rng = random.Random(20261203)
    settings = DecisionSettings()
    trials, alarms, second_stages, equivalent = 10_000, 0, 0, 0
    for i in range(trials):
        # half the trials on two runners of unequal noise and unequal pairs
        out = simulated_paired_alert(rng, settings, 0.0, (0.02, 0.04, 0.08), runners=(1.0, 3.0) if i % 2 else (1.0,))
        alarms += any(d.change in (decide.WORSE, decide.BETTER) for d in out.values())
        second_stages += any(d.stage == 2 for d in out.values())
        equivalent += sum(d.change == decide.EQUIVALENT for d in out.values())
    # alpha = 0.01 family-wise over three cells and two stages; three standard errors of slack
    assert alarms / trials <= settings.alpha + 3 * math.sqrt(settings.alpha * (1 - settings.alpha) / trials)
    assert second_stages > trials // 20  # the second stage really was exercised
    assert equivalent > trials  # and most cells are decided: on average more than one in three per alert



def test_one_sided_alerts_keep_each_direction_at_alpha_over_10000_trials():
    # the alert's default (ALERT_SETTINGS, and the CLI without --two-sided): alpha bounds a false "worse" alone,
    # and a false "better" alone; the two-sided test runs at 2 alpha, so both together may reach 2 alpha
    rng = random.Random(20261205)
    settings = decide.ALERT_SETTINGS
    trials, worse, better = 10_000, 0, 0
    for i in range(trials):
        out = simulated_paired_alert(rng, settings, 0.0, (0.02, 0.04, 0.08), n1=11, n2=11,
                                     runners=(1.0, 3.0) if i % 2 else (1.0,))
        worse += any(d.change == decide.WORSE for d in out.values())
        better += any(d.change == decide.BETTER for d in out.values())
    slack = 3 * math.sqrt(settings.alpha * (1 - settings.alpha) / trials)
    assert worse / trials <= settings.alpha + slack and better / trials <= settings.alpha + slack
    assert worse + better > 0  # the level is reached at all: 11 pairs are above the one-sided floor


def test_one_sided_alarm_needs_one_pair_fewer_before_it_can_call_a_cell_worse():
    from fitbench.regress.pairedalert import change_floor, plan_pairs

    six = [f"bench_fit.StepTime.time_step({b}) [{be}]" for be in ("tensorflow", "jax", "torch") for b in (32, 256)]
    two_sided, one_sided = DecisionSettings(), decide.ALERT_SETTINGS
    assert change_floor(six, two_sided, 2) == 12 and change_floor(six, one_sided, 2) == 11
    assert plan_pairs(None, six, two_sided, 2, print)[0] == [13, 13]
    assert plan_pairs(None, six, one_sided, 2, print)[0] == [12, 12]
    # eleven pairs all worse: one-sided, the strictest Holm level of six cells at stage 1 is reached
    evidence = {k: signedrank.paired_evidence([0.1 + 0.001 * i for i in range(11)], one_sided, "alternate")
                for k in six}
    assert all(d.change == decide.WORSE for d in decide.conclude(evidence, one_sided, stage=1, stages=2).values())
    assert not any(d.change == decide.WORSE for d in decide.conclude(evidence, two_sided, stage=1, stages=2).values())
    with pytest.raises(UsageError, match="between 0 and 0.5"):
        dataclasses.replace(one_sided, alpha=0.6).check()


def test_one_sided_holm_runs_per_direction_so_a_significant_better_cell_never_helps_a_worse_one():
    # two cells at stage 1 of 1, one-sided alpha 0.01: the change test's level is 0.02, Holm's first 0.01
    settings = decide.ALERT_SETTINGS
    faster = [-0.1 - 0.001 * i for i in range(9)]  # p = 2 / 512 = 0.0039: at or under 0.01, Holm's first level
    slower = [0.001, -0.002] + [0.1 + 0.001 * i for i in range(7)]  # p = 6 / 512 = 0.0117: over 0.01, under 0.02
    evidence = {k: signedrank.paired_evidence(v, settings, "alternate") for k, v in (("f", faster), ("s", slower))}
    assert evidence["f"].p_value < 0.01 < evidence["s"].p_value < 0.02
    out = decide.conclude(evidence, settings)
    # one Holm over both (the two-sided rule's way) would have stepped down to 0.02 after the better cell and
    # called the slower one worse: per direction, it stays held against 0.01
    assert out["f"].change == decide.BETTER and out["s"].change != decide.WORSE
    assert out["s"].p_adjusted == pytest.approx(2 * evidence["s"].p_value)
    alone = decide.conclude({"s": evidence["s"]}, settings, family=2)
    assert alone["s"].p_adjusted == out["s"].p_adjusted

def test_paired_alerts_catch_a_ten_percent_change_and_rarely_call_it_equivalent():
    rng = random.Random(12032026)
    settings = DecisionSettings()
    trials, caught, called_equivalent = 500, 0, 0
    for _ in range(trials):
        out = simulated_paired_alert(rng, settings, 0.10, (0.03, 0.05))
        caught += all(d.change == decide.WORSE for d in out.values())
        called_equivalent += any(d.change == decide.EQUIVALENT for d in out.values())
    # a change of exactly the threshold is the boundary of "equivalent": called so at most equivalence_alpha
    assert caught / trials > 0.9 and called_equivalent / trials <= settings.equivalence_alpha
