import pytest

from fitbench.errors import UsageError
from fitbench.measure.cells import FIT, SEED_EPOCH, plan_cells
from fitbench.measure.harness import FitHarness, SeedHarness, summarize
from fitbench.models.seed import ModelSpec
from fitbench.report.tables import jit_ratios


def test_summarize_uses_median_and_quartiles():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median_s"] == 3.0 and s["min_s"] == 1.0 and s["max_s"] == 100.0
    assert s["p25_s"] == 2.0 and s["p75_s"] == 4.0 and s["iqr_s"] == 2.0
    assert summarize([0.5])["median_s"] == 0.5


def test_plan_cells_crosses_every_axis_and_adds_the_seed_workload():
    cells = plan_cells(["sequential", "functional"], [False, True], ["cpu", "gpu"], [1, 32])
    fit = [c for c in cells if c.kind == FIT]
    assert len(fit) == 2 * 2 * 2 * 2 and len(cells) - len(fit) == 2 * 2 * 2
    assert {c.batch_size for c in cells if c.kind == SEED_EPOCH} == {1}
    assert not any(c.kind == SEED_EPOCH for c in plan_cells(["functional"], [True], ["cpu"], [4], include_seed=False))


@pytest.mark.parametrize("kwargs, message", [
    (dict(apis=["sequencial"]), "unknown api"), (dict(devices=["tpu"]), "unknown device"),
    (dict(batch_sizes=[0]), "batch size"), (dict(batch_sizes=[-4]), "batch size"),
    (dict(backend="mxnet"), "unknown backend")])
def test_plan_cells_rejects_bad_choices(kwargs, message):
    args = dict(apis=["functional"], jits=[True], devices=["cpu"], batch_sizes=[1], **{})
    args.update(kwargs)
    with pytest.raises(UsageError, match=message):
        plan_cells(**args)


def test_jit_ratio_pairs_cells_by_effective_jit():
    base = dict(kind=FIT, api="functional", device="cpu", batch_size=8, status="ok")
    records = [dict(base, jit_effective=False, samples_per_s=100.0),
               dict(base, jit_effective=True, samples_per_s=150.0),
               dict(base, batch_size=16, jit_effective=False, samples_per_s=10.0),
               dict(base, batch_size=16, jit_effective=False, samples_per_s=11.0)]  # jit asked, but turned off
    ratios = jit_ratios(records)
    assert len(ratios) == 1 and ratios[0]["batch_size"] == 8 and ratios[0]["ratio_on_off"] == pytest.approx(1.5)


def test_fit_harness_times_each_step_after_the_compile_step(keras_cpu):
    harness = FitHarness("functional", True, 4, ModelSpec(widths=(8,)), seed=0)
    first = harness.warm_up(2)
    times = harness.fit_steps(5)
    assert len(times) == 5 and all(t > 0 for t in times)
    assert first > 0 and harness.first_step_s == first
    assert harness.jit_effective is True


def test_seed_harness_times_each_epoch(keras_cpu):
    harness = SeedHarness("sequential", False, ModelSpec(widths=(8,)), seed=0)
    harness.warm_up(1)
    times = harness.fit_epochs(3)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert harness.jit_effective is False


def test_a_run_document_that_cannot_be_written_is_kept_elsewhere_and_says_so(tmp_path, monkeypatch):
    """A write that fails after the up-front check (a full disk) no longer loses every measured cell: the
    document goes to the temporary folder and the failure is kept to be told."""
    import errno
    import json
    import tempfile

    from fitbench.measure import engine
    from fitbench.measure.record import RunDocument

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real_write = engine.write_json_atomic

    def full_disk(path, document):
        if str(path).startswith("/full/"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, document)

    monkeypatch.setattr(engine, "write_json_atomic", full_disk)
    keeper = engine.JsonKeeper("/full/run.json")
    doc = RunDocument(started="2026-11-30T00:00:00+00:00", fitbench_version="x", profile={}, spec={}, model={},
                      seed=0, threads_setting=None, cpus=None)
    keeper.keep(doc)
    assert keeper.failure == "cannot write /full/run.json: No space left on device"
    assert keeper.path.startswith(str(tmp_path)) and json.load(open(keeper.path))["command"] == "run"
    keeper.keep(doc)  # the next cells go to the same fallback
    assert keeper.failure.startswith("cannot write /full/")


def test_each_backend_is_probed_just_before_its_first_cell_and_every_answer_is_told_as_it_comes(monkeypatch):
    """The first cell's answer reaches the screen after one peak probe, not after every backend's; each
    finished cell and probe says its answer in a few words (progress.advance), skipped ones why."""
    from fitbench.measure import engine
    from fitbench.measure.cells import plan_cells
    from fitbench.measure.profiles import get_profile
    from fitbench.measure.record import PeakRecord, RunRecord

    events: list[str] = []

    def probe(backend, device, timeout_s, warm=None):
        events.append(f"probe {backend}")
        return PeakRecord(backend, device, gflops_per_s=1234.5)

    def measure(cell, settings, peak=None, warm=None):
        events.append(f"cell {cell.backend}" + (" with its peak" if peak and peak.backend == cell.backend else ""))
        return RunRecord.for_cell(cell, samples_per_s=2048.0, efficiency=0.8)

    class Told:
        def looking_for_gpus(self, looking): ...
        def start(self, total): events.append(f"{total} to measure")
        def step(self, description): ...
        def advance(self, outcome=""): events.append(f"told: {outcome}")

    monkeypatch.setattr(engine, "peak_probe", probe)
    monkeypatch.setattr(engine, "measure", measure)
    cells = plan_cells(["functional"], [True], ["cpu"], [32], ["tensorflow", "jax", "torch"], include_seed=False)
    settings = engine.RunSettings(cells=cells, profile=get_profile("quick"), missing={"torch": "not installed"})
    doc = engine.run(settings, Told())
    assert events == ["5 to measure",  # three cells, two probes: the torch cell is skipped without one
                      "probe tensorflow", "told: peak 1,234 GFLOP/s", "cell tensorflow with its peak",
                      "told: 2,048 samples/s, raw/fit 0.80",
                      "probe jax", "told: peak 1,234 GFLOP/s", "cell jax with its peak",
                      "told: 2,048 samples/s, raw/fit 0.80",
                      "told: skipped: not installed"]
    assert [p.backend for p in doc.peaks] == ["tensorflow", "jax"] and doc.complete
