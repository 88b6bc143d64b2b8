"""`fitbench breakdown` (fitbench.measure.breakdown): the phases from the configurations' times (synthetic), the
measurement of one process on TensorFlow in this process, the orchestration over processes with a fake
process runner, the table, and bad input."""

from __future__ import annotations

import pytest
from rich.console import Console

from conftest import cli_exit
from fitbench import schema
from fitbench.measure import breakdown
from fitbench.measure.breakdown import (
    CUSTOM,
    FIT,
    FIT_NO_METRICS,
    FIT_PROGRESS,
    FORWARD,
    GRADIENTS,
    LOSS,
    PHASES,
    VARIANTS,
    BreakdownCell,
    BreakdownSettings,
    measure_process,
    phases_of,
    run_breakdown,
    summarize,
)
from fitbench.models.choice import ModelChoice
from fitbench.processes.isolation import IsolatedError
from fitbench.report.breakdown_table import breakdown_lines, breakdown_table

# seconds per step of each configuration in three processes: cumulative, as the cuts of one step are
MS = {FORWARD: (1.0, 1.1, 0.9), LOSS: (1.2, 1.3, 1.1), GRADIENTS: (3.0, 3.3, 2.9), CUSTOM: (3.5, 3.7, 3.4),
      FIT_NO_METRICS: (4.5, 4.4, 4.6), FIT: (5.5, 5.6, 5.2), FIT_PROGRESS: (5.4, 5.9, 5.3)}
VARIANT_S = {name: [ms / 1000 for ms in values] for name, values in MS.items()}


def test_the_phases_are_per_process_differences_that_sum_to_the_total_and_none_is_clipped():
    phases, total = phases_of(VARIANT_S)
    assert [p.name for p in phases] == [name for name, _, _ in breakdown.PHASES]
    assert total == pytest.approx(5.4)  # the median of the fit step with the progress bar
    by = {p.name: p for p in phases}
    assert by["forward"].ms_per_step == pytest.approx(1.0) and by["forward"].measured_as == FORWARD
    assert by["backward (gradients)"].ms_per_step == pytest.approx(1.8)  # medians of 1.8, 2.0, 1.8
    assert (by["backward (gradients)"].low_ms, by["backward (gradients)"].high_ms) == pytest.approx((1.8, 2.0))
    assert by["metrics"].measured_as == "fit − fit, no metrics" and by["metrics"].ms_per_step == pytest.approx(1.0)
    callbacks = by["callbacks: progress bar, history"]  # -0.1, 0.3, 0.1: the range goes below zero, kept
    assert callbacks.low_ms == pytest.approx(-0.1) and callbacks.ms_per_step == pytest.approx(0.1)
    # per process the differences telescope: the medians' sum is close to, not exactly, the total's median
    assert sum(p.ms_per_step for p in phases) == pytest.approx(5.4, abs=0.3)
    assert by["forward"].share == pytest.approx(1.0 / 5.4)
    assert phases_of({name: [] for name in VARIANTS}) == ([], None)


