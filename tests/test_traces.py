"""Trace counts of `fit` (fitbench.measure.traces), on Keras 3 with TensorFlow in this process: exact integers."""

from __future__ import annotations

import pytest

from fitbench.measure.harness import FitHarness
from fitbench.measure.traces import NOT_COMPILED, TraceCounting, count_fit_traces
from fitbench.models.seed import ModelSpec

SMALL = ModelSpec(input_dim=8, widths=(8,), output_dim=2)


def harness(jit: bool = False) -> FitHarness:
    return FitHarness("functional", jit, 4, SMALL, seed=0)


def rebuild_every_epoch(h: FitHarness):
    """A retrace bug: the train function rebuilt at every epoch's start, as a callback that recompiles does."""
    return h.keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: h.model.make_train_function(
        force=True))


@pytest.mark.parametrize("jit", [False, True])
def test_a_healthy_fit_traces_its_step_once_however_many_epochs(keras_cpu, jit):
    three, six = count_fit_traces(harness(jit), epochs=3), count_fit_traces(harness(jit), epochs=6)
    # TensorFlow traces a tf.function twice on its first call (once to find the variables it creates)
    assert three.step_traces == six.step_traces == 2
    assert three.compiled and three.backend == "tensorflow" and three.what.startswith("tf.function traces")
    assert (three.epochs, six.epochs, three.steps_per_epoch, three.schema_version) == (3, 6, 2, 1)


def test_a_train_function_rebuilt_every_epoch_is_counted_epoch_by_epoch(keras_cpu):
    h3, h6 = harness(), harness()
    three = count_fit_traces(h3, epochs=3, callbacks=[rebuild_every_epoch(h3)]).step_traces
    six = count_fit_traces(h6, epochs=6, callbacks=[rebuild_every_epoch(h6)]).step_traces
    healthy = count_fit_traces(harness(), epochs=3).step_traces
    assert three > healthy and six - three == 3  # one more trace per epoch


def test_an_eager_step_traces_nothing_and_the_model_keeps_its_own_train_step(keras_cpu):
    h = harness()
    h.model.run_eagerly = True
    count = count_fit_traces(h)
    assert (count.compiled, count.step_traces, count.what) == (False, 0, NOT_COMPILED)
    h = harness()
    assert count_fit_traces(h).step_traces == 2
    assert "train_step" not in vars(h.model)  # the counter is gone: the class's method again


def test_counting_after_the_first_fit_is_refused(keras_cpu):
    h = harness()
    h.fit_steps(1)
    with pytest.raises(ValueError, match="never been fit"):
        TraceCounting(h)


def test_the_default_alert_decides_the_trace_count_of_fitbenchs_suite_and_of_a_users():
    import re

    from fitbench.regress import asvinit
    from fitbench.regress.alertdoc import DEFAULT_BENCH, EXACT

    chosen = [name for name in ("bench_compile.Traces.track_step_traces('functional', True)",
                                "bench_compile.Traces.track_step_traces('functional', False)",
                                "bench_compile.Traces.track_step_traces('sequential', True)",
                                "bench_model.Traces.track_step_traces(32)") if re.search(DEFAULT_BENCH, name)]
    assert chosen == ["bench_compile.Traces.track_step_traces('functional', True)",
                      "bench_model.Traces.track_step_traces(32)"]
    assert re.search(asvinit.alert_bench((32, 256)), "bench_model.Traces.track_step_traces(32)")
    assert EXACT.search("bench_model.Traces.track_step_traces")  # decided exactly, one value per commit
