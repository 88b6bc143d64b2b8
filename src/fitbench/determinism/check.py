"""Parent side of `fitbench determinism`: train every API in `runs` fresh processes, compare every pair.

No framework is imported here; fitbench.determinism.train runs in each child.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from fitbench import __version__, backends
from fitbench.determinism.compare import PairResult, compare_trajectories, jit_note, load_weights, pairs_to_compare
from fitbench.determinism.settings import DeterminismSettings
from fitbench.determinism.train import train_trajectories
from fitbench.processes.isolation import owned_tempdir, process_env, run_isolated
from fitbench.report.document import Document
from fitbench.report.io import utc_stamp
from fitbench.stacks import Stack

SCHEMA_VERSION = 1  # of the determinism document


@dataclass
class DeterminismDocument(Document):
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


    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeterminismDocument":
        return cls(**{**d, "pairs": [PairResult(**p) for p in d["pairs"]]})


def check_determinism(settings: DeterminismSettings, timeout_s: float | None = None,
                      log: Callable[[str], None] = lambda line: None) -> DeterminismDocument:
    """Train every API in `settings.runs` separate processes and compare all pairs; a line to `log` as each
    process starts and ends."""
    st = settings.check()
    started = time.monotonic()
    total = len(st.devices) * st.runs
    counts = list(st.devices)
    # one name per process: run1, run2 as always; with a devices axis, 1dev-run1, 2dev-run1, ...
    names = {n: [f"run{i + 1}" if counts == [1] else f"{n}dev-run{i + 1}" for i in range(st.runs)] for n in counts}
    with owned_tempdir("fitbench-det-") as weights_dir:
        results = {}
        for n in counts:
            env = process_env(Stack(st.backend, st.keras_major), st.device, op_determinism=st.op_determinism,
                              device_count=n)
            for name in names[n]:
                log(f"process {len(results) + 1}/{total} ({name}): training {', '.join(st.apis)} for {st.epochs} "
                    f"epoch(s)")
                process_started = time.monotonic()
                results[name] = run_isolated(train_trajectories, {"settings": st.to_dict(), "weights_dir": weights_dir,
                                                                  "run_name": name, "device_count": n},
                                             env=env, timeout_s=timeout_s)
                log(f"process {len(results)}/{total} ({name}) done in {time.monotonic() - process_started:.0f} s "
                    f"({time.monotonic() - started:.0f} s in all)")
        hosted = _train_on_hosts(st, weights_dir, timeout_s) if st.hosts > 1 else {}
        results.update(hosted)
        loaded = {r: {api: load_weights(v) for api, v in results[r]["apis"].items()} for r in results}
        to_compare = pairs_to_compare(list(st.apis), names[counts[0]])
        for n in counts[1:]:  # at N devices run to run, and N against the first count, API by API
            to_compare += [pair for pair in pairs_to_compare(list(st.apis), names[n]) if pair[2] == "run_to_run"]
            to_compare += [((names[n][0], api), (names[counts[0]][0], api), "devices") for api in st.apis]
        for name in hosted:  # each host against the one process with as many devices: the same bits?
            n = hosted[name]["device_count"]
            to_compare += [((name, api), (names[n][0], api), "hosts") for api in st.apis]
        pairs = [compare_trajectories(f"{api_a}@{run_a}", loaded[run_a][api_a], f"{api_b}@{run_b}",
                                      loaded[run_b][api_b], scope)
                 for (run_a, api_a), (run_b, api_b), scope in to_compare]
    for r in results.values():  # the document keeps hashes; predictions and weight files stay behind
        for api_run in r["apis"].values():
            api_run.pop("weights_paths")
            for e in api_run["epochs"]:
                e.pop("predictions")
    jit_effective_all = sorted({v["jit_effective"] for r in results.values() for v in r["apis"].values()})
    return DeterminismDocument(
        backend=st.backend, keras_major=st.keras_major, device=st.device, settings=st.to_dict(),
        jit_requested=st.jit, jit_effective=jit_effective_all[0] if len(jit_effective_all) == 1 else None,
        jit_note=jit_note(st.jit, jit_effective_all,
                          bool(st.op_determinism) and backends.get(Stack(st.backend, st.keras_major).name
                                                                   ).SWITCH_TURNS_OFF_XLA),
        runs=list(results.values()), pairs=pairs, all_identical=all(p.identical for p in pairs),
        fitbench_version=__version__, finished=utc_stamp())


def _train_on_hosts(st: DeterminismSettings, weights_dir: str, timeout_s: float | None) -> dict[str, Any]:
    """The device count equal to `st.hosts`, trained again as that many local processes joined by
    jax.distributed (gloo), one device each: the code path of a cluster, on one machine.

    All start at once (they wait for each other at the coordinator). Host 0 runs from this thread, so Ctrl-C
    stops it at once; the others from daemon threads, whose processes die with fitbench (die_with_parent)
    instead of keeping it alive at exit."""
    import threading

    from fitbench.measure.distributed import Host, free_port

    out: dict[str, Any] = {}
    # one device per host: hosts with two simulated devices each hung in a two-API training here (gloo)
    for n in (n for n in st.devices if n == st.hosts):
        coordinator = f"127.0.0.1:{free_port()}"
        env = process_env(Stack(st.backend, st.keras_major), st.device, op_determinism=st.op_determinism,
                          device_count=n // st.hosts)
        results: dict[int, Any] = {}

        def host(index: int, n: int = n, coordinator: str = coordinator, env: dict[str, str] = env,
                 results: dict[int, Any] = results) -> None:
            try:
                results[index] = run_isolated(
                    train_trajectories, {"settings": st.to_dict(), "weights_dir": weights_dir,
                                         "run_name": f"{n}dev-{st.hosts}hosts-host{index}", "device_count": n,
                                         "host": asdict(Host(index, st.hosts, coordinator))},
                    env, timeout_s or 600)
            except Exception as exc:  # said by the caller, as the first host's failure would be
                results[index] = exc

        others = [threading.Thread(target=host, args=(i,), daemon=True) for i in range(1, st.hosts)]
        for t in others:
            t.start()
        host(0)
        for t in others:
            t.join()
        for index in range(st.hosts):
            if isinstance(results.get(index), Exception):
                raise results[index]
            out[f"{n}dev-{st.hosts}hosts-host{index}"] = results[index]
    return out
