"""The alert's statistics, fed synthetic samples from a two-level noise model: a per-process effect (most of
the variance, as measured on this machine) plus step-to-step noise inside each process."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict

import pytest

from fitbench.regress import decide, ranksum
from fitbench.regress.alertdoc import Comparison, exit_status
from fitbench.regress.alertreport import render_markdown
from fitbench.regress.asvdata import CellResult
from fitbench.regress.calibration import Calibration, CellNoise
from fitbench.regress.decide import DecisionSettings
from fitbench.regress.unpaired import compare

STEP_S = 0.005  # a batch-32 step


def process_samples(rng: random.Random, processes: int, per_process: int, between_cv: float, within_cv: float,
                    scale: float = 1.0) -> list[float]:
    """asv's pooled samples of one commit: `processes` blocks of `per_process` windows each."""
    out = []
    for _ in range(processes):
        level = STEP_S * scale * math.exp(rng.gauss(0, between_cv))
        out += [level * math.exp(rng.gauss(0, within_cv)) for _ in range(per_process)]
    return out


def cell(samples: list[float] | None, per_process: int | None = 5, value: float | None = None,
         benchmark: str = "bench_fit.StepTime.time_step", backend: str = "tensorflow",
         params: dict[str, str] | None = None, unit: str = "seconds") -> CellResult:
    import statistics

    return CellResult(benchmark=benchmark, params=params if params is not None else {"batch_size": "32"},
                      backend=backend, env_name=f"env-{backend}", unit=unit,
                      value=value if value is not None or samples is None else statistics.median(samples),
                      samples=samples, per_process=per_process)


# ---------- per-process values ----------

def test_samples_split_back_into_processes_in_order():
    samples = [1.0, 2.0, 3.0, 10.0, 11.0, 12.0]
    assert decide.split_processes(samples, 3) == [[1.0, 2.0, 3.0], [10.0, 11.0, 12.0]]
    assert decide.process_values(samples, 3) == [2.0, 11.0]
    with pytest.raises(ValueError, match="do not split"):
        decide.split_processes(samples[:-1], 3)


def test_between_process_cv_is_the_log_sd():
    assert decide.between_process_cv([1.0, 1.0, 1.0]) == 0.0
    values = [math.exp(x) for x in (-0.1, 0.0, 0.1)]
    assert decide.between_process_cv(values) == pytest.approx(0.1)
    assert math.isnan(decide.between_process_cv([1.0]))


# ---------- the test, the interval, Holm ----------

def test_exact_rank_sum_matches_the_textbook_values():
    # complete separation of 5 vs 5: p = 2 / C(10, 5)
    u, p = ranksum.mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])
    assert (u, p) == (25.0, pytest.approx(2 / 252))
    assert ranksum.min_attainable_p(5, 5) == pytest.approx(2 / 252)
    # identical groups (all ties): no evidence
    assert ranksum.mann_whitney_u([1.0, 1.0], [1.0, 1.0])[1] == 1.0
    # p is symmetric in the groups
    a, b = [1.1, 2.3, 0.7, 4.0], [3.3, 2.0, 5.1]
    assert ranksum.mann_whitney_u(a, b)[1] == pytest.approx(ranksum.mann_whitney_u(b, a)[1])


def test_exact_null_distribution_sums_to_the_number_of_arrangements():
    counts = ranksum._u_counts(4, 6)
    assert sum(counts) == math.comb(10, 4) and len(counts) == 25
    assert list(counts) == list(reversed(counts))  # symmetric about n*m/2


def test_holm_adjusts_step_down_and_stays_monotone():
    assert decide.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert decide.holm([0.5]) == [0.5]


def test_hodges_lehmann_interval_covers_a_known_shift():
    base = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98]
    head = [x * 1.2 for x in base]
    ratio, low, high = ranksum.hodges_lehmann_ci(base, head)
    assert ratio == pytest.approx(1.2)
    assert low < 1.2 < high or low == pytest.approx(1.2)
    # too few processes for a 95 % interval: honest infinity rather than a fake interval
    assert ranksum.hodges_lehmann_ci([1.0, 1.1], [1.2, 1.3])[2] == math.inf


