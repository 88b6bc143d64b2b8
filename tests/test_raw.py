"""The floor: the raw training step, the peak probe, the tuned fit variant, and the numbers built on them."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SMALL, load, run_cli
from fitbench.measure.cells import PLAIN, TUNED, plan_cells
from fitbench.measure.harness import FitHarness
from fitbench.measure.peak import matmul_flops, measure_peak
from fitbench.measure.raw import RawHarness
from fitbench.models.seed import ModelSpec, build_model, compile_model
from fitbench.models.seed_data import synthetic_batch
from fitbench.report.tables import jit_ratios, tuned_gains

SPEC = ModelSpec(widths=(16, 16))


@pytest.mark.parametrize("jit", [False, True])
def test_raw_tensorflow_step_trains_like_keras_fit(keras_cpu, jit):
    # Same initial weights, data, loss and Adam: three raw steps land where three Keras fit steps do.
    raw = RawHarness("tensorflow", jit, 4, SPEC, seed=3)
    raw.run_steps(3)
    model = compile_model(build_model("functional", SPEC, seed=3), jit, SPEC)
    x, y = synthetic_batch(SPEC, 4, 3)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False)
    assert [w.shape for w in raw.weights()] == [w.shape for w in model.get_weights()]
    for a, b in zip(raw.weights(), model.get_weights()):
        assert np.max(np.abs(a - b)) <= 1e-6
    assert raw.losses == pytest.approx(history.history["loss"], rel=1e-5)
    assert raw.losses[2] < raw.losses[0]  # it trains


def test_raw_harness_times_every_step_after_the_first(keras_cpu):
    raw = RawHarness("tensorflow", True, 2, SPEC, seed=0)
    first = raw.warm_up(2)
    times = raw.run_steps(5)
    assert len(times) == 5 and all(t > 0 for t in times)
    assert first > 0 and raw.first_step_s == first and len(raw.losses) == 7
    assert "CPU" in raw.variable_device()


def test_raw_harness_refuses_an_unknown_backend(keras_cpu):
    with pytest.raises(ValueError, match="no raw step"):
        RawHarness("mxnet", False, 2, SPEC)


def test_peak_probe_reports_the_best_run_of_a_2n3_flop_product(keras_cpu):
    peak = measure_peak("tensorflow", "cpu", n=256, repeats=3)
    assert peak["flops"] == matmul_flops(256) == 2 * 256 ** 3
    assert len(peak["times_s"]) == 3 and peak["best_s"] == min(peak["times_s"]) > 0
    assert peak["gflops_per_s"] == pytest.approx(peak["flops"] / peak["best_s"] / 1e9)
    assert peak["device"] == "cpu" and "logical cores" in peak["device_name"]


def test_peak_probe_on_a_missing_gpu_is_none_not_the_cpu(keras_cpu):
    from fitbench.processes.runtime import gpu_names

    if gpu_names():
        pytest.skip("this machine has a GPU")
    assert measure_peak("tensorflow", "gpu", n=64, repeats=1) is None


def test_tuned_harness_runs_k_steps_per_execution_and_divides_the_time(keras_cpu, monkeypatch):
    harness = FitHarness("sequential", False, 4, SPEC, seed=0, variant=TUNED, steps_per_execution=4)
    assert harness.steps_per_execution == 4 and harness.prefetch is True
    assert harness.input_pipeline == "tf.data" and harness.data_on_device is False  # TensorFlow's knobs
    executions = harness.fit_executions(3)
    assert len(executions) == 3  # the batch callback fires once per execution of 4 steps
    assert int(harness.model.optimizer.iterations.numpy()) == 12  # but 12 training steps ran
    steps = harness.fit_steps(8)
    assert len(steps) == 2 and int(harness.model.optimizer.iterations.numpy()) == 20
    # the per-step sample is the execution's wall time divided by k
    monkeypatch.setattr(harness, "fit_executions", lambda n: [0.8, 0.4, 0.2][:n])
    assert harness.fit_steps(9) == pytest.approx([0.2, 0.1, 0.05])  # 9 steps round up to 3 executions


def test_plain_harness_keeps_one_step_per_execution(keras_cpu):
    harness = FitHarness("functional", False, 4, SPEC, seed=0)
    assert harness.variant == PLAIN and harness.steps_per_execution == 1 and harness.prefetch is False
    assert len(harness.fit_steps(3)) == 3
    with pytest.raises(ValueError, match="unknown variant"):
        FitHarness("functional", False, 4, SPEC, variant="turbo")
    with pytest.raises(ValueError, match="data_on_device is a knob of the jax and torch backends"):
        FitHarness("functional", False, 4, SPEC, data_on_device=True)  # TensorFlow feeds tf.data


def test_knobs_name_what_a_record_ran_with():
    from fitbench.report.tables import knobs

    assert knobs({"steps_per_execution": 1, "prefetch": False}) == "none"
    assert knobs({"steps_per_execution": 8, "prefetch": True, "data_on_device": False}) == "spe=8, prefetch"
    assert knobs({"steps_per_execution": 1, "prefetch": False, "data_on_device": True}) == "data on device"


def test_plan_cells_adds_the_tuned_variant_to_fit_cells_only():
    cells = plan_cells(["functional"], [False, True], ["cpu"], [8, 16], variants=[PLAIN, TUNED])
    fit = [c for c in cells if c.kind == "fit"]
    assert len(fit) == 2 * 2 * 2 and {c.variant for c in fit} == {PLAIN, TUNED}
    assert {c.variant for c in cells if c.kind == "seed_epoch"} == {PLAIN}
    assert len(plan_cells(["functional"], [True], ["cpu"], [8], backend=["tensorflow", "jax"],
                          include_seed=False)) == 2


def _fit(variant: str, jit: bool, samples_per_s: float, efficiency: float | None) -> dict:
    return dict(kind="fit", backend="tensorflow", api="functional", device="cpu", batch_size=32, status="ok",
                variant=variant, jit_effective=jit, samples_per_s=samples_per_s, efficiency=efficiency,
                steps_per_execution=8 if variant == TUNED else 1)


def test_tuned_gain_and_the_share_of_the_gap_it_closes():
    # plain fit takes 4 raw steps' time, tuned 2.5: it closes (4 - 2.5) / (4 - 1) = half the gap
    gains = tuned_gains([_fit(PLAIN, True, 100.0, 0.25), _fit(TUNED, True, 160.0, 0.4),
                         _fit(PLAIN, False, 50.0, None), _fit(TUNED, False, 60.0, 0.5)])
    assert len(gains) == 2
    on = next(g for g in gains if g["jit_effective"])
    assert on["gain"] == pytest.approx(1.6) and on["gap_closed"] == pytest.approx(0.5)
    off = next(g for g in gains if not g["jit_effective"])
    assert off["gain"] == pytest.approx(1.2) and off["gap_closed"] is None  # no raw step for plain


def test_jit_ratio_does_not_pair_plain_with_tuned():
    ratios = jit_ratios([_fit(PLAIN, False, 100.0, 0.5), _fit(TUNED, True, 300.0, 0.5)])
    assert ratios == []


@pytest.mark.processes
def test_run_records_the_floor_the_peak_and_the_variant(tmp_path):
    out = tmp_path / "run.json"
    plot = tmp_path / "throughput.png"
    result = run_cli("run", *SMALL, "--api", "functional", "--batch-sizes", "4", "--jit", "on",
                     "--no-seed-workload", "--json", str(out), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    doc = load(out)
    [peak] = doc["peaks"]  # measured once for the run, not once per cell
    assert peak["status"] == "ok" and peak["device"] == "cpu" and peak["gflops_per_s"] > 0
    records = doc["records"]
    assert sorted(r["variant"] for r in records) == [PLAIN, TUNED]
    for r in records:
        assert r["status"] == "ok" and r["raw_step_time_s"] > 0 and r["raw_jit"] is True
        assert r["efficiency"] == pytest.approx(r["raw_step_time_s"] / r["step_time_median_s"])
        assert r["peak_gflops_per_s"] == peak["gflops_per_s"]
        assert r["pct_of_peak"] == pytest.approx(100 * r["gflops_per_s"] / peak["gflops_per_s"])
    tuned = next(r for r in records if r["variant"] == TUNED)
    k = doc["profile"]["steps_per_execution"]
    assert tuned["steps_per_execution"] == k > 1 and tuned["prefetch"] is True
    assert len(tuned["step_times_s"]) == 20 and tuned["steps_timed"] == 20 * k
    assert "raw/fit" in result.stdout and "gap closed" in result.stdout and "peak probe" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.processes
def test_no_floor_leaves_the_raw_step_and_the_peak_out(tmp_path):
    out = tmp_path / "run.json"
    result = run_cli("run", *SMALL, "--api", "sequential", "--batch-sizes", "2", "--jit", "off", "--variant",
                     "plain", "--no-seed-workload", "--no-floor", "--json", str(out))
    assert result.returncode == 0, result.stderr
    doc = load(out)
    assert doc["peaks"] == [] and len(doc["records"]) == 1
    r = doc["records"][0]
    assert r["raw_step_time_s"] is None and r["efficiency"] is None and r["pct_of_peak"] is None


def test_no_gap_closed_where_plain_fit_is_already_at_the_raw_step():
    # plain at 0.99 of the raw step: a 1 % gap, whose "share closed" was noise (−1733 % once)
    gains = tuned_gains([_fit(PLAIN, True, 100.0, 0.99), _fit(TUNED, True, 130.0, 1.3)])
    assert gains[0]["gain"] == pytest.approx(1.3) and gains[0]["gap_closed"] is None


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_tables_fit_the_terminal_without_cutting_a_number(width):
    from rich.console import Console

    from fitbench.report.tables import jit_ratio_table, run_table, tuned_gain_table

    records = []
    for jit in (False, True):
        for variant, speed, eff in ((PLAIN, 1_234_567.0, 0.25), (TUNED, 2_345_678.0, 0.5)):
            r = _fit(variant, jit, speed, eff)
            r.update(api="subclassed", jit_requested=jit, step_time_median_s=0.0123456, step_time_iqr_s=0.00123,
                     gflops_per_s=123.4, pct_of_peak=101.9, raw_step_time_s=0.003, first_step_s=1.5,
                     peak_rss_bytes=2**30, prefetch=True, data_on_device=False)
            records.append(r)
    console = Console(width=width, record=True)
    for table in (run_table(records), jit_ratio_table(records), tuned_gain_table(records)):
        console.print(table)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for number in ("1,234,567", "2,345,678", "12.35", "10 %", "0.25", "1.90×"):
        assert number in text, number
