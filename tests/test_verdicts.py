"""The alert's verdicts on synthetic two-level samples: exact tests with ties, zeros and NaN, grouping by the
stored layout, failed rounds, equivalence instead of "unchanged", exit statuses, and the two stages'
family-wise error rate (a simulation of 10,000 two-stage A/A alerts, about 4 s)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from fitbench.regress import alertdoc, decide, ranksum, unpaired
from fitbench.regress.alertdoc import exit_status
from fitbench.regress.alertreport import headline, render_markdown
from fitbench.regress.asvdata import CellResult, samples_per_process
from fitbench.regress.decide import DecisionSettings
from fitbench.regress.unpaired import compare


def cell(samples: list[float] | None, per_process: int | None = 5, value: float | None = 0.005,
         backend: str = "tensorflow", batch: str = "256") -> CellResult:
    return CellResult(benchmark="bench_fit.StepTime.time_step", params={"batch_size": batch}, backend=backend,
                      env_name=f"env-{backend}", unit="seconds", value=value, samples=samples, per_process=per_process)


def processes(rng: random.Random, n: int, spread: float, scale: float = 1.0, per_process: int = 5) -> list[float]:
    out = []
    for _ in range(n):
        level = 0.005 * scale * math.exp(rng.gauss(0, spread))
        out += [level * math.exp(rng.gauss(0, 0.02)) for _ in range(per_process)]
    return out


# ---------- exact tests with ties ----------

def brute_force_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of mid-rank U by enumerating every split of the pooled values."""
    def u(x: list[float], y: list[float]) -> float:
        return sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in x for q in y)

    pooled, observed, low, high, total = a + b, u(a, b), 0, 0, 0
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        value = u(x, y)
        low, high, total = low + (value <= observed + 1e-9), high + (value >= observed - 1e-9), total + 1
    return min(1.0, 2 * min(low, high) / total)


@pytest.mark.parametrize("a,b", [([2, 2, 2, 2], [1, 1, 1, 1]), ([2, 2, 3, 3], [1, 1, 1, 2]),
                                 ([1, 1, 2, 2, 3], [2, 3, 3, 4, 4]), ([5, 5, 5], [5, 5, 5, 5]),
                                 ([1.0, 1.0, 1.1, 1.2, 1.2], [1.2, 1.3, 1.3, 1.3, 1.4])])
def test_p_with_ties_is_the_exact_permutation_p(a, b):
    assert ranksum.mann_whitney_u(a, b)[1] == pytest.approx(brute_force_p(a, b), rel=1e-9)


def test_tied_values_no_longer_get_the_normal_approximation():
    # the cases: 4 vs 4 and 5 vs 5 fully separated with tied values inside each commit
    assert ranksum.mann_whitney_u([2, 2, 2, 2], [1, 1, 1, 1])[1] == pytest.approx(2 / 70)  # was 0.013
    assert ranksum.mann_whitney_u([2, 2, 3, 3, 3], [1, 1, 1, 1, 1])[1] == pytest.approx(2 / 252)  # was 0.0040


def test_the_stratified_test_is_the_exact_convolution_of_the_stages():
    # two stages of 3 vs 3, each fully separated: P(U1 + U2 = 18) = (1/20)^2, two-sided
    p = ranksum.mann_whitney_u([[4.0, 5.0, 6.0], [14.0, 15.0, 16.0]], [[1.0, 2.0, 3.0], [11.0, 12.0, 13.0]])[1]
    assert p == pytest.approx(2 / 400)
    # pooled, the same values would be far less significant: the second stage sits far above the first
    assert ranksum.mann_whitney_u([4.0, 5.0, 6.0, 14.0, 15.0, 16.0], [1.0, 2.0, 3.0, 11.0, 12.0, 13.0])[1] > 0.15