def test_interval_coverage_in_the_two_level_model():
    rng = random.Random(1)
    covered = 0
    trials = 300
    for _ in range(trials):
        base = decide.process_values(process_samples(rng, 8, 5, 0.05, 0.1), 5)
        head = decide.process_values(process_samples(rng, 8, 5, 0.05, 0.1, scale=1.1), 5)
        _, low, high = ranksum.hodges_lehmann_ci(base, head, 0.95)
        covered += low <= 1.1 <= high
    assert covered / trials >= 0.92  # distribution-free: at least the nominal 95 %, minus sampling noise


# ---------- power ----------

def test_min_detectable_change_shrinks_with_processes_and_is_inf_below_the_exact_floor():
    sd = 0.03
    m6, m12 = (ranksum.min_detectable_change(sd, n, n, 0.01 / 6) for n in (7, 12))
    assert m12 < m6 < 0.10
    # with 4 processes the exact test cannot reach 0.01/6 at all
    assert ranksum.min_detectable_change(sd, 4, 4, 0.01 / 6) == math.inf
    assert ranksum.processes_needed(sd, 0.05, 0.01 / 6) > ranksum.processes_needed(sd, 0.10, 0.01 / 6)
    assert ranksum.processes_needed(0.5, 0.01, 0.01, limit=50) is None


def test_the_detectable_change_is_what_the_test_really_detects():
    """At the change min_detectable_change reports, the rank-sum test on the two-level model rejects in
    about 80 % of trials (its power target)."""
    rng = random.Random(2)
    n, sd, alpha = 10, 0.04, 0.01
    mdc = ranksum.min_detectable_change(sd, n, n, alpha)
    hits, trials = 0, 400
    for _ in range(trials):
        base = [math.exp(rng.gauss(0, sd)) for _ in range(n)]
        head = [(1 + mdc) * math.exp(rng.gauss(0, sd)) for _ in range(n)]
        hits += ranksum.mann_whitney_u(head, base)[1] <= alpha
    assert 0.72 <= hits / trials <= 0.88


# ---------- the case that fooled the old alert ----------

def test_two_processes_of_pooled_samples_no_longer_make_an_alarm():
    """The old alert: 20 samples from 2 processes per commit, tested as if independent. With most of the
    variance between processes (CV 20 %) and nothing changed, pooling is 'significant' most of the
    time; per process, 2 vs 2 can never be, and the cell is inconclusive, not unchanged."""
    rng = random.Random(3)
    pooled_alarms = 0
    for _ in range(50):
        base = process_samples(rng, 2, 10, 0.20, 0.05)
        head = process_samples(rng, 2, 10, 0.20, 0.05)
        pooled_alarms += ranksum.mann_whitney_u(head, base)[1] < 0.002  # asv's own rule on pooled samples
        rows = compare({"c": cell(base, 10)}, {"c": cell(head, 10)})
        assert rows[0].change == decide.INCONCLUSIVE and exit_status(rows) == 3  # undecided: not a pass
        assert exit_status(rows, undecided_ok=True) == 0
        assert rows[0].processes_base == 2 and rows[0].min_detectable_change == math.inf
    assert pooled_alarms >= 10  # the disease: pooled samples cry wolf on a no-op


def test_aa_false_alarm_rate_over_many_cells_stays_under_alpha():
    rng = random.Random(4)
    settings = DecisionSettings()
    alarms, trials = 0, 200
    for _ in range(trials):
        before, after = {}, {}
        for i, cv in enumerate((0.03, 0.05, 0.02, 0.06, 0.04, 0.03)):
            before[f"c{i}"] = cell(process_samples(rng, 8, 5, cv, 0.1), params={"batch_size": str(i)})
            after[f"c{i}"] = cell(process_samples(rng, 8, 5, cv, 0.1), params={"batch_size": str(i)})
        alarms += exit_status(compare(before, after, settings)) == 1
    assert alarms / trials <= 0.03  # alpha 0.01 family-wise, with sampling slack


