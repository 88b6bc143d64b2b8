"""The run document: `RunRecord` (one per cell), `PeakRecord` (one per backend and device) and `RunDocument`.

These dataclasses own the JSON fields of `fitbench run --json`: the child fills a `RunRecord`, the parent
collects them into a `RunDocument`; docs/reference.md's field table is generated from the `doc` metadata
here (`python -m fitbench.measure.record`) and tests/test_schema.py checks both it and the shipped JSON
Schema (fitbench/schemas/run.schema.json) against these fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fitbench.measure.cells import Cell
from fitbench.report.document import Document

SCHEMA_VERSION = 1  # of the run document; bump when a field changes meaning or goes away


def _doc(text: str, default: Any = None) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass
class RunRecord(Document):
    """One cell's result. Every field is present in every record; null where the cell did not get that far."""

    kind: str = _doc("`fit` (training steps on a synthetic batch) or `seed_epoch` (the seed's workload: one "
                     "step on 1 sample + validation, timed per epoch)")
    api: str = _doc("`sequential`, `functional` or `subclassed`")
    jit: bool = _doc("the cell's jit axis, as requested (`jit_compile=`)")
    device: str = _doc("`cpu` or `gpu`")
    batch_size: int = _doc("samples per training step")
    backend: str = _doc("Keras backend: `tensorflow`, `jax` or `torch`", "tensorflow")
    variant: str = _doc("`plain` (compile + fit as written) or `tuned` (steps_per_execution; prefetch on "
                        "TensorFlow, the batch on the device on JAX and PyTorch)", "plain")
    model: str = _doc("`seed` (the question's network), a zoo name, `module:function` or a .keras file's name",
                      "seed")
    keras_major: int = _doc("3 (the `keras` package), or 2: tf-keras (Keras 2) on TensorFlow, the `tf-keras` "
                            "row; documents written before this field existed are Keras 3", 3)
    determinism: str | None = _doc("the backend's determinism switch turned on in the cell's process (its name, "
                                   "fitbench.determinism.switch); null: off. Documents before this field: off")
    determinism_in_force: bool | None = _doc("whether the framework said the switch was on when the cell ran")
    device_count: int = _doc("devices the global batch is split over (keras.distribution.DataParallel; simulated "
                             "on a CPU); 1: one device, no distribution. Documents before this field: 1", 1)
    per_device_batch: int | None = _doc("batch_size ÷ device_count")
    status: str = _doc("`ok`, `skipped` (see `reason`) or `error` (see `error`)", "ok")
    reason: str | None = _doc("why a skipped cell did not run")
    error: str | None = _doc("the failed cell's last error line")
    versions: dict[str, str] | None = _doc("python, keras, numpy, the backend's framework (and tensorflow "
                                           "wherever tf.data loaded it)")
    device_name: str | None = _doc("the CPU model and core count, or the GPU's name")
    jit_requested: bool | None = _doc("what the cell asked Keras for")
    jit_effective: bool | None = _doc("what Keras really ran, read back from the compiled model (TF op "
                                      "determinism turns XLA off, for example)")
    variable_device: str | None = _doc("where the model's first variable lives, as the framework spells it")
    raw_device: str | None = _doc("where the raw step's first variable lives")
    params: int | None = _doc("trainable parameters")
    widths: list[int] | None = _doc("hidden Dense widths (the seed network only)")
    steps_per_execution: int | None = _doc("training steps per call into the compiled function")
    prefetch: bool | None = _doc("tf.data `prefetch(AUTOTUNE)` (tuned TensorFlow cells)")
    data_on_device: bool | None = _doc("the batch converted to a device tensor once (tuned JAX/PyTorch cells)")
    input_pipeline: str | None = _doc("`tf.data`, `python generator` or `numpy arrays`")
    variant_note: str | None = _doc("what the variant could not do as asked (Keras on PyTorch runs 1 step per "
                                    "execution)")
    warmup_steps: int | None = _doc("untimed steps before the timed ones; the first is trace + compile")
    steps_timed: int | None = _doc("training steps timed (samples × steps_per_execution)")
    step_times_s: list[float] | None = _doc("every sample: an execution's wall time ÷ steps_per_execution "
                                            "(an epoch's for `seed_epoch`)")
    step_time_median_s: float | None = _doc("median of `step_times_s`")
    step_time_iqr_s: float | None = _doc("interquartile range of `step_times_s`")
    step_time_min_s: float | None = _doc("fastest sample")
    step_time_mean_s: float | None = _doc("mean sample")
    samples_per_s: float | None = _doc("batch_size ÷ step_time_median_s")
    first_step_s: float | None = _doc("the first execution: trace, compile and steps_per_execution steps")
    first_step_load_1min: float | None = _doc("the machine's 1-minute load average as the first step began: host "
                                              "load alone can make a compile many times slower. Documents before "
                                              "this field: null")
    step_traces: int | None = _doc("how many times the cell's `fit` calls traced (compiled) the training step, "
                                   "all of them together: exact, and the same for every call once traced "
                                   "(tensorflow 2 = one tf.function; jax 1; torch with jit: Dynamo's graphs); "
                                   "0 when the step runs op by op; see `step_traces_what`. Documents before this "
                                   "field: null")
    step_traces_what: str | None = _doc("what `step_traces` counted on this backend (fitbench.measure.traces)")
    flops_per_step: int | None = _doc("FLOPs of one training step; null where fitbench has no count")
    flops_source: str | None = _doc("`analytic` (the seed network's matrix products) or `xla_cost_analysis` "
                                    "(XLA's count of the JAX floor's compiled step)")
    gflops_per_s: float | None = _doc("flops_per_step ÷ step_time_median_s ÷ 1e9 (null without a count)")
    raw_step_time_s: float | None = _doc("median time of the floor: the seed's raw step (the framework's own "
                                         "idiom, no Keras), or any other model's custom training loop around "
                                         "the Keras model; null for `seed_epoch` and with --no-floor")
    raw_first_step_s: float | None = _doc("the raw step's first (compiling) step")
    raw_jit: bool | None = _doc("the raw step's jit: the cell's effective jit")
    raw_idiom: str | None = _doc("how the raw step is written (GradientTape in tf.function, jax.jit, ...)")
    efficiency: float | None = _doc("raw_step_time_s ÷ step_time_median_s (1: fit adds nothing)")
    peak_gflops_per_s: float | None = _doc("the device's peak matmul GFLOP/s from this run's probe")
    pct_of_peak: float | None = _doc("100 × gflops_per_s ÷ peak_gflops_per_s")
    threads: dict[str, int] | None = _doc("the framework's thread pools in force")
    threads_setting: int | None = _doc("what --threads asked for (null: the framework's defaults)")
    affinity: list[int] | None = _doc("the CPUs the process could run on")
    peak_rss_bytes: int | None = _doc("peak resident memory of the cell's process (forked from a warm template: "
                                      "the pages it touched, without the import's pages of the template it never "
                                      "touched, so lower than a fresh process's; compare within one "
                                      "`cell_processes`)")

    @classmethod
    def for_cell(cls, cell: Cell, **values: Any) -> "RunRecord":
        return cls(**{**asdict(cell), "jit_requested": cell.jit, **values})

    @classmethod
    def not_measured(cls, cell: Cell, status: str, why: str, **values: Any) -> "RunRecord":
        """A record for a cell that produced no timing (skipped or error)."""
        return cls.for_cell(cell, status=status, **{("reason" if status == "skipped" else "error"): why}, **values)