def test_the_stratified_interval_covers_a_shift_across_drifting_stages():
    rng = random.Random(3)
    covered, trials = 0, 300
    for _ in range(trials):
        drift = math.exp(rng.gauss(0, 0.3))  # stage 2 ran on a slower machine, both commits alike
        base = [[math.exp(rng.gauss(0, 0.05)) for _ in range(6)], [drift * math.exp(rng.gauss(0, 0.05))
                                                                     for _ in range(6)]]
        head = [[1.1 * math.exp(rng.gauss(0, 0.05)) for _ in range(6)], [1.1 * drift * math.exp(rng.gauss(0, 0.05))
                                                                         for _ in range(6)]]
        _, low, high = ranksum.hodges_lehmann_ci(base, head)
        covered += low <= 1.1 <= high
    assert covered / trials >= 0.92


# ---------- zeros, NaN, grouping ----------

def test_a_process_with_a_zero_or_nan_sample_is_dropped_after_the_split():
    samples = [1.0, 1.1, 0.9, 2.0, math.nan, 2.1, 3.0, 3.1, 0.0, 4.0, 4.1, 3.9]
    grouped = decide.group_processes(samples, 3)
    assert grouped.values == [1.0, 4.0] and grouped.dropped == 2 and grouped.measured == 4
    # dropping the NaN first would have shifted every boundary after it
    assert decide.usable_values([1.0, 0.0, math.nan, None, -1.0, 2.0]) == decide.Grouped([1.0, 2.0], 4)


def test_zeros_and_nans_in_an_alert_cell_are_dropped_processes_not_a_crash():
    rng = random.Random(4)
    base = processes(rng, 10, 0.03)
    head = processes(rng, 10, 0.03)
    base[7], head[12] = 0.0, math.nan  # one sample of process 2 of base, of process 3 of head
    [row] = compare({"c": cell(base)}, {"c": cell(head)})
    assert row.processes_base == row.processes_head == 9 and row.processes_dropped == [1, 1]
    assert row.change in (decide.EQUIVALENT, decide.INCONCLUSIVE) and "dropped 1 base process and 1 head process" \
        in row.note
    every = [0.0] * 50
    [row] = compare({"c": cell(every)}, {"c": cell(processes(rng, 10, 0.03))})
    assert row.change == decide.INCONCLUSIVE and row.method == "fewer than 2 usable processes"


def test_samples_that_do_not_split_mark_the_cell_instead_of_regrouping():
    rng = random.Random(5)
    rows = compare({"c": cell(processes(rng, 10, 0.03)[:-2])}, {"c": cell(processes(rng, 10, 0.03))})
    assert rows[0].change == decide.INCONCLUSIVE and rows[0].method == "samples do not split into processes"
    assert rows[0].note.startswith("48 samples do not split into processes of 5")
    assert exit_status(rows) == alertdoc.EXIT_UNDECIDED


def test_n_a_on_the_head_only_holds_the_gate_new_on_the_head_does_not():
    rng = random.Random(14)
    samples = processes(rng, 10, 0.03)
    lost = compare({"c": cell(samples)}, {"c": cell(None, value=math.nan)})
    assert lost[0].change == decide.INCONCLUSIVE and lost[0].note.startswith("n/a on head")
    assert exit_status(lost) == alertdoc.EXIT_UNDECIDED
    new = compare({"c": cell(None, value=math.nan)}, {"c": cell(samples)})
    assert new[0].change == "skipped" and new[0].note == "n/a on base: new on head" and exit_status(new) == 0


def test_the_layout_comes_from_the_stored_version_not_today_s_profile():
    assert samples_per_process("StepTime 2; samples-per-process=10") == 10
    assert samples_per_process("fitbench StepTime; samples-per-process=5") == 5
    assert samples_per_process("9f2c0a1e" * 8) is None and samples_per_process(None) is None
    rng = random.Random(6)
    # stored under a profile of 10 samples per process: 6 processes, not 12 pseudo-processes of 5
    stored = processes(rng, 6, 0.03, per_process=10)
    assert cell(stored, per_process=10).process_values().__len__() == 6


def test_the_suite_writes_its_layout_into_the_benchmark_version():
    from benchmarks import bench_fit, common

    assert samples_per_process(bench_fit.StepTime.version) == common.PROFILE["repeat"] == bench_fit.StepTime.repeat
    from fitbench import asvsuite

    assert samples_per_process(asvsuite.StepTime.version) == asvsuite.REPEAT