def test_a_ten_percent_slowdown_is_caught_and_reported_with_its_numbers():
    rng = random.Random(5)
    caught = 0
    for _ in range(20):
        rows = compare({"c": cell(process_samples(rng, 10, 5, 0.02, 0.03))},
                       {"c": cell(process_samples(rng, 10, 5, 0.02, 0.03, scale=1.10))})
        caught += rows[0].change == decide.WORSE
    assert caught >= 18
    row = rows[0]
    assert row.ci_low < row.ratio < row.ci_high and row.processes_base == row.processes_head == 10
    assert row.min_detectable_change < 0.10 and row.cv_source == "this comparison"
    assert row.method.startswith("exact rank-sum")


def test_a_noisy_cell_is_inconclusive_not_unchanged_and_says_what_it_could_see():
    rng = random.Random(6)
    rows = compare({"c": cell(process_samples(rng, 6, 5, 0.25, 0.1))},
                   {"c": cell(process_samples(rng, 6, 5, 0.25, 0.1))})
    assert rows[0].change == decide.INCONCLUSIVE
    assert rows[0].min_detectable_change > 0.10 and rows[0].note.startswith("too noisy: could detect")


def test_calibrated_spread_is_used_for_the_detectable_change():
    rng = random.Random(7)
    b, a = cell(process_samples(rng, 8, 5, 0.02, 0.1)), cell(process_samples(rng, 8, 5, 0.02, 0.1))
    quiet = compare({"c": b}, {"c": a}, calibrated_log_sd={"c": 0.01})[0]
    loud = compare({"c": b}, {"c": a}, calibrated_log_sd={"c": 0.30})[0]
    assert quiet.cv_source == "calibration" and quiet.change == decide.EQUIVALENT
    assert loud.cv_source == "calibration" and loud.min_detectable_change > quiet.min_detectable_change
    # quiet by calibration, but this comparison's processes scattered: the equivalence test decides, and says so
    wild = compare({"c": cell(process_samples(rng, 8, 5, 0.30, 0.1))},
                   {"c": cell(process_samples(rng, 8, 5, 0.30, 0.1))}, calibrated_log_sd={"c": 0.01})[0]
    assert wild.change == decide.INCONCLUSIVE and wild.note.startswith("neither a change nor within ±10.0 %")


def test_direction_exact_tracks_failures_and_skips():
    identical = "bench_determinism.Determinism.track_run_to_run_identical"
    rows = compare({"d": cell(None, None, 1, identical, params={}, unit="identical (1/0)"),
                    "f": cell([0.01] * 10), "s": cell(None, None, math.nan, "b.C.time_x")},
                   {"d": cell(None, None, 0, identical, params={}, unit="identical (1/0)"),
                    "f": cell(None, None, None), "s": cell(None, None, math.nan, "b.C.time_x")})
    by = {r.benchmark: r for r in rows}
    assert by[identical].change == "worse" and by[identical].method.startswith("exact")
    assert by["b.C.time_x"].note == "n/a on base and head"
    assert by["bench_fit.StepTime.time_step"].change == "failed"
    assert by["bench_fit.StepTime.time_step"].failed_on == ["head"]
    assert by["b.C.time_x"].change == "skipped"
    assert exit_status(rows) == 2
    # higher-is-better metrics with per-process values: a drop is worse
    sps = "bench_fit.X.time_samples_per_second"
    import re

    import fitbench.regress.alertdoc as alert_module
    assert alert_module.HIGHER_IS_BETTER.search("track_samples_per_second")
    assert not re.search(alert_module.HIGHER_IS_BETTER, sps)


def test_a_trace_count_that_grows_is_a_regression_without_statistics():
    traces = "bench_compile.Traces.track_step_traces"

    def count(value):
        return cell(None, None, value, traces, params={"api": "'functional'", "jit": "True"}, unit="traces")

    rows = {r.params["api"] + str(r.before): r for r in compare({"up": count(2), "same": count(1), "down": count(4)},
                                                                 {"up": count(4), "same": count(1), "down": count(2)})}
    worse, same, better = rows["'functional'2"], rows["'functional'1"], rows["'functional'4"]
    assert (worse.change, worse.ratio) == ("worse", 2.0) and worse.method.startswith("exact")
    assert (same.change, better.change) == ("equivalent", "better")
    assert exit_status([worse, same, better]) == 1 and exit_status([same, better]) == 0


