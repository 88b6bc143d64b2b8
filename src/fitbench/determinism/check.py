"""Parent side of `fitbench determinism`: train every API in `runs` fresh processes, compare every pair.

No framework is imported here; fitbench.determinism.train runs in each child.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fitbench import __version__
from fitbench.determinism.compare import PairResult, compare_trajectories, jit_note, load_weights, pairs_to_compare
from fitbench.determinism.settings import DeterminismSettings
from fitbench.determinism.train import train_trajectories
from fitbench.isolation import owned_tempdir, process_env, run_isolated
from fitbench.report.io import utc_stamp
from fitbench.stacks import Stack

SCHEMA_VERSION = 1  # of the determinism document


@dataclass
class DeterminismDocument:
    """What `fitbench determinism --json` writes (fitbench/schemas/determinism.schema.json, built from this)."""

    backend: str
    keras_major: int
    device: str
    settings: dict[str, Any] = field(metadata={"doc": "the DeterminismSettings the check ran with"})
    jit_requested: bool
    jit_effective: bool | None = field(metadata={"doc": "what Keras ran, when every run agrees; else null"})
    jit_note: str | None
    runs: list[dict[str, Any]] = field(metadata={"doc": "each training process: its facts, and per API its "
                                                        "jit, variable device, epochs' hashes and cosine"})
    pairs: list[PairResult]
    all_identical: bool
    fitbench_version: str
    finished: str
    command: str = "determinism"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeterminismDocument":
        return cls(**{**d, "pairs": [PairResult(**p) for p in d["pairs"]]})


def check_determinism(settings: DeterminismSettings, timeout_s: float | None = None) -> DeterminismDocument:
    """Train every API in `settings.runs` separate processes and compare all pairs."""
    st = settings.check()
    run_names = [f"run{i + 1}" for i in range(st.runs)]
    env = process_env(Stack(st.backend, st.keras_major), st.device, op_determinism=st.op_determinism)
    with owned_tempdir("fitbench-det-") as weights_dir:
        results = {name: run_isolated(train_trajectories, {"settings": st.to_dict(), "weights_dir": weights_dir,
                                                           "run_name": name}, env=env, timeout_s=timeout_s)
                   for name in run_names}
        loaded = {r: {api: load_weights(v) for api, v in results[r]["apis"].items()} for r in run_names}
        pairs = [compare_trajectories(f"{api_a}@{run_a}", loaded[run_a][api_a], f"{api_b}@{run_b}",
                                      loaded[run_b][api_b], scope)
                 for (run_a, api_a), (run_b, api_b), scope in pairs_to_compare(list(st.apis), run_names)]
    for r in results.values():  # the document keeps hashes; predictions and weight files stay behind
        for api_run in r["apis"].values():
            api_run.pop("weights_paths")
            for e in api_run["epochs"]:
                e.pop("predictions")
    jit_effective_all = sorted({v["jit_effective"] for r in results.values() for v in r["apis"].values()})
    return DeterminismDocument(
        backend=st.backend, keras_major=st.keras_major, device=st.device, settings=st.to_dict(),
        jit_requested=st.jit, jit_effective=jit_effective_all[0] if len(jit_effective_all) == 1 else None,
        jit_note=jit_note(st.jit, jit_effective_all, st.op_determinism and st.backend == "tensorflow"),
        runs=list(results.values()), pairs=pairs, all_identical=all(p.identical for p in pairs),
        fitbench_version=__version__, finished=utc_stamp())