def test_a_failed_round_is_reported_and_stage_two_keeps_stage_one():
    rng = random.Random(7)
    b, a = decide.group_processes(processes(rng, 10, 0.03), 5), decide.group_processes(processes(rng, 7, 0.03), 5)
    row = alertdoc.Comparison(benchmark="x", params={}, unit="seconds", before=1, after=1, change="")
    unpaired._note_lost(row, b, a, 10)
    assert row.processes_missing == [0, 3] and row.note.startswith("processes missing (head 3): a round failed")
    first = [1.0, 2.0, 3.0]
    assert unpaired._stage_two_samples(first, first + [4.0, 5.0]) == ([4.0, 5.0], False)
    # asv drops what it held when a round fails: all it holds then is stage 2's
    assert unpaired._stage_two_samples(first, [4.0, 5.0]) == ([4.0, 5.0], True)


# ---------- verdicts and exit statuses ----------

def test_a_significant_small_change_is_equivalent_and_says_it_was_significant():
    rng = random.Random(8)
    rows = compare({"c": cell(processes(rng, 20, 0.01))}, {"c": cell(processes(rng, 20, 0.01, scale=1.03))})
    row = rows[0]
    assert row.change == decide.EQUIVALENT and row.significant and 1.01 < row.ratio < 1.05
    assert "a significant +" in row.note and "under --min-change 5.0 %" in row.note
    assert exit_status(rows) == alertdoc.EXIT_OK


def test_a_change_at_the_margin_is_not_called_equivalent():
    rng = random.Random(9)
    called, trials = 0, 300
    for _ in range(trials):
        d = decide.decide({"c": ([math.exp(rng.gauss(0, 0.03)) for _ in range(10)],
                                 [1.10 * math.exp(rng.gauss(0, 0.03)) for _ in range(10)])},
                          DecisionSettings(min_change=0.10))["c"]
        called += d.change == decide.EQUIVALENT
    assert called / trials <= 0.05 + 0.03  # equivalence_alpha, with sampling slack


def test_exit_statuses_and_the_first_line():
    def row(change: str) -> alertdoc.Comparison:
        return alertdoc.Comparison(benchmark="b", params={}, unit="seconds", before=1.0, after=1.0, change=change)

    assert exit_status([row("equivalent"), row("better"), row("skipped")]) == 0
    assert exit_status([row("equivalent"), row("inconclusive")]) == alertdoc.EXIT_UNDECIDED == 3
    assert exit_status([row("inconclusive")], undecided_ok=True) == 0
    assert exit_status([row("worse"), row("inconclusive")]) == 1
    assert exit_status([row("worse"), row("failed")]) == 2  # a failure is never read as "found"
    from dataclasses import asdict

    report = {"base": "a" * 40, "head": "b" * 40, "exit_status": 3,
              "comparisons": [asdict(row("inconclusive")), asdict(row("equivalent"))],
              "settings": asdict(DecisionSettings()), "bench": "x"}
    assert headline(report) == ("## fitbench alert `aaaaaaaaaa` → `bbbbbbbbbb`: **undecided**: 1 of 2 cells could not "
                                "be decided; not a pass (exit 3)")
    assert render_markdown(report).splitlines()[0] == headline(report)
    assert "**pass**" in headline({**report, "comparisons": [asdict(row("equivalent"))], "exit_status": 0})
    assert "**regression**: 1 of 1 cells worse (exit 1)" in headline({**report, "comparisons": [asdict(row("worse"))],
                                                                      "exit_status": 1})


def test_a_noisy_cell_is_stopped_for_futility_a_near_one_gets_a_second_stage():
    rng = random.Random(10)
    settings = DecisionSettings()
    loud = decide.decide({"c": ([math.exp(rng.gauss(0, 0.5)) for _ in range(10)],
                                [math.exp(rng.gauss(0, 0.5)) for _ in range(10)])}, settings, stages=2)["c"]
    assert loud.change == decide.INCONCLUSIVE
    assert decide.worth_continuing(loud, 10, settings, family=3).startswith("futile: at the spread seen here")
    near = decide.decide({"c": ([math.exp(0.06 * x) for x in (-1, -0.5, 0, 0.5, 1, -0.2, 0.2, 0.7, -0.7, 0.1)],
                                [1.06 * math.exp(0.06 * x) for x in (-1, -0.5, 0, 0.5, 1, -0.2, 0.2, 0.7, -0.7, 0.1)])},
                         settings, stages=2)["c"]
    assert near.change == decide.INCONCLUSIVE and decide.worth_continuing(near, 10, settings, family=3) is None