def test_markdown_and_json_rows_carry_the_statistics():
    rng = random.Random(9)
    rows = compare({"c": cell(process_samples(rng, 8, 5, 0.02, 0.1))},
                   {"c": cell(process_samples(rng, 8, 5, 0.02, 0.1, scale=1.3))})

    report = {"base": "a" * 40, "head": "b" * 40, "bench": "x", "machine": "m", "processes": 8,
              "processes_source": "asked for", "settings": asdict(DecisionSettings()), "tested_cells": 1,
              "comparisons": [asdict(r) for r in rows]}
    md = render_markdown(report)
    assert md.splitlines()[0].endswith("**regression**: 1 of 1 cells worse (exit 1)") and "**1 worse**" in md
    assert "| ratio [95 % CI] | design: processes (stage) | spread |" in md
    assert "unpaired: 8 + 8 (1)" in md and "between processes (this comparison)" in md
    for key in ("ratio", "ci_low", "ci_high", "processes_base", "processes_head", "min_detectable_change",
                "between_process_cv", "p_adjusted"):
        assert report["comparisons"][0][key] is not None
    assert Comparison(**report["comparisons"][0]).label.endswith("[tensorflow]")
    assert "significant at family-wise α=0.01 (worse or better)" in md  # two-sided: both directions together
    stage = {"stage": 1, "processes": 12, "design": "alternate", "cells": ["c"], "level": 0.005, "seconds": 60}
    one_sided = render_markdown({**report, "settings": asdict(decide.ALERT_SETTINGS), "stages": [stage]})
    assert "significant at family-wise α=0.01 in that direction (better likewise, at its own α)" in one_sided
    assert "for 1 cell(s) at family-wise α 0.005 a direction, 1.0 min" in one_sided


# ---------- calibration and resampled rates ----------

def test_calibration_round_trips_and_checks_its_schema():
    cal = Calibration(machine="m", commit="c" * 40, created="2026-11-27T00:00:00+00:00", processes=3, threads="1",
                      cells=[CellNoise("k", "b", {}, "jax", "seconds", [1.0, 1.1, 0.9], 1.0, 0.1)])
    assert Calibration.from_dict(cal.to_dict()) == cal and cal.log_sds() == {"k": 0.1}
    with pytest.raises(ValueError, match="schema_version"):
        Calibration.from_dict({**cal.to_dict(), "schema_version": 99})


def test_processes_for_a_set_of_cells_takes_the_neediest():
    assert ranksum.processes_for([0.01, 0.02], 0.10, 0.01) >= ranksum.processes_for([0.01], 0.10, 0.01)
    assert ranksum.processes_for([0.9], 0.01, 0.01, limit=20) is None