def test_a_cell_says_what_its_figures_cannot():
    cell = BreakdownCell(stack="jax", model="seed", api="functional", jit=True, jit_effective=True, batch_size=8,
                         processes=2, variant_s={k: v[:2] for k, v in VARIANT_S.items()})
    cell.variant_s[LOSS] = [0.0009, 0.0010]  # the loss cut cheaper than the forward one: a negative phase
    summarize(cell)
    assert cell.custom_over_fit == pytest.approx(3.6 / 5.55) and cell.fit_ms == pytest.approx(5.55)
    notes = " ".join(cell.notes)
    assert "compiled on its own" in notes and "below zero (kept, not clipped): loss" in notes
    assert "2 process(es)" in notes
    torch = BreakdownCell(stack="torch", model="seed", api="functional", jit=False, jit_effective=False,
                          batch_size=8, processes=3, variant_s=dict(VARIANT_S))
    summarize(torch)
    assert len(torch.notes) == 2 and "--flush-subnormals" in torch.notes[0]  # eager: no note on compiled cuts
    assert "--keep-freed-memory" in torch.notes[1] and "as the asv suite does" in torch.notes[1]
    flushed = BreakdownCell(stack="torch", model="seed", api="functional", jit=False, jit_effective=False,
                            batch_size=8, processes=3, variant_s=dict(VARIANT_S), subnormals_flushed=True)
    summarize(flushed)
    assert len(flushed.notes) == 1 and "--keep-freed-memory" in flushed.notes[0]
    as_suite = BreakdownCell(stack="torch", model="seed", api="functional", jit=False, jit_effective=False,
                             batch_size=8, processes=3, variant_s=dict(VARIANT_S), subnormals_flushed=True,
                             freed_memory_kept=True)
    summarize(as_suite)
    assert as_suite.notes == []


def test_one_process_measures_every_configuration_on_tensorflow(keras_cpu):
    result = measure_process("tensorflow", ModelChoice(widths=(8,)).to_dict(), "functional", False, 4, 0,
                             rounds=1, steps=2, order_seed=0)
    assert set(result["variant_s"]) == set(VARIANTS) and all(v > 0 for v in result["variant_s"].values())
    assert result["jit_effective"] is False and result["step_traces"] == 2  # one tf.function, traced twice
    # asv's StepPhases takes each configuration by its identifier, warmed up once when it is first asked for
    # (asv's own processes time one configuration each), as a window of exactly n steps
    built = breakdown.step_configurations("tensorflow", None, "functional", False, 4, 0)
    counted = []
    built.blocks[FIT] = lambda n: counted.append(n) or [0.0] * n  # a fit block times n of n + 1 steps
    window = built.window("fit")
    window(5)
    built.window("fit")(5)
    built.window("forward")(5)
    assert counted == [breakdown.WARMUP_STEPS, 4, 4] and built.warmed == {FIT, FORWARD}
    with pytest.raises(NotImplementedError, match="no configuration 'attention'"):
        built.window("attention")


def test_a_user_suite_s_step_phases_time_every_configuration_in_one_window_length(keras_cpu, monkeypatch):
    # asv-init's suites carry asvsuite.StepPhases, so the alert can say where a user's model grew: one build of
    # the seven, `fit` warmed up for the window length and each configuration when first asked for; one length
    # for all seven, a power of two (so both commits of a pair time the same steps), set again before each
    # window, since one pair worker holds all seven cells and the per-step clock divides by it
    from fitbench import asvsuite

    monkeypatch.setattr(asvsuite, "_prepare_process", lambda: None)  # Keras is already up in this process
    monkeypatch.setattr(asvsuite, "BACKEND", "tensorflow")
    monkeypatch.setattr(asvsuite, "_CACHE", {})
    monkeypatch.setattr(asvsuite, "_WINDOW", {"steps": 1})
    assert asvsuite.StepPhases.params[0] == list(breakdown.CONFIGURATION_IDS)

    class Phases(asvsuite.StepPhases):
        model = "seed"

    bench = Phases()
    lengths = []
    for configuration in ("forward", "gradients", "forward"):
        bench.setup(configuration, 8)
        lengths.append(asvsuite._WINDOW["steps"])
        asvsuite._WINDOW["steps"] = 1  # another cell of the worker set its own in between
        bench.time_configuration(configuration, 8)
    built, _ = asvsuite._CACHE[("phases", "seed", 8)]
    assert built.warmed == {FIT, FORWARD, GRADIENTS}
    assert len(set(lengths)) == 1 and lengths[0] == bench.steps and lengths[0] & (lengths[0] - 1) == 0
    assert 4 <= lengths[0] <= 256