@dataclass
class PeakRecord(Document):
    """The peak probe of one backend and device: GFLOP/s of one large float32 matmul, best of several."""

    backend: str = _doc("Keras backend whose framework ran the matmul")
    device: str = _doc("`cpu` or `gpu`")
    status: str = _doc("`ok`, `skipped` (no GPU) or `error`", "ok")
    reason: str | None = _doc("why it was skipped")
    error: str | None = _doc("the failed probe's last error line")
    gflops_per_s: float | None = _doc("flops ÷ best_s ÷ 1e9")
    device_name: str | None = _doc("the CPU model or the GPU's name")
    n: int | None = _doc("matrix size (n×n by n×n)")
    dtype: str | None = _doc("float32")
    flops: int | None = _doc("2·n³")
    times_s: list[float] | None = _doc("every timed product")
    best_s: float | None = _doc("the fastest product")



@dataclass
class RunDocument(Document):
    """`fitbench run --json`: written after every finished cell, so an interrupted run keeps what it measured."""

    started: str = _doc("UTC, ISO 8601")
    fitbench_version: str = _doc("the package's version")
    profile: dict[str, Any] = _doc("the profile's settings (batch sizes, warm-up and timed steps)")
    spec: dict[str, Any] = _doc("the seed network: input_dim, widths, output_dim, activation, learning_rate")
    model: dict[str, Any] = _doc("--model as given: source, widths, loss, optimizer, data", None)
    seed: int = _doc("random seed of weights and data", 0)
    threads_setting: int | None = _doc("--threads (null: the frameworks' defaults)")
    cpus: list[int] | None = _doc("--cpus (null: no pinning)")
    cell_processes: str = _doc("how each cell's own process started: `forked` from a warm template of its "
                               "environment that imported the framework once (CPU cells; a GPU's cells always "
                               "start fresh), or `fresh` (--fresh-processes; documents written before the "
                               "field: fresh)", "fresh")
    command: str = _doc("`run`", "run")
    schema_version: int = _doc("this document's layout version", SCHEMA_VERSION)
    complete: bool = _doc("false while running or when interrupted", False)
    finished: str | None = _doc("UTC, ISO 8601, when complete")
    peaks: list[PeakRecord] = field(default_factory=list, metadata={"doc": "one peak probe per backend and device"})
    records: list[RunRecord] = field(default_factory=list, metadata={"doc": "one record per cell, in run order"})



def field_table(cls: type) -> str:
    """A markdown table of a record's fields and their meaning (docs/reference.md holds these tables)."""
    rows = [f"| `{f.name}` | {f.metadata.get('doc', '')} |" for f in fields(cls)]
    return "\n".join(["| field | meaning |", "|---|---|", *rows])


if __name__ == "__main__":
    for kind in (RunDocument, RunRecord, PeakRecord):
        print(f"#### `{kind.__name__}`\n\n{field_table(kind)}\n")