def test_the_plan_comes_from_the_request_the_calibration_s_upper_bound_or_the_default():
    from fitbench.regress.unpaired import DEFAULT_PROCESSES, MAX_TOTAL_PROCESSES, plan_stages

    s = DecisionSettings()
    key = "bench_fit.StepTime.time_step(256) [jax]"

    def calibration(spread: float, processes: int = 20) -> Calibration:
        values = [math.exp(spread * x) for x in (-1.3, -0.7, -0.3, 0.0, 0.3, 0.7, 1.3)] * (processes // 7 + 1)
        return Calibration(machine="m", commit="c" * 40, created="now", processes=processes, threads="1",
                           cells=[CellNoise(key, "b", {}, "jax", "seconds", values[:processes], 1.0, spread)])

    assert plan_stages(5, None, [key], s, 2) == ([5, 5], "asked for: 5 per stage")
    assert plan_stages(None, None, [key], s, 2) == ([DEFAULT_PROCESSES] * 2,
                                                    "default: no calibration on this machine (fitbench calibrate)")
    quiet, why = plan_stages(None, calibration(0.02), [key], s, 2)
    assert why.startswith("from this machine's calibration") and len(quiet) == 2 and quiet[0] >= quiet[1] - 1
    # planned from the upper bound: the total sees the threshold at the upper bound with 90 % power
    bound = decide.spread_upper_bound(0.02, 20, 0.8)
    assert bound > 0.02 and ranksum.min_detectable_change(bound, sum(quiet), sum(quiet), s.alpha / 2, 0.9) <= 0.10
    # a calibration of fewer processes is less certain: a larger upper bound, more processes
    assert sum(plan_stages(None, calibration(0.02, 8), [key], s, 2)[0]) >= sum(quiet)
    capped, why = plan_stages(None, calibration(0.5), [key], s, 2)
    assert sum(capped) == MAX_TOTAL_PROCESSES and "capped" in why
    # one look at the full alpha: one stage of the total
    assert len(plan_stages(None, calibration(0.02), [key], s, 1)[0]) == 1
    # a compile-time cell is planned for its own, wider margin: a spread that caps a step cell does not cap it
    compile_key = "bench_compile.FirstStep.time_first_step('functional', True) [jax]"
    noisy = calibration(0.12)
    noisy.cells[0].key = compile_key
    step_noisy = calibration(0.12)
    assert sum(plan_stages(None, noisy, [compile_key], s, 2)[0]) < sum(plan_stages(None, step_noisy, [key], s, 2)[0])


def test_the_spread_bounds_cover_the_true_spread_as_often_as_they_say():
    rng = random.Random(12)
    above, below, trials = 0, 0, 400
    for _ in range(trials):
        values = [math.exp(rng.gauss(0, 0.05)) for _ in range(20)]
        estimate = decide.robust_log_sd(values)
        above += decide.spread_upper_bound(estimate, 20, 0.8) >= 0.05
        below += decide.spread_lower_bound(estimate, 20, 0.9) <= 0.05
    assert 0.74 <= above / trials <= 0.86 and 0.85 <= below / trials <= 0.95


# ---------- the micro-benchmark gate ----------

def _session(path, medians: dict[str, float]) -> str:
    import json

    path.write_text(json.dumps({"benchmarks": [{"fullname": k, "stats": {"median": v}} for k, v in medians.items()]}))
    return str(path)


def test_gate_decides_session_by_session(tmp_path):
    from fitbench.regress.gate import gate

    rng = random.Random(11)
    base = [_session(tmp_path / f"a{i}.json", {"t[b32]": 0.002 * math.exp(rng.gauss(0, 0.02)),
                                                "t[b256]": 0.006 * math.exp(rng.gauss(0, 0.02))}) for i in range(8)]
    same = [_session(tmp_path / f"b{i}.json", {"t[b32]": 0.002 * math.exp(rng.gauss(0, 0.02)),
                                                "t[b256]": 0.006 * math.exp(rng.gauss(0, 0.02))}) for i in range(8)]
    slow = [_session(tmp_path / f"c{i}.json", {"t[b32]": 0.0024 * math.exp(rng.gauss(0, 0.02)),
                                                "t[b256]": 0.006 * math.exp(rng.gauss(0, 0.02))}) for i in range(8)]
    aa = gate(base, same)
    assert aa["exit_status"] == 0 and {r["change"] for r in aa["rows"]} == {"equivalent"}
    from fitbench import schema

    schema.validate(aa)  # the gate's document is typed (GateDocument) and has its schema
    ab = gate(base, slow)
    by = {r["benchmark"]: r for r in ab["rows"]}
    assert ab["exit_status"] == 1 and by["t[b32]"]["change"] == "worse" and by["t[b256]"]["change"] != "worse"
    assert by["t[b32]"]["sessions_base"] == 8 and 1.1 < by["t[b32]"]["ratio"] < 1.3


def test_gate_bad_input_is_a_usage_error(tmp_path):
    from fitbench.errors import UsageError
    from fitbench.regress.gate import gate

    good = [_session(tmp_path / f"a{i}.json", {"t": 1.0}) for i in range(2)]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UsageError, match="at least 2 sessions"):
        gate(good[:1], good)
    with pytest.raises(UsageError, match="not a pytest-benchmark"):
        gate([str(tmp_path / "bad.json"), good[0]], good)
    empty = [_session(tmp_path / f"e{i}.json", {}) for i in range(2)]
    with pytest.raises(UsageError, match="the sessions hold no benchmark"):
        gate(empty, empty)