def test_a_user_suite_s_step_phases_pair_under_the_names_where_it_grew_asks_for():
    # the alert builds StepPhases' cell names from the worse StepTime's key; asv-init's suite must answer them
    from fitbench import asvsuite
    from fitbench.regress import localize, pairedstage

    params = [[repr(c) for c in breakdown.CONFIGURATION_IDS], ["256"]]
    info = {"bench_model.StepPhases.time_configuration": {"type": "time", "params": params,
                                                         "version": asvsuite.StepPhases.version}}
    names = [f"bench_model{localize.STEP_PHASES}('{c}', 256)" for c in breakdown.CONFIGURATION_IDS]
    found = pairedstage.pairable(names, {"tensorflow": "env"}, info)
    assert len(found) == 7 and all(not c.own_process and c.samples_per_process == asvsuite.REPEAT
                                   for c in found.values())


def test_the_suite_s_step_phases_are_the_library_s_configurations():
    # bench_breakdown writes the identifiers out (an old commit's fitbench may lack them): they must agree
    import importlib

    bench = importlib.import_module("benchmarks.bench_breakdown")
    assert bench.CONFIGURATIONS == tuple(breakdown.CONFIGURATION_IDS)
    assert [breakdown.CONFIGURATION_IDS[c] for c in bench.CONFIGURATIONS] == list(VARIANTS)


def test_where_a_regression_lives_is_the_phase_whose_interval_lies_above_zero():
    import random

    from fitbench.regress.localize import MIN_INTERVAL_PAIRS, phase_changes

    rng = random.Random(5)
    base_ms = {"forward": 2.0, "forward_loss": 3.0, "gradients": 6.0, "custom_step": 8.0, "fit_no_metrics": 10.0,
               "fit": 12.0, "fit_progress": 13.0}

    def pair(extra_metrics_ms: float, rounds: int = 5) -> dict[str, tuple[list[float], list[float]]]:
        # one pair: every configuration's windows in seconds per step, round by round, a little noise each
        out = {}
        for cid, ms in base_ms.items():
            grown = ms + (extra_metrics_ms if cid in ("fit", "fit_progress") else 0.0)
            out[cid] = ([ms * rng.uniform(0.99, 1.01) / 1000 for _ in range(rounds)],
                        [grown * rng.uniform(0.99, 1.01) / 1000 for _ in range(rounds)])
        return out

    phases, fit_ms, whole = phase_changes([pair(3.0) for _ in range(MIN_INTERVAL_PAIRS + 1)])
    by = {p.name: p for p in phases}
    assert whole == MIN_INTERVAL_PAIRS + 1 and [p.name for p in phases] == [name for name, _, _ in PHASES]
    assert by["metrics"].grew and by["metrics"].low_ms < 3.0 < by["metrics"].high_ms
    assert by["metrics"].base_ms == pytest.approx(2.0, abs=0.3) and by["metrics"].head_ms == pytest.approx(5.0, abs=0.3)
    assert [p.name for p in phases if p.grew] == ["metrics"] and fit_ms == pytest.approx(3.0, abs=0.3)
    # the progress bar's phase is fit_progress - fit: both grew alike, so it did not
    assert by["callbacks: progress bar, history"].change_ms == pytest.approx(0.0, abs=0.3)
    # no change: nothing grew; too few pairs: no interval, nothing said to have grown, the estimate kept
    assert not any(p.grew for p in phase_changes([pair(0.0) for _ in range(MIN_INTERVAL_PAIRS + 1)])[0])
    few, _, whole = phase_changes([pair(3.0) for _ in range(3)])
    assert whole == 3 and not any(p.grew for p in few) and all(p.low_ms is None for p in few)
    assert {p.name: p for p in few}["metrics"].change_ms == pytest.approx(3.0, abs=0.3)
    # a pair that lacks a configuration (n/a or failed on one side) is left out, not half-counted
    broken = pair(3.0)
    broken["gradients"] = (broken["gradients"][0], [])
    assert phase_changes([broken, pair(3.0)])[2] == 1


