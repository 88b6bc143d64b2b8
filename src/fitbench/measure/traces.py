"""How many times `fit` traced (compiled) the training step: an exact count, no statistics.

A healthy Keras model traces its step once per `fit` and keeps it (TensorFlow: a tf.function traced twice on
its first call; JAX: one jax.jit cache miss; PyTorch with jit on: the graphs torch.compile makes of it). A
retrace bug (a shape or a Python value that changes, a train function rebuilt every epoch) shows as a count
that grows with the epochs, and makes `fit` many times slower. What each backend counts is its STEP_TRACES.

`count_fit_traces` is what `fitbench run`'s cells, the asv suite's `Traces.track_step_traces` and the tests
call; the count covers a fit of several epochs started on a model that has never been fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from fitbench import backends
from fitbench.backends.common import NotTraced

SCHEMA_VERSION = 1
EPOCHS = 3  # a retrace per epoch reads as three times the healthy count
STEPS_PER_EPOCH = 2
NOT_COMPILED = "not compiled: Keras runs the step op by op, nothing is traced"


@dataclass(frozen=True)
class TraceCount:
    """The traces of one model's training step during one `fit` of `epochs` epochs."""

    backend: str  # the stack: tensorflow, jax, torch, tf-keras
    compiled: bool  # Keras ran the step as a traced function (False: op by op, nothing to trace)
    step_traces: int | None  # None where the framework gives no count (an old torch)
    epochs: int
    steps_per_epoch: int
    what: str  # what was counted, in words (the backend's STEP_TRACES)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stack_of(harness: Any) -> str:
    """The stack a harness runs on: Keras 2 (tf-keras) or Keras 3's backend."""
    return "tf-keras" if harness.keras.__name__.startswith("tf_keras") else harness.backend


class TraceCounting:
    """Counts the traces of a harness's training step from now until `stop`: over every `fit` call in between
    (the harness's model must never have been fit: Keras keeps the first trace, so a count started later would
    miss it; ValueError)."""

    def __init__(self, harness: Any) -> None:
        model = harness.model
        if getattr(model, "train_function", None) is not None:
            raise ValueError("counting traces needs a model that has never been fit: its first trace is done")
        self.stack = stack_of(harness)
        self._backend = backends.get(self.stack)
        self._counter = self._backend.step_trace_counter(model)

    def stop(self, epochs: int, steps_per_epoch: int) -> TraceCount:
        """The count, with what was fit meanwhile (`epochs` fit epochs or calls of `steps_per_epoch` steps)."""
        compiled = not isinstance(self._counter, NotTraced)
        return TraceCount(backend=self.stack, compiled=compiled, step_traces=self._counter.stop(), epochs=epochs,
                          steps_per_epoch=steps_per_epoch,
                          what=self._backend.STEP_TRACES if compiled else NOT_COMPILED)


def count_fit_traces(harness: Any, epochs: int = EPOCHS, steps_per_epoch: int = STEPS_PER_EPOCH,
                     callbacks: Sequence[Any] = ()) -> TraceCount:
    """One `fit` of `epochs` × `steps_per_epoch` training steps on the harness's feed (a never-fit model),
    counting the traces of its step."""
    counting = TraceCounting(harness)
    k = getattr(harness, "steps_per_execution", 1)
    try:
        harness.model.fit(harness.feed(), epochs=epochs, steps_per_epoch=steps_per_epoch * k, verbose=0,
                          callbacks=list(callbacks), shuffle=False)
    finally:
        count = counting.stop(epochs, steps_per_epoch)
    return count