def test_a_benchmark_missing_from_sessions_is_undecided_not_dropped(tmp_path):
    from fitbench.regress.gate import gate

    # "u" ran only on the head (a base session errored out of it, or it is new): it cannot be decided, and
    # the gate says so instead of leaving it out and passing
    base = [_session(tmp_path / f"a{i}.json", {"t": 0.010 * (1 + i / 1000)}) for i in range(7)]
    head = [_session(tmp_path / f"b{i}.json", {"t": 0.010 * (1 + i / 1000), "u": 0.02}) for i in range(7)]
    doc = gate(base, head)
    by = {r["benchmark"]: r for r in doc["rows"]}
    assert by["u"]["change"] == "inconclusive" and by["u"]["sessions_base"] == 0
    assert by["u"]["sessions_dropped"] == [7, 0] and by["t"]["change"] == "equivalent"
    assert doc["exit_status"] == 3


def test_gate_command_exit_statuses(tmp_path):
    import subprocess
    import sys

    a = [_session(tmp_path / f"a{i}.json", {"t": 0.010 * (1 + i / 1000)}) for i in range(7)]
    b = [_session(tmp_path / f"b{i}.json", {"t": 0.013 * (1 + i / 1000)}) for i in range(7)]

    def gate_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fitbench", "gate", *args], capture_output=True, text=True)

    worse = gate_cli("--base", *a, "--head", *b, "--json", str(tmp_path / "gate.json"))
    assert worse.returncode == 1 and "worse" in worse.stdout
    assert json_load(tmp_path / "gate.json")["rows"][0]["change"] == "worse"
    assert gate_cli("--base", *a, "--head", *a).returncode == 0
    bad = gate_cli("--base", a[0], "--head", *b)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "fitbench: error: the gate needs at least 2 sessions per side (--base A.json A2.json --head B.json B2.json)"]


def json_load(path):
    import json

    return json.loads(path.read_text())


def test_three_processes_a_side_are_inconclusive_and_the_report_is_still_valid_json(tmp_path):
    # Found by a real `fitbench alert --processes 3`: no change is detectable with 3 + 3 processes at this
    # level (the detectable change is infinite), which JSON cannot hold; the document says null instead.
    from fitbench import schema
    from fitbench.regress.alertdoc import AlertDocument
    from fitbench.regress.alertreport import write_report

    rng = random.Random(11)
    rows = compare({"c": cell(process_samples(rng, 3, 5, 0.03, 0.01))},
                   {"c": cell(process_samples(rng, 3, 5, 0.03, 0.01))}, DecisionSettings())
    assert rows[0].change == decide.INCONCLUSIVE and math.isinf(rows[0].min_detectable_change)
    report = AlertDocument(base="a" * 40, head="b" * 40, base_rev="a", head_rev="b", bench="x", selected=["c"],
                           settings=DecisionSettings(), processes=3, processes_source="--processes",
                           backends=["tensorflow"], environments=["e"], machine="m", calibration=None,
                           asv_exit_status=0, comparisons=rows, tested_cells=1, processes_planned=[3],
                           stages_planned=1, max_minutes=30.0, order_seed=1, undecided_ok=False, stages=[])
    report.finish(exit_status(rows))
    md, js = write_report(str(tmp_path), report)
    doc = json.loads(js.read_text())
    assert doc["comparisons"][0]["min_detectable_change"] is None and doc["verdict"] == "undecided"
    assert "error" not in doc and "asv_errors" not in doc  # optional fields stay out while unset
    schema.validate(doc)
    assert "with 3 processes the exact test cannot reach Holm's level for a change at all" in md.read_text()


COMPILE_KEY = "bench_compile.FirstStep.time_first_step('functional', True) [jax]"
STEP_KEY = "bench_fit.StepTime.time_step(256) [jax]"


