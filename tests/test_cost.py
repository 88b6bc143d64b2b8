"""The cost of determinism and the switches: `fitbench cost` decided on stand-in processes (A/A, A/B, the gate's
three answers, the interleaving), the switches' grammar, `fitbench coverage`'s judgement of layers, and bad input.
The real processes are in tests/test_backends.py (`run --determinism both`) and tests/test_cli.py (coverage)."""

from __future__ import annotations

import random

import pytest

from conftest import cli_exit
from fitbench import schema
from fitbench.determinism import cost, coverage
from fitbench.determinism.switch import default_switch, parse_switches, switch_env
from fitbench.errors import UsageError
from fitbench.measure.cells import plan_cells
from fitbench.regress.decide import FASTER, SLOWER

# ---------- the switches ----------


def test_every_stack_has_a_default_switch_and_tf_keras_shares_tensorflows():
    assert default_switch("tensorflow") == default_switch("tf-keras") == "op-determinism"
    assert default_switch("torch") == "deterministic-algorithms"
    assert default_switch("jax") == "deterministic-ops"
    assert switch_env("jax", "deterministic-ops") == {"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"}
    assert switch_env("torch", "warn-only") == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert switch_env("tensorflow", None) == {}


@pytest.mark.parametrize("text, message", [
    ("jax=op-determinism", "jax has no determinism switch 'op-determinism'; its switches: deterministic-ops, "
                           "exclude-nondeterministic-ops"),
    ("mxnet=on", "unknown backend 'mxnet'"),
    ("torch", "--switch takes BACKEND=NAME pairs"),
    ("torch=", "--switch takes BACKEND=NAME pairs"),
])
def test_a_switch_a_backend_does_not_have_is_one_clear_line(text, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_switches(text)


def test_parse_switches_keeps_what_was_named():
    assert parse_switches("torch=warn-only, jax=exclude-nondeterministic-ops") == {
        "torch": "warn-only", "jax": "exclude-nondeterministic-ops"}
    assert parse_switches(None) == {} and parse_switches("") == {}


def test_the_determinism_axis_puts_off_and_on_of_a_cell_side_by_side():
    cells = plan_cells(["functional"], [True], ["cpu"], [32], ["torch", "jax"], include_seed=False,
                       determinism=(False, True), switches={"torch": "warn-only"})
    assert [(c.backend, c.determinism) for c in cells] == [
        ("torch", None), ("torch", "warn-only"), ("jax", None), ("jax", "deterministic-ops")]
    assert "determinism=warn-only" in cells[1].label() and "determinism" not in cells[0].label()


@pytest.mark.parametrize("argv, message", [
    (["run", "--determinism", "on", "--backend", "jax", "--switch", "jax=op-determinism"], "jax has no determinism"),
    (["run", "--switch", "torch=warn-only"], "with --determinism off no switch is on"),
    (["run", "--determinism", "maybe"], "invalid choice: 'maybe'"),
    (["cost", "--max-cost", "0.8"], "--max-cost is a slow-down factor above 1"),
    (["cost", "--processes", "1"], "--processes must be at least 2"),
    (["cost", "--switch", "torch=warn-only"], "--switch names torch, which --backend does not run"),
    (["cost", "--backend", "jax", "--switch", "jax=warn-only"], "jax has no determinism switch 'warn-only'"),
    (["cost", "--profile", "huge"], "unknown profile 'huge'"),
    (["cost", "--of", "devices", "--backend", "jax", "--switch", "jax=deterministic-ops"], "--of determinism"),
    (["cost", "--of", "devices", "--backend", "jax", "--devices", "1"], "give one count, 2 or more"),
    (["cost", "--of", "devices", "--backend", "jax", "--devices", "2,4"], "give one count, 2 or more"),
    (["explain", "--pair", "devices", "--backend", "jax", "--devices", "0"], "--devices takes device counts"),
    (["cost", "--of", "devices", "--backend", "torch"], "not on torch"),
    (["cost", "--devices", "4"], "--devices goes with --of devices"),
    (["cost", "--model", "conv", "--api", "sequential,functional", "--backend", "tf-keras"], "tf-keras"),
    (["coverage", "--backend", "tf-keras"], "tf-keras (Keras 2) is not supported"),
    (["coverage", "--processes", "1"], "--processes must be at least 2"),
    (["coverage", "--api", "sequential,functional"], "one api at a time"),
    (["coverage", "--switch", "tensorflow=warn-only"], "tensorflow has no determinism switch 'warn-only'"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_process(argv, message, capsys, tmp_path):
    out = tmp_path / "out.json"
    assert cli_exit([*argv, "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fitbench: error:") and message in err[0], err
    assert not out.exists()


# ---------- cost on stand-in processes ----------


class StandIn:
    """A fresh process as `fitbench run` would measure it: a median step time drawn around `base_s`, times
    `factor` with the switch on, with a between-process spread of `cv`; records the order of the calls."""

    def __init__(self, factor: float = 1.0, cv: float = 0.02, seed: int = 0, jit_lost: bool = False) -> None:
        self.factor, self.cv, self.rng, self.jit_lost = factor, cv, random.Random(seed), jit_lost
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, cell):
        self.calls.append((cell.label(), cell.determinism))
        base = 0.010 * (1 + 0.5 * (cell.batch_size == 256))
        value = base * (self.factor if cell.determinism else 1.0) * self.rng.lognormvariate(0, self.cv)
        return {"status": "ok", "step_time_median_s": value, "determinism_in_force": bool(cell.determinism),
                "jit_effective": cell.jit and not (self.jit_lost and cell.determinism)}


SETTINGS = cost.CostSettings(backends=("tensorflow",), batch_sizes=(32, 256), jits=(True,), processes=6)


def test_a_switch_that_costs_30_percent_is_slower_with_an_interval_and_its_aa_is_not_an_alarm():
    doc = cost.run_cost(SETTINGS, measure=StandIn(factor=1.3, jit_lost=True))
    assert len(doc.cells) == 2 and doc.complete
    for c in doc.cells:
        assert c.cost.verdict == SLOWER and c.cost.processes == [6, 6]
        assert c.cost.ci_low < 1 / 1.3 < c.cost.ci_high and c.cost.ci_high < 1
        assert c.aa.verdict not in (SLOWER, FASTER)
        assert c.jit_effective == {"off": True, "on": False, "on again": False}
        assert c.treatment == "op-determinism" and c.switch_in_force["on"] is True and c.switch_in_force["off"] is False
    assert cost.aa_alarms(doc) == []
    schema.validate(doc.to_dict())


def test_no_cost_is_equivalent_and_no_cell_is_called_slower():
    doc = cost.run_cost(SETTINGS, measure=StandIn(factor=1.0, cv=0.01, seed=3))
    assert [c.cost.verdict for c in doc.cells] == ["equivalent", "equivalent"]


def test_the_columns_are_interleaved_cell_by_cell_and_reversed_every_other_time():
    stand_in = StandIn()
    cost.run_cost(cost.CostSettings(batch_sizes=(32, 256), jits=(True,), processes=2), measure=stand_in)
    switches = [s for _, s in stand_in.calls]
    on = "op-determinism"
    assert switches == [None, on, on, on, on, None, on, on, None, None, on, on]  # off on on', on' on off, ...


def test_the_devices_axis_is_one_device_against_n_with_its_own_columns_and_aa():
    stand_in = StandIn()
    settings = cost.CostSettings(backends=("jax",), batch_sizes=(32,), jits=(True,), processes=2, of=cost.DEVICES,
                                 devices=4)
    doc = cost.run_cost(settings, measure=stand_in)
    (c,) = doc.cells
    assert list(c.step_time_s) == ["1 device", "4 devices", "4 devices again"] and c.treatment == "4 devices"
    assert c.cost.column == "4 devices" and c.cost.reference == "1 device"
    assert [label.split(" devices=")[-1][:1] if "devices=" in label else "1" for label, _ in stand_in.calls][:3] == [
        "1", "4", "4"]
    schema.validate(doc.to_dict())
    with pytest.raises(UsageError, match="runs on jax only, not on torch"):
        cost.plan(cost.CostSettings(backends=("torch",), of=cost.DEVICES))


def test_rounds_are_kept_as_they_finish_so_an_interrupted_cost_keeps_them():
    kept = []
    cost.run_cost(cost.CostSettings(batch_sizes=(32,), jits=(False,), processes=3, aa=False),
                  measure=StandIn(), keep=lambda d: kept.append([len(c.step_time_s["off"]) for c in d.cells]))
    assert kept[:3] == [[1], [2], [3]]


def test_a_failed_process_is_an_error_of_its_column_not_a_value():
    def flaky(cell):
        if cell.determinism:
            return {"status": "error", "error": "RuntimeError: refused"}
        return {"status": "ok", "step_time_median_s": 0.01, "jit_effective": True, "determinism_in_force": False}

    doc = cost.run_cost(cost.CostSettings(batch_sizes=(32,), jits=(True,), processes=2), measure=flaky)
    c = doc.cells[0]
    assert c.errors["on"] == "error: RuntimeError: refused" and c.step_time_s["on"] == [] and c.cost is None


@pytest.mark.parametrize("factor, expected, status", [(2.0, True, 1), (1.0, False, 0), (1.35, None, 3)])
def test_the_gate_answers_over_under_or_cannot_tell(factor, expected, status):
    settings = cost.CostSettings(batch_sizes=(256,), jits=(True,), processes=6, max_cost=1.35)
    doc = cost.run_cost(settings, measure=StandIn(factor=factor, cv=0.02, seed=1))
    assert doc.cells[0].over_max_cost is expected and doc.exit_status == status


def test_over_max_cost_reads_the_interval_as_slow_down_factors():
    def comparison(low, high):
        return cost.SpeedComparison("on", "off", (low + high) / 2, low, high, 0.95, 0.01, 0.01, SLOWER, [6, 6], 0.05)

    assert cost.over_max_cost(comparison(0.5, 0.6), 1.35) is True  # 1.67-2× slower
    assert cost.over_max_cost(comparison(0.9, 1.0), 1.35) is False  # at most 1.11× slower
    assert cost.over_max_cost(comparison(0.7, 0.8), 1.35) is None  # 1.25-1.43×: across the line
    assert cost.over_max_cost(None, 1.35) is None
    assert cost.over_max_cost(cost.SpeedComparison("on", "off", 0.5, None, None, 0.95, 1, 1, "inconclusive",
                                                   [2, 2], None), 1.35) is None


# ---------- coverage's judgement ----------


def _layer(index, forward="f", gradient="g", **extra):
    return {"index": index, "name": f"l{index}", "layer": "Dense", "params": 4, "forward_sha256": forward,
            "gradient_sha256": gradient, "output_device": "cpu:0", "jit_error": None, **extra}


def test_coverage_judges_identical_differs_raises_not_reached_and_fell_back():
    raised = {"index": 2, "name": "l2", "layer": "Put", "params": 0, "error": "RuntimeError: put_ refused",
              "phase": "forward"}
    unreached = {"index": 3, "name": "l3", "layer": "Dense", "params": 4, "error": None, "phase": None}
    a = {"layers": [_layer(0), _layer(1, forward="x"), raised, unreached]}
    b = {"layers": [_layer(0), _layer(1, forward="y"), raised, unreached]}
    judged = coverage.judge([a, b], "cpu")
    assert [j.status for j in judged] == [coverage.IDENTICAL, coverage.DIFFERS, coverage.RAISES,
                                          coverage.NOT_REACHED]
    assert judged[1].detail == "forward differ between processes" and "put_ refused" in judged[2].detail
    assert judged[0].jit == "compiles"
    on_gpu = coverage.judge([{"layers": [_layer(0)]}, {"layers": [_layer(0)]}], "gpu")
    assert on_gpu[0].status == coverage.FELL_BACK and "cpu:0" in on_gpu[0].detail


def test_coverage_runs_each_backend_in_fresh_processes_and_exits_found_only_for_a_layer_it_does_not_cover():
    seen = []

    def run(kwargs, env):
        seen.append((kwargs["stack"], kwargs["switch"], env.get("XLA_FLAGS", ""), env.get("KERAS_BACKEND")))
        return {"switch": {"determinism_in_force": True}, "layers": [_layer(0)],
                "compiled": {"runs": True, "jit_effective": kwargs["stack"] != "tensorflow", "error": None}}

    doc = coverage.coverage(["tensorflow", "jax"], {}, {"source": "seed"}, "functional", run=run)
    assert [s[:2] for s in seen] == [("tensorflow", "op-determinism")] * 2 + [("jax", "deterministic-ops")] * 2
    assert "--xla_gpu_deterministic_ops=true" in seen[2][2] and seen[0][3] == "tensorflow"
    assert [r.compiled_jit_effective for r in doc.rows] == [False, True] and not coverage.found(doc)
    schema.validate(doc.to_dict())