def settings(**kw) -> BreakdownSettings:
    base = dict(stacks=("tensorflow", "tf-keras"), model=ModelChoice().to_dict(), api="functional", jit=None,
                batch_size=8, processes=3, rounds=1, steps=2, threads=1, seed=0, timeout_s=60)
    return BreakdownSettings(**{**base, **kw})


def test_processes_interleave_the_backends_and_a_failed_one_is_an_error_not_a_number(monkeypatch):
    calls = []

    def fake(func, kwargs, env=None, timeout_s=None):
        calls.append((kwargs["stack"], kwargs["order_seed"], env.get("TF_USE_LEGACY_KERAS")))
        if kwargs["stack"] == "tf-keras" and kwargs["order_seed"] == 1:
            raise IsolatedError("the process died (status -9)")
        return {"variant_s": {name: VARIANT_S[name][kwargs["order_seed"]] for name in VARIANTS},
                "jit_effective": True, "step_traces": 2}

    monkeypatch.setattr("fitbench.processes.isolation.run_isolated", fake)
    lines = []
    doc = run_breakdown(settings(), progress=lines.append)
    assert [(s, o) for s, o, _ in calls] == [("tensorflow", 0), ("tf-keras", 0), ("tensorflow", 1), ("tf-keras", 1),
                                              ("tensorflow", 2), ("tf-keras", 2)]
    assert [legacy for _, _, legacy in calls] == [None, "1"] * 3  # Keras 2's processes get tf-keras
    tf, legacy = doc.cells
    assert (tf.processes, legacy.processes) == (3, 2) and legacy.errors == ["process 2: the process died (status -9)"]
    assert len(lines) == 6 and "[4/6] tf-keras process 2: failed" in lines[3]
    as_dict = doc.to_dict()
    schema.validate(as_dict)
    console = Console(width=100, record=True)
    console.print(breakdown_table(as_dict))
    text = console.export_text()
    assert "median [range] over" in text and "optimizer update" in text and "tf-keras" in text
    assert any("2 process(es)" in line for line in breakdown_lines(as_dict))