def test_compile_time_cells_get_their_own_wider_margin():
    settings = DecisionSettings(threshold=0.10, min_change=0.05, compile_threshold=0.25)
    assert settings.for_cell(STEP_KEY) is settings
    assert decide.is_compile_time(COMPILE_KEY) and decide.is_compile_time("bench_compile.FirstStepCache."
                                                                          "track_first_step_s('warm') [tensorflow]")
    assert not decide.is_compile_time("bench_compile.Traces.track_step_traces('functional', True) [jax]")
    wide = settings.for_cell(COMPILE_KEY)
    assert (wide.threshold, wide.min_change, wide.alpha) == (0.25, 0.125, settings.alpha)
    # never narrower than the step cells' margin
    assert DecisionSettings(threshold=0.30, min_change=0.05).for_cell(COMPILE_KEY).threshold == 0.30
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(decide.UsageError, match="--compile-threshold must be a relative change"):
            DecisionSettings(compile_threshold=bad).check()
    # a command without the flag (the gate) decides every cell at --threshold, whatever its name
    from fitbench.cli import build_parser
    from fitbench.commands.common import decision_settings

    gate_args = ["gate", "--threshold", "0.05", "--base", "a.json", "--head", "b.json"]
    gate = decision_settings(build_parser().parse_args(gate_args))
    assert gate.for_cell(COMPILE_KEY).threshold == 0.05
    alert = decision_settings(build_parser().parse_args(["alert", "a", "b", "--threshold", "0.05"]))
    assert alert.for_cell(COMPILE_KEY).threshold == 0.25
    # the alarm is one direction: alert, gate and bisect bound a false "worse" alone unless told --two-sided
    assert alert.one_sided and gate.one_sided and alert.change_level(2) == alert.alpha
    assert decision_settings(build_parser().parse_args(["bisect", "a", "b"])).one_sided
    bisect = decision_settings(build_parser().parse_args(["bisect", "a", "b", "--two-sided"]))
    assert not bisect.one_sided and bisect.change_level(2) == bisect.alpha / 2
    assert not DecisionSettings().one_sided  # cost and versions, and documents written without the field


def test_an_eight_percent_change_is_worse_for_a_step_and_equivalent_for_compile_time():
    # the same processes, 8 % slower on head, decided as a step cell and as a compile-time cell in one family
    rng = random.Random(21)
    base = process_samples(rng, 12, 3, 0.01, 0.01)
    head = process_samples(rng, 12, 3, 0.01, 0.01, scale=1.08)
    names = {STEP_KEY: "bench_fit.StepTime.time_step", COMPILE_KEY: "bench_compile.FirstStep.time_first_step"}

    def rows(after: list[float]) -> dict[str, Comparison]:
        return {r.benchmark: r for r in compare({k: cell(base, 3, benchmark=b) for k, b in names.items()},
                                                {k: cell(after, 3, benchmark=b) for k, b in names.items()})}

    decided = rows(head)
    step, compile_time = decided[names[STEP_KEY]], decided[names[COMPILE_KEY]]
    assert step.change == decide.WORSE and step.threshold == 0.10
    assert compile_time.change == decide.EQUIVALENT and compile_time.threshold == 0.25
    assert compile_time.ratio == pytest.approx(step.ratio)
    assert "compile time: decided at ±25.0 % (--compile-threshold)" in compile_time.note
    assert "compile time" not in step.note
    # the report states both margins wherever it states one
    from fitbench.regress.alertreport import render_markdown

    md = render_markdown({"comparisons": [asdict(r) for r in decided.values()], "settings": asdict(DecisionSettings()),
                          "base": "a" * 40, "head": "b" * 40, "base_rev": "a", "head_rev": "b", "bench": "x",
                          "backends": ["jax"], "verdict": "regression", "exit_status": 1})
    assert md.count("±10.0 %, compile time ±25.0 %") >= 2
    # a compile-time change past its own min-change (12.5 %) is still a regression
    slower = rows(process_samples(rng, 12, 3, 0.01, 0.01, scale=1.3))
    assert slower[names[COMPILE_KEY]].change == decide.WORSE