def test_the_gate_exits_3_when_a_benchmark_is_undecided(tmp_path):
    import json

    from fitbench.regress.gate import gate

    def session(name: str, medians: dict[str, float]) -> str:
        path = tmp_path / name
        path.write_text(json.dumps({"benchmarks": [{"fullname": k, "stats": {"median": v}}
                                                   for k, v in medians.items()]}))
        return str(path)

    rng = random.Random(11)
    base = [session(f"a{i}.json", {"t": 0.01 * math.exp(rng.gauss(0, 0.3))}) for i in range(6)]
    head = [session(f"b{i}.json", {"t": 0.01 * math.exp(rng.gauss(0, 0.3))}) for i in range(5)]
    head.append(session("b-zero.json", {"t": 0.0}))  # a broken session: dropped, counted
    doc = gate(base, head)
    assert doc["exit_status"] == 3 and doc["rows"][0]["change"] == "inconclusive"
    assert doc["rows"][0]["sessions_dropped"] == [0, 1] and doc["rows"][0]["sessions_head"] == 5
    assert gate(base, head, undecided_ok=True)["exit_status"] == 0


# ---------- the two stages' family-wise error rate ----------

def simulated_alert(rng: random.Random, settings: DecisionSettings, change: float, spreads: tuple[float, ...],
                    n1: int = 10, n2: int = 10) -> dict[str, decide.CellDecision]:
    """One two-stage alert on synthetic processes: normal process effects with a rare wild process, a drift
    between the stages that hits both commits alike, the alert's own continuation rule."""
    def side(n: int, spread: float, level: float) -> list[float]:
        return [level * math.exp(rng.gauss(0, spread)) * (1.5 if rng.random() < 0.03 else 1.0) for _ in range(n)]

    first = {f"c{i}": (side(n1, s, 1.0), side(n1, s, 1.0 + change)) for i, s in enumerate(spreads)}
    family = len(first)
    out = decide.decide(first, settings, stage=1, stages=2, family=family)
    going = [k for k, d in out.items() if decide.worth_continuing(d, n2, settings, family) is None]
    if going:
        drift = math.exp(rng.gauss(0, 0.2))
        second = {}
        for k in going:
            spread = spreads[int(k[1:])]
            second[k] = ([first[k][0], side(n2, spread, drift)], [first[k][1], side(n2, spread, drift * (1 + change))])
        out.update(decide.decide(second, settings, stage=2, stages=2, family=family))
    return out


def test_two_stage_aa_alerts_keep_the_family_wise_rate_over_10000_trials():
    rng = random.Random(20261130)
    settings = DecisionSettings()
    trials, alarms, second_stages = 10_000, 0, 0
    for _ in range(trials):
        out = simulated_alert(rng, settings, 0.0, (0.03, 0.06, 0.12))
        alarms += any(d.change in (decide.WORSE, decide.BETTER) for d in out.values())
        second_stages += any(d.stage == 2 for d in out.values())
    # alpha = 0.01 family-wise over three cells and two stages; three standard errors of slack
    assert alarms / trials <= settings.alpha + 3 * math.sqrt(settings.alpha * (1 - settings.alpha) / trials)
    assert second_stages > trials // 10  # the second stage really was exercised


def test_two_stage_alerts_catch_a_ten_percent_change_and_never_call_it_equivalent():
    rng = random.Random(11302026)
    settings = DecisionSettings()
    trials, caught, equivalent = 1000, 0, 0
    for _ in range(trials):
        out = simulated_alert(rng, settings, 0.10, (0.03, 0.04))
        caught += all(d.change == decide.WORSE for d in out.values())
        equivalent += any(d.change == decide.EQUIVALENT for d in out.values())
    assert caught / trials >= 0.9 and equivalent / trials <= settings.equivalence_alpha
