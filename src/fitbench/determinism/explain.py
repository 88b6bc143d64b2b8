"""`fitbench explain`: where two trainings that should be identical part — step, then layer, then phase.

Parent side (numpy only). Two streams are trained again step by step (fitbench.determinism.trace, in fresh
processes); every entry of every step (input batch, each layer's output, loss, each gradient, the
optimizer's state before it is applied, each variable's update) is hashed. The first stream runs to the end;
the second compares its hashes with the first's as it goes and stops at the first step that differs, keeping
that step's arrays; the first stream is then run once more, to that step only, for its arrays. So only the
steps up to the divergence are instrumented twice, and a pair that never parts costs two instrumented
trainings.

Pairs: `apis` (two APIs in one process, as `fitbench determinism` trains them), `runs` (one API in two
processes), `nudge` (one API in two processes, the second's first weight moved by one ULP: a self-test),
`switch` (one API, the backend's determinism switch on in one process and off in the other),
`replay` (the seed question: Sequential trained after Functional with one shared legacy tf-keras optimizer,
against a fresh optimizer; TensorFlow only).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fitbench import __version__, exits
from fitbench.determinism.compare import max_abs_diff, ulp_distance
from fitbench.determinism.trace import Stream
from fitbench.errors import UsageError
from fitbench.models.choice import ModelChoice
from fitbench.report.document import Document
from fitbench.report.io import utc_stamp
from fitbench.stacks import KERAS_2_BACKEND

SCHEMA_VERSION = 1


@dataclass
class ExplainDocument(Document):
    """What `fitbench explain --json` writes (fitbench/schemas/explain.schema.json, built from this)."""

    settings: dict[str, Any] = field(metadata={"doc": "the ExplainSettings it ran with"})
    streams: list[str] = field(metadata={"doc": "the two training streams compared, a then b"})
    steps_a: int
    steps_b: int
    jit: bool
    jit_note: str
    identical: bool
    first_divergent_step: int | None = field(metadata={"doc": "0-based over the whole training; null: never"})
    epoch: int | None
    batch: int | None
    batches_per_epoch: int | None
    note: str | None
    first_divergence: dict[str, Any] | None = field(metadata={"doc": "the first entry, in execution order, of "
                                                                     "the first divergent step that differs"})
    identical_before: list[dict[str, Any]]
    phases: list[dict[str, Any]]
    reproduced: bool | None = field(metadata={"doc": "stream a run again gave the same hashes up to that step"})
    fitbench_version: str
    seconds: float
    finished: str
    command: str = "explain"
    schema_version: int = SCHEMA_VERSION

PAIRS = ("apis", "runs", "nudge", "switch", "devices", "replay")
EXIT_IDENTICAL, EXIT_DIVERGED = exits.OK, exits.FOUND


@dataclass(frozen=True)
class ExplainSettings:
    pair: str = "apis"
    apis: tuple[str, ...] = ("sequential", "functional")
    backend: str = "tensorflow"
    model: ModelChoice = field(default_factory=ModelChoice)
    seed: int = 0
    epochs: int = 3
    samples: int = 1
    batch_size: int = 1
    op_determinism: bool = True
    devices: int = 2  # --pair devices: one device against this many

    def check(self) -> "ExplainSettings":
        if self.pair not in PAIRS:
            raise UsageError(f"unknown pair {self.pair!r}: choose from {', '.join(PAIRS)}")
        needed = 2 if self.pair == "apis" else 1
        if len(self.apis) < needed:
            raise UsageError(f"--pair {self.pair} needs {needed} apis, got {', '.join(self.apis) or 'none'}")
        for api in self.apis:
            if api not in self.model.apis:
                raise UsageError(f"the {self.model.name} model has no {api} form; choose from "
                                 f"{', '.join(self.model.apis)}")
        if self.pair == "replay" and (self.backend != KERAS_2_BACKEND or self.model.kind != "seed"):  # Keras 2 code
            raise UsageError("--pair replay is the seed question's: the seed network on tensorflow (tf-keras)")
        for name in ("epochs", "samples", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.pair == "devices":
            from fitbench.measure.distributed import check_device_counts

            if self.devices < 2:
                raise UsageError("--pair devices sets one device against --devices N: N must be 2 or more")
            check_device_counts([1, self.devices], [self.backend], [self.batch_size])
        return self

    def streams(self) -> tuple[Stream, Stream]:
        base = dict(backend=self.backend, model=self.model.to_dict(), seed=self.seed, epochs=self.epochs,
                    samples=self.samples, batch_size=self.batch_size, op_determinism=self.op_determinism)
        a_api = self.apis[0]
        if self.pair == "apis":
            return (Stream(f"{a_api}", a_api, **base), Stream(f"{self.apis[1]}", self.apis[1], **base))
        if self.pair == "runs":
            return Stream(f"{a_api}@run1", a_api, **base), Stream(f"{a_api}@run2", a_api, **base)
        if self.pair == "nudge":
            return Stream(f"{a_api}", a_api, **base), Stream(f"{a_api}+1ulp", a_api, nudge=True, **base)
        if self.pair == "devices":  # the same training on one device and split over N: where do the bits part?
            return (Stream(f"{a_api} on 1 device", a_api, **base),
                    Stream(f"{a_api} on {self.devices} devices", a_api, device_count=self.devices, **base))
        if self.pair == "switch":  # the backend's determinism switch on, then off: what does it change?
            return (Stream(f"{a_api}, determinism switch on", a_api, **{**base, "op_determinism": True}),
                    Stream(f"{a_api}, determinism switch off", a_api, **{**base, "op_determinism": False}))
        return (Stream("sequential, fresh optimizer", "sequential", legacy_shared=False, **base),
                Stream("sequential, optimizer shared with functional", "sequential", legacy_shared=True, **base))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "apis": list(self.apis), "model": self.model.to_dict()}


# ---------- running the streams ----------

def trace_pair_in_one_process(a: dict[str, Any], b: dict[str, Any], out_dir: str) -> list[dict[str, Any]]:
    """Child: stream a, then stream b in the same process (as `fitbench determinism` trains two APIs)."""
    from fitbench.determinism.trace import trace_stream

    first = trace_stream(a, out_dir)
    return [first, trace_stream(b, out_dir, other_hashes=first["hashes"])]


def _run(func: Any, kwargs: dict[str, Any], st: ExplainSettings, timeout_s: float | None,
         op_determinism: bool | None = None, device_count: int = 1) -> Any:
    from fitbench.processes.isolation import process_env, run_isolated
    from fitbench.stacks import Stack

    switch = st.op_determinism if op_determinism is None else op_determinism  # the stream's own, if it has one
    stack = Stack(st.backend, 2 if st.pair == "replay" else 3)  # the replay pair trains tf-keras's optimizer
    env = process_env(stack, "cpu", op_determinism=switch, device_count=device_count)
    return run_isolated(func, kwargs, env=env, timeout_s=timeout_s)


def explain(settings: ExplainSettings, timeout_s: float | None = None) -> ExplainDocument:
    """Train both streams, find where they part, and return the document (see docs/reference.md)."""
    from fitbench.determinism.trace import read_hashes, trace_stream
    from fitbench.processes.isolation import owned_tempdir

    st = settings.check()
    a, b = st.streams()
    started = time.perf_counter()
    with owned_tempdir("fitbench-explain-") as out_dir:
        if st.pair == "apis":
            res_a, res_b = _run(trace_pair_in_one_process, {"a": a.to_dict(), "b": b.to_dict(), "out_dir": out_dir},
                                st, timeout_s)
        else:
            res_a = _run(trace_stream, {"stream": a.to_dict(), "out_dir": out_dir}, st, timeout_s, a.op_determinism,
                         a.device_count)
            res_b = _run(trace_stream, {"stream": b.to_dict(), "out_dir": out_dir, "other_hashes": res_a["hashes"]},
                         st, timeout_s, b.op_determinism, b.device_count)
        hashes_a, hashes_b = read_hashes(res_a["hashes"]), read_hashes(res_b["hashes"])
        step = res_b["dumped_step"]
        doc: dict[str, Any] = {
            "settings": st.to_dict(),
            "streams": [a.name, b.name], "steps_a": len(hashes_a), "steps_b": len(hashes_b),
            "jit": False, "jit_note": "jit off: a compiled step (XLA, torch.compile) fuses the per-layer values away",
            "identical": step is None, "first_divergent_step": step, "epoch": None, "batch": None,
            "batches_per_epoch": None, "note": None,
            "first_divergence": None, "identical_before": [], "phases": [], "reproduced": None,
            "fitbench_version": __version__}
        if step is not None:
            rerun_file = os.path.join(out_dir, "rerun")
            os.makedirs(rerun_file)
            rerun = _run(trace_stream, {"stream": a.to_dict(), "out_dir": rerun_file, "dump_step": step}, st, timeout_s,
                         a.op_determinism, a.device_count)
            # the first stream run again: up to the divergent step it must give the hashes it gave the first time
            rerun_hashes = read_hashes(rerun["hashes"])
            doc["reproduced"] = rerun_hashes[:step] == hashes_a[:step]
            steps_per_epoch = -(-st.samples // st.batch_size)
            doc["epoch"], doc["batch"] = step // steps_per_epoch + 1, step % steps_per_epoch + 1  # both from 1
            doc["batches_per_epoch"] = steps_per_epoch
            step_b = hashes_b[step] if step < len(hashes_b) else []
            # the numbers come from the rerun's arrays, so the entries are located with the rerun's hashes
            found = locate(rerun_hashes[step], step_b, _load(rerun["dumped"]), _load(res_b["dumped"]))
            if found["first_divergence"] is None:  # the rerun happened to agree with b: locate by the first run
                found = locate(hashes_a[step], step_b, [], [])
                doc["note"] = ("run again, stream a agreed with stream b at this step: the difference comes and "
                               "goes; located by the first run's hashes, without numbers")
            doc.update(found)
    return ExplainDocument(**doc, seconds=round(time.perf_counter() - started, 1), finished=utc_stamp())


def _load(path: str | None) -> list[np.ndarray]:
    if not path:
        return []
    with np.load(path) as npz:
        return [npz[str(i)] for i in range(len(npz.files))]


# ---------- locating it (pure: hashes and arrays in, the report's fields out) ----------

def _same(fa: list[Any], fb: list[Any]) -> bool:
    """Same phase, hash and shape; names may differ (two APIs name their layers differently)."""
    return fa[0] == fb[0] and fa[2] == fb[2] and fa[3] == fb[3]


def entry_numbers(x: np.ndarray | None, y: np.ndarray | None) -> dict[str, Any]:
    """ULP and absolute differences of one entry (floats), or only whether it differs."""
    if x is None or y is None or x.shape != y.shape or x.size == 0:
        return {"max_ulp": None, "max_abs_diff": None, "differing": None, "size": None}
    differing = int(np.count_nonzero(x != y))
    values = {"value_a": float(x.reshape(-1)[0]), "value_b": float(y.reshape(-1)[0])} if x.size == 1 else {}
    if np.issubdtype(x.dtype, np.floating):
        return {"max_ulp": int(ulp_distance(x.astype(np.float32), y.astype(np.float32)).max(initial=0)),
                "max_abs_diff": max_abs_diff([x], [y]), "differing": differing, "size": int(x.size), **values}
    return {"max_ulp": None, "max_abs_diff": float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)),
                                                          initial=0.0)),
            "differing": differing, "size": int(x.size), **values}


def locate(step_a: list[list[Any]], step_b: list[list[Any]], arrays_a: list[np.ndarray],
           arrays_b: list[np.ndarray]) -> dict[str, Any]:
    """Within the first divergent step: the first entry in execution order that differs (its phase, names and
    numbers), what was identical before it, and a line per phase."""
    from fitbench.determinism.trace import PHASES

    first: dict[str, Any] | None = None
    before: dict[str, int] = {}
    phases: dict[str, dict[str, Any]] = {}
    for i in range(max(len(step_a), len(step_b))):
        fa = step_a[i] if i < len(step_a) else None
        fb = step_b[i] if i < len(step_b) else None
        phase = (fa or fb)[0]
        same = fa is not None and fb is not None and _same(fa, fb)
        numbers = ({} if same else entry_numbers(arrays_a[i] if i < len(arrays_a) else None,
                                                 arrays_b[i] if i < len(arrays_b) else None))
        if fa is not None and fb is not None and fa[2] != "absent" and fb[2] == "absent":
            numbers["note"] = "absent in b"
        row = phases.setdefault(phase, {"phase": phase, "entries": 0, "differing": 0, "first_differing": None,
                                        "max_ulp": None, "max_abs_diff": None})
        row["entries"] += 1
        if not same:
            row["differing"] += 1
            row["first_differing"] = row["first_differing"] or _names(fa, fb)
            for key in ("max_ulp", "max_abs_diff"):
                if numbers.get(key) is not None:
                    row[key] = max(row[key] or 0, numbers[key])
            if first is None:
                first = {"phase": phase, "name_a": fa[1] if fa else None, "name_b": fb[1] if fb else None,
                         "hash_a": fa[2] if fa else None, "hash_b": fb[2] if fb else None,
                         "shape": (fa or fb)[3], **numbers}
        elif first is None:
            before[phase] = before.get(phase, 0) + 1
    order = {p: k for k, p in enumerate(PHASES)}
    return {"first_divergence": first,
            "identical_before": [{"phase": p, "entries": n} for p, n in before.items()],
            "phases": sorted(phases.values(), key=lambda r: order.get(r["phase"], len(order)))}


def _names(fa: list[Any] | None, fb: list[Any] | None) -> str:
    na, nb = (fa[1] if fa else "—"), (fb[1] if fb else "—")
    return na if na == nb else f"{na} | {nb}"