@pytest.mark.parametrize("args, fragment", [
    (["--api", "functional,sequential"], "--api takes one API"),
    (["--steps", "1"], "--steps must be at least 2"),
    (["--model", "conv", "--backend", "tf-keras"], "the zoo is Keras 3 code"),
    (["--batch-size", "0"], "--batch-size"),
    (["--jit", "maybe"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment, capsys):
    assert cli_exit(["breakdown", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and err[0].startswith("fitbench: error:")


def test_a_factorys_metrics_come_along_fresh_and_the_no_metrics_configuration_drops_them(keras_cpu):
    import numpy as np

    from fitbench.models.workload import Workload

    workload = Workload(ModelChoice(source="metric_models:two_outputs"))
    y = {"a": np.eye(3, dtype="float32")[[0, 1, 2, 0]], "b": np.zeros((4, 1), "float32")}
    logged = {}
    for keep in (True, False):
        factory_model = workload.build("functional")
        model = workload.compile(factory_model, False, keep_metrics=keep)
        logged[keep] = set(model.fit(np.zeros((4, 8), "float32"), y, verbose=0).history)
    assert {"a_auc", "a_accuracy", "b_mae"} <= logged[True]
    assert logged[False] == {"loss", "a_loss", "b_loss"}


def test_where_it_grew_says_why_it_measured_nothing_before_any_process():
    import time
    from pathlib import Path

    from fitbench.regress import localize
    from fitbench.regress.pairedstage import PairedCell

    cell = PairedCell(key="bench_fit.StepTime.time_step(256) [jax]", env_name="env-jax",
                      benchmark="bench_fit.StepTime.time_step", param_index=1, samples_per_process=5)
    worse = [(cell.key, cell, "jax")]

    def run(info: dict, deadline: float, estimate: float = 0.0) -> tuple[list, list[str]]:
        return localize.where_it_grew("repo", "a" * 40, "b" * 40, worse, {}, info, 0, Path("out"), deadline,
                                      lambda line: None, per_pair={"jax": estimate / localize.ROUND_COST})

    phases = {"bench_breakdown.StepPhases.time_configuration": {
        "type": "time", "params": [[repr(c) for c in breakdown.CONFIGURATION_IDS], ["256"]],
        "version": "fitbench StepPhases; samples-per-process=5"}}
    assert run({}, time.monotonic() + 600) == ([], ["where it grew: not measured, this suite has no StepPhases "
                                                     "benchmark (fitbench's own suite has bench_breakdown.StepPhases "
                                                     "since 2026-12-04; `fitbench asv-init --force` rewrites a "
                                                     "user's suite with one)"])
    located, [why] = run(phases, time.monotonic() + 120, estimate=30.0)  # 9 rounds of 30 s do not fit in 2 min
    assert not located and why.startswith("where it grew: not measured, 2.0 min were left") and "4.5" in why
    # fast pairs, but under a minute left: not started either
    located, [why] = run(phases, time.monotonic() + 40, estimate=1.0)
    assert not located and "min were left under --max-minutes" in why and "need about 1.0" in why
    # a cell that is not a StepTime: nothing to say
    other = PairedCell(key="bench_compile.FirstStep.time_first_step('functional', True) [jax]", env_name="env-jax",
                       benchmark="bench_compile.FirstStep.time_first_step", param_index=3, samples_per_process=3)
    assert localize.where_it_grew("repo", "a", "b", [(other.key, other, "jax")], {}, phases, 0, Path("out"),
                                  time.monotonic() + 600, print) == ([], [])


def test_where_the_culprit_grew_builds_nothing_for_a_suite_without_step_phases(monkeypatch, tmp_path):
    # bisect's culprit: the suite the steps discovered has StepTime but no StepPhases; say so, build nothing
    from fitbench.regress import asvdata, asvpairs, pairedalert

    info = {"bench_model.StepTime.time_step": {"type": "time", "params": [["256"]],
                                               "version": "fitbench StepTime; samples-per-process=5"}}
    monkeypatch.setattr(asvdata, "backend_environments", lambda repo, backends: {"tensorflow": "env-tf"})
    monkeypatch.setattr(asvpairs, "benchmark_info", lambda repo: info)

    def prepare(*args: object, **kwargs: object) -> None:
        raise AssertionError("no build without StepPhases")

    monkeypatch.setattr(asvpairs, "prepare", prepare)
    localized, [why] = pairedalert.where_it_grew_between(
        "repo", "a" * 40, "b" * 40, ["bench_model.StepTime.time_step(256) [tensorflow]"], {}, 15.0, 0,
        tmp_path / "out", lambda line: None)
    assert localized == [] and why.startswith("where it grew: not measured, this suite has no StepPhases")
    assert not (tmp_path / "out").exists()
    # a worse cell that is not a StepTime: nothing to say, nothing asked
    assert pairedalert.where_it_grew_between("repo", "a" * 40, "b" * 40, ["bench_model.Traces.track_step_traces(32)"
                                             " [tensorflow]"], {}, 15.0, 0, tmp_path / "out", print) == ([], [])


def test_where_it_grew_takes_the_largest_changes_whose_pairs_fit_in_the_time_left():
    # three worse backends after a default alert rarely leave time for all their StepPhases pairs (2026-12-04:
    # 7.0 and 8.6 min left, about 12 needed): measure the largest changes that fit, and say which were not
    from fitbench.regress import localize

    worse = [("a [torch]", None, "torch"), ("b [jax]", None, "jax"), ("c [tensorflow]", None, "tensorflow")]
    per_pair = {"torch": 10.0, "jax": 8.0, "tensorflow": 12.0}
    rounds = localize.MIN_INTERVAL_PAIRS * localize.ROUND_COST  # a round runs each chosen backend's pair
    chosen, left = localize.within_time(worse, per_pair, rounds * (10 + 8) + 1)
    assert [k for k, _, _ in chosen] == ["a [torch]", "b [jax]"] and [k for k, _, _ in left] == ["c [tensorflow]"]
    # a second cell of a backend already chosen costs no more rounds
    chosen, left = localize.within_time([*worse, ("d [torch]", None, "torch")], per_pair, rounds * 10 + 1)
    assert [k for k, _, _ in chosen] == ["a [torch]", "d [torch]"] and len(left) == 2
    # the largest change's backend is too slow: passed over, a smaller change that fits still measured
    chosen, left = localize.within_time(worse, per_pair, rounds * 8 + 1)
    assert [k for k, _, _ in chosen] == ["b [jax]"] and [k for k, _, _ in left] == ["a [torch]", "c [tensorflow]"]
    # nothing fits, and never under MIN_SECONDS_LEFT however fast the pairs
    assert localize.within_time(worse, per_pair, 10.0) == ([], worse)
    assert localize.within_time(worse, {}, localize.MIN_SECONDS_LEFT - 1) == ([], worse)


def test_where_it_grew_measures_only_cells_with_step_phases_and_names_what_it_left_out(monkeypatch):
    # an asv-init suite has StepPhases at its largest batch only: a worse StepTime(64) can take no time from
    # the StepTime(256) cells; what was left out, and why, is in the remarks, beside what was measured
    import time
    from pathlib import Path

    from fitbench.regress import localize
    from fitbench.regress.pairedstage import PairedCell

    info = {"bench_model.StepPhases.time_configuration": {
        "type": "time", "params": [[repr(c) for c in breakdown.CONFIGURATION_IDS], ["256"]],
        "version": "fitbench StepPhases; samples-per-process=5"}}

    def step(batch: int, backend: str) -> tuple[str, PairedCell, str]:
        key = f"bench_model.StepTime.time_step({batch}) [{backend}]"
        return key, PairedCell(key=key, env_name=f"env-{backend}", benchmark="bench_model.StepTime.time_step",
                               param_index=0, samples_per_process=5), backend

    ran: list[set[str]] = []

    class Stage:
        pairs: dict = {}
        stopped: dict = {}

    def run_stage(repo, base, head, sides, cells, *args, **kwargs):
        ran.append({c.env_name for c in cells})
        assert {c.benchmark for c in cells} == {"bench_model.StepPhases.time_configuration"}
        return Stage()

    monkeypatch.setattr(localize.pairedstage, "run_stage", run_stage)
    per_pair = {"jax": 8.0, "torch": 10.0}
    rounds = localize.MIN_INTERVAL_PAIRS * localize.ROUND_COST
    worse = [step(64, "jax"), step(256, "torch"), step(256, "jax")]  # the largest change first
    located, remarks = localize.where_it_grew("repo", "a" * 40, "b" * 40, worse, {}, info, 0, Path("out"),
                                              time.monotonic() + rounds * 10 + 5, lambda line: None,
                                              per_pair=per_pair)
    assert ran == [{"env-torch"}] * 2  # its first pair, then the rest
    assert [loc.cell for loc in located] == ["bench_model.StepTime.time_step(256) [torch]"]
    assert remarks == [
        "where it grew: not measured for bench_model.StepTime.time_step(64) [jax]: StepPhases has no cell at its "
        "parameters",
        "where it grew: not measured for bench_model.StepTime.time_step(256) [jax]: with "
        "bench_model.StepTime.time_step(256) [torch] measured (the largest change first), their pairs would not "
        "fit in what --max-minutes left; `fitbench alert BASE HEAD --bench CELL --backend B` measures one alone"]
    # given their ratios, the largest change goes first whatever the order the cells came in
    ran.clear()
    located, remarks = localize.where_it_grew("repo", "a" * 40, "b" * 40, [step(256, "jax"), step(256, "torch")],
                                              {}, info, 0, Path("out"), time.monotonic() + rounds * 10 + 5,
                                              lambda line: None, per_pair=per_pair,
                                              ratios={"bench_model.StepTime.time_step(256) [jax]": (1.05, 1.02),
                                                      "bench_model.StepTime.time_step(256) [torch]": (1.2, 1.1)})
    assert ran == [{"env-torch"}] * 2 and [loc.cell for loc in located] == [
        "bench_model.StepTime.time_step(256) [torch]"]
    assert remarks[0].startswith("where it grew: not measured for bench_model.StepTime.time_step(256) [jax]: with "
                                 "bench_model.StepTime.time_step(256) [torch] measured")
    # the ratios reach the note: pairs in which the cut's fit did not move, a cell 1.12x [1.10, 1.14] worse
    from fitbench.regress.pairing import PairOutcome

    def unmoved(index: int) -> PairOutcome:
        windows = {}
        for cid, ms in zip(breakdown.CONFIGURATION_IDS, (2.0, 3.0, 6.0, 8.0, 10.0, 12.0, 13.0)):
            step = [ms * (1 + 0.001 * ((i * 7 + index) % 5)) / 1000 for i in range(5)]
            windows[f"bench_model.StepPhases.time_configuration-{list(breakdown.CONFIGURATION_IDS).index(cid)}"] = {
                "base": step, "head": list(reversed(step))}
        return PairOutcome(index=index, stage=3, design="alternate", first="base", cpus=None, windows=windows)

    class Measured:
        stopped: dict = {}

        def __init__(self, cells: list, count: int, start: int) -> None:
            self.pairs = {cells[0].group: [unmoved(start + i) for i in range(count)]}

    monkeypatch.setattr(localize.pairedstage, "run_stage",
                        lambda repo, base, head, sides, cells, count, *args, **kwargs: Measured(cells, count, args[4]))
    [located], _ = localize.where_it_grew("repo", "a" * 40, "b" * 40, [step(256, "torch")], {}, info, 0, Path("out"),
                                          time.monotonic() + 3600, lambda line: None, per_pair=per_pair,
                                          ratios={"bench_model.StepTime.time_step(256) [torch]": (1.12, 1.10)})
    assert located.pairs == localize.LOCALIZE_PAIRS and "cannot place it" in located.note, located.note
    monkeypatch.setattr(localize.pairedstage, "run_stage", run_stage)
    # no StepPhases cell for any: nothing run, said once
    ran.clear()
    assert localize.where_it_grew("repo", "a", "b", [step(64, "jax")], {}, info, 0, Path("out"),
                                  time.monotonic() + 3600, print, per_pair=per_pair) == (
        [], ["where it grew: not measured for bench_model.StepTime.time_step(64) [jax]: StepPhases has no cell at "
             "its parameters"])
    assert ran == []


def test_where_it_grew_says_when_the_cell_s_change_is_not_in_what_the_cut_runs():
    # a real A/B (2026-12-04): a plant in fitbench's harness around fit made StepTime 1.116x, while StepPhases'
    # own `fit` moved -0.09 ms: the phases then cannot place it, and the note says so
    import random

    from fitbench.regress.localize import MIN_INTERVAL_PAIRS, unseen_change

    rng = random.Random(7)

    def pair(fit_grows_by: float) -> dict[str, tuple[list[float], list[float]]]:
        out = {}
        for cid, ms in zip(breakdown.CONFIGURATION_IDS, (2.0, 3.0, 6.0, 8.0, 10.0, 12.0, 13.0)):
            grown = ms * (fit_grows_by if cid in ("fit", "fit_progress") else 1.0)
            out[cid] = ([ms * rng.uniform(0.99, 1.01) / 1000 for _ in range(5)],
                        [grown * rng.uniform(0.99, 1.01) / 1000 for _ in range(5)])
        return out

    unchanged = [pair(1.0) for _ in range(MIN_INTERVAL_PAIRS + 1)]
    note = unseen_change(unchanged, 1.12)
    assert note.startswith("this cut's `fit` changed by ") and "under half the cell's change (1.120×, at least " \
        "1.120× at 95 %: about +1.44 ms, at least +1.44)" in note and "cannot place it" in note
    assert "at least 1.100×" in unseen_change(unchanged, 1.12, 1.10)
    # a cell barely worse (its interval reaches 1.005x): the cut's fit is not shown to see under half of that
    assert unseen_change(unchanged, 1.12, 1.005) == ""
    assert unseen_change(unchanged, float("nan")) == "" and unseen_change(unchanged, 1.12, float("nan")) == ""
    assert unseen_change(unchanged, 1.0) == ""  # nothing to see
    assert unseen_change([pair(1.12) for _ in range(MIN_INTERVAL_PAIRS + 1)], 1.12) == ""  # the cut saw it
    # most of it (the toy suite of tests/test_alert_stages.py: its cut grows 25 % where its StepTime grows 30 %)
    assert unseen_change([pair(1.09) for _ in range(MIN_INTERVAL_PAIRS + 1)], 1.12) == ""
    assert unseen_change(unchanged[:3], 1.12) == "" and unseen_change(unchanged, None) == ""  # cannot tell


def test_the_alert_keeps_its_verdict_before_it_measures_where_a_cell_grew(monkeypatch, tmp_path):
    # where it grew takes minutes after the verdict: an interrupt then must leave alert.json and alert.md with it
    import contextlib
    import json
    from types import SimpleNamespace

    from fitbench.regress import alert as alerting
    from fitbench.regress.alertdoc import Comparison

    key = "bench_fit.StepTime.time_step(256) [tensorflow]"
    for name, value in (("require_asv", lambda: None), ("repo_root", lambda repo: repo),
                        ("resolve_commit", lambda repo, rev: rev * 40),
                        ("select_benchmarks", lambda repo, bench: ["bench_fit.StepTime.time_step(256)"]),
                        ("backend_environments", lambda repo, backends: {"tensorflow": "env-tf"}),
                        ("machine_name", lambda: "vm"), ("ensure_machine", lambda repo, machine: None),
                        ("asv_config", lambda repo: SimpleNamespace(results_dir=str(tmp_path / "results"))),
                        ("writing", lambda folder, what: contextlib.nullcontext())):
        monkeypatch.setattr(alerting.asvdata, name, value)
    monkeypatch.setattr(alerting, "load_calibration", lambda repo, machine: None)
    monkeypatch.setattr(alerting.pairedalert, "plan_pairs", lambda *args, **kwargs: ([12, 12], "default"))
    seen = {}

    def paired_live(*args, on_verdict, **kwargs):
        rows = {key: Comparison(benchmark="bench_fit.StepTime.time_step", params={"batch_size": "256"}, unit="s",
                                before=0.013, after=0.0145, change="worse", ratio=1.116, ci_low=1.097,
                                ci_high=1.137, backend="tensorflow")}
        on_verdict(rows, 1)
        seen["kept"] = json.loads((tmp_path / "out" / "alert.json").read_text())
        raise KeyboardInterrupt  # while it measures where the cell grew

    monkeypatch.setattr(alerting.pairedalert, "paired_live", paired_live)
    with pytest.raises(KeyboardInterrupt):
        alerting.alert("repo", "a", "b", str(tmp_path / "out"))
    assert seen["kept"]["exit_status"] == 1 and seen["kept"]["verdict"] == "regression"
    assert (tmp_path / "out" / "alert.md").read_text().startswith("## fitbench alert")
