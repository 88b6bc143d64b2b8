"""`fitbench versions`: the same `fitbench run` cells in each version's environment, interleaved round by
round (A B, B A, A B, ...), then one decision per cell and version against the first column, with the
process as the unit (fitbench.regress.decide: exact rank-sum test, Hodges-Lehmann ratio and its
interval, Holm over every cell and column).

Parent side: no framework here. Each round of each column is one `fitbench run` started with that
column's interpreter; every cell of it is a fresh process as always, so one round gives one value per
cell (its median step time).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from fitbench import __version__
from fitbench.processes.isolation import owned_tempdir, parent_env, run_process_group
from fitbench.regress.decide import DecisionSettings, decide, usable_values
from fitbench.regress.decide import SpeedComparison as Comparison
from fitbench.report.document import Document
from fitbench.report.io import utc_stamp
from fitbench.stacks import KERAS_2_BACKEND, TF_KERAS, stack_name
from fitbench.versions.envs import READY, VersionEnv

SCHEMA_VERSION = 2  # of the versions document; 1: "unchanged" where 2 says "equivalent"


@dataclass(frozen=True)
class VersionsSettings:
    """What every column runs: `fitbench run` with these choices (--no-floor: the raw framework step is not
    what a Keras release changes; the seed's one-sample epochs only with `seed_workload`)."""

    backends: str = "tensorflow"  # as --backend takes them (tf-keras too)
    apis: str = "functional"
    batch_sizes: str = "32,256"
    jit: str = "on"  # on | off | both
    variant: str = "plain"  # plain | tuned | both
    widths: str = "256,256,256"
    model: str = "seed"  # as --model takes it: seed, a zoo name, module:function, or a .keras file's path
    data: str | None = None  # --data: an .npz file's absolute path
    threads: str = "1"  # one thread per framework pool: the steadiest between processes (docs/noise.md)
    processes: int = 6  # rounds: processes per cell and column
    alpha: float = 0.05  # family-wise, Holm over every cell and column
    threshold: float = 0.10  # "equivalent": the change lies within ±threshold (two one-sided tests, Holm)
    min_change: float = 0.05  # a significant change smaller than this is not called faster or slower
    cell_timeout_s: int = 1800
    seed_workload: bool = False  # also the seed's epochs (1 sample + validation): fit()'s fixed cost per epoch

    def run_arguments(self, reverse_stacks: bool = False) -> list[str]:
        """`fitbench run`'s arguments; `reverse_stacks` runs the stacks in the other order (cells run stack by
        stack, so alternating it per round puts Keras 2 first as often as Keras 3)."""
        stacks = self.backends.split(",")
        backends = ",".join(stacks[::-1] if reverse_stacks else stacks)
        return ["--backend", backends, "--api", self.apis, "--batch-sizes", self.batch_sizes, "--jit", self.jit,
                "--variant", self.variant, "--widths", self.widths, "--model", self.model, "--threads", self.threads,
                *(["--data", self.data] if self.data else []),
                *([] if self.seed_workload else ["--no-seed-workload"]), "--no-floor",
                "--cell-timeout", str(self.cell_timeout_s)]


@dataclass
class CellRow:
    cell: str  # e.g. "tensorflow functional jit=on plain cpu batch 32"
    backend: str  # the stack's name (tf-keras for Keras 2)
    api: str
    jit_requested: bool
    variant: str
    device: str
    batch_size: int
    kind: str  # fit, or seed_epoch (its "step time" is an epoch's: 1 sample + validation)
    step_time_s: dict[str, list[float]]  # column -> one median step time per process (round)
    samples_per_s: dict[str, float | None]  # column -> batch ÷ median of the per-process values
    jit_effective: dict[str, bool | None]
    errors: dict[str, str]  # column -> the last error of a process of this cell
    comparisons: list[Comparison] = field(default_factory=list)


@dataclass
class ColumnResult:
    env: dict[str, Any]  # fitbench.versions.envs.VersionEnv as a dict
    rounds_run: int = 0
    failures: list[str] = field(default_factory=list)  # a round whose `fitbench run` gave no document


@dataclass
class VersionsDocument(Document):
    """What `fitbench versions --json` writes (fitbench/schemas/versions.schema.json, built from this)."""

    settings: VersionsSettings
    reference: str | None = field(metadata={"doc": "the first ready column: every ratio is against it"})
    columns: list[ColumnResult]
    cells: list[CellRow]
    machine: str
    fitbench_version: str
    started: str
    finished: str
    command: str = "versions"
    schema_version: int = SCHEMA_VERSION



def _cell_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (stack_name(r), r.get("model", "seed"), r["api"], bool(r["jit_requested"]), r.get("variant", "plain"),
            r["device"], r["batch_size"], r.get("kind", "fit"))


def _label(key: tuple[Any, ...]) -> str:
    stack, model, api, jit, variant, device, batch, kind = key
    model_part = "" if model == "seed" else f"{model} "
    what = f"batch {batch}" if kind == "fit" else "seed epoch"
    return f"{stack} {model_part}{api} jit={'on' if jit else 'off'} {variant} {device} {what}"


def run_round(env: VersionEnv, settings: VersionsSettings, json_path: str,
              reverse_stacks: bool = False) -> tuple[dict[str, Any] | None, str]:
    """One `fitbench run` of every cell with the column's interpreter: (its document or None, stderr's last line)."""
    cmd = [env.python or "python", "-m", "fitbench", "run", *settings.run_arguments(reverse_stacks), "--json",
           json_path]
    # the nested fitbench and its cells stop with this one (its process group)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        returncode = run_process_group(cmd, stdout=out, stderr=err, text=True, env={**parent_env(), "COLUMNS": "200"})
        out.seek(0)
        err.seek(0)
        tail = [line for line in (err.read() or out.read()).splitlines() if line.strip()]
    last = tail[-1].strip() if tail else f"exit status {returncode}"
    if returncode not in (0, 3) or not os.path.exists(json_path):  # 3: some cells failed, the rest stand
        return None, last
    with open(json_path) as f:
        return json.load(f), last


def compare_versions(envs: list[VersionEnv], settings: VersionsSettings,
                     log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run every ready column `settings.processes` times, interleaved, and decide; returns the document."""
    started = utc_stamp()
    columns = [ColumnResult(env.to_dict()) for env in envs]
    ready = [i for i, env in enumerate(envs) if env.status == READY]
    values: dict[tuple[Any, ...], dict[str, list[float]]] = {}
    jit_eff: dict[tuple[Any, ...], dict[str, bool | None]] = {}
    errors: dict[tuple[Any, ...], dict[str, str]] = {}
    keys: list[tuple[Any, ...]] = []
    with owned_tempdir("fitbench-versions-") as tmp:
        for round_index in range(settings.processes):
            order = ready if round_index % 2 == 0 else ready[::-1]  # A B, B A: drift hits both alike
            for i in order:
                env = envs[i]
                log(f"round {round_index + 1}/{settings.processes}: {env.label}")
                doc, last = run_round(env, settings, os.path.join(tmp, f"r{round_index}-c{i}.json"),
                                      reverse_stacks=round_index % 2 == 1)
                if doc is None:
                    columns[i].failures.append(f"round {round_index + 1}: {last}")
                    continue
                columns[i].rounds_run += 1
                for r in doc["records"]:
                    key = _cell_key(r)
                    if key not in values:
                        keys.append(key)
                        values[key], jit_eff[key], errors[key] = {}, {}, {}
                    if r["status"] == "ok":
                        values[key].setdefault(env.label, []).append(r["step_time_median_s"])
                        jit_eff[key][env.label] = r["jit_effective"]
                    else:
                        errors[key][env.label] = f"{r['status']}: {r.get('reason') or r.get('error')}"
    rows = [_row(key, values[key], jit_eff[key], errors[key], [envs[i].label for i in ready]) for key in keys]
    _decide(rows, [envs[i].label for i in ready], settings)
    return VersionsDocument(settings=settings, reference=envs[ready[0]].label if ready else None, columns=columns,
                            cells=rows, machine=platform.node(), fitbench_version=__version__, started=started,
                            finished=utc_stamp()).to_dict()


def _row(key: tuple[Any, ...], values: dict[str, list[float]], jit_eff: dict[str, bool | None],
         errors: dict[str, str], labels: list[str]) -> CellRow:
    stack, _model, api, jit, variant, device, batch, kind = key
    return CellRow(cell=_label(key), backend=stack, api=api, jit_requested=jit, variant=variant, device=device,
                   batch_size=batch, kind=kind, step_time_s={c: values.get(c, []) for c in labels},
                   samples_per_s={c: (batch / statistics.median(values[c]) if values.get(c) else None) for c in labels},
                   jit_effective={c: jit_eff.get(c) for c in labels}, errors=errors)


def _keras2_twin(row: CellRow, rows: list[CellRow]) -> CellRow | None:
    """The tf-keras row of the same cell as a Keras 3 TensorFlow row (both in one `fitbench run`)."""
    if row.backend != KERAS_2_BACKEND:
        return None
    same = (row.kind, row.api, row.jit_requested, row.variant, row.device, row.batch_size)
    return next((r for r in rows if r.backend == TF_KERAS and
                 (r.kind, r.api, r.jit_requested, r.variant, r.device, r.batch_size) == same), None)


def _decide(rows: list[CellRow], labels: list[str], settings: VersionsSettings) -> None:
    """Every (cell, column) against the reference column, and in every column Keras 3 on TensorFlow against
    tf-keras where both ran; Holm over all of them. Two processes a side at least (fewer: no test)."""
    tests: dict[str, tuple[list[float], list[float]]] = {}
    places: dict[str, tuple[CellRow, str, str]] = {}  # test name -> (row it belongs to, column, reference)
    for r in rows:
        for c in labels[1:]:
            tests[f"{r.cell} | {c}"] = (r.step_time_s[labels[0]], r.step_time_s[c])
            places[f"{r.cell} | {c}"] = (r, c, labels[0])
        twin = _keras2_twin(r, rows)
        for c in labels if twin else []:
            name = f"{r.cell} | {c} | keras 3 vs 2"
            tests[name] = (twin.step_time_s[c], r.step_time_s[c])  # reference: Keras 2
            places[name] = (r, c, f"{TF_KERAS} ({c})")
    tests = {name: (usable_values(a).values, usable_values(b).values) for name, (a, b) in tests.items()}
    tests = {name: pair for name, pair in tests.items() if len(pair[0]) >= 2 and len(pair[1]) >= 2}
    if not tests:
        return
    decisions = decide(tests, DecisionSettings(alpha=settings.alpha, threshold=settings.threshold,
                                               min_change=settings.min_change, equivalence_alpha=settings.alpha))
    for name, d in decisions.items():
        row, column, reference = places[name]
        row.comparisons.append(Comparison.from_decision(d, column, reference))


def compare_asv_environments(repo: str, commit: str, regex: str, settings: VersionsSettings,
                             machine: str | None = None) -> dict[str, Any]:
    """The same decisions on what `asv run --record-samples` stored for one commit in every environment of
    asv.conf.json's matrix: a column per value of the `req` entries that differ between environments (e.g.
    keras 3.14.1 and 3.15.1), a row per benchmark cell and backend, one value per asv process (the
    benchmark's fixed `repeat` cuts asv's pooled samples back into processes). Reference: the matrix's
    first value."""
    from asv.environment import get_environments

    from fitbench.regress import asvdata

    conf = asvdata.asv_config(repo)
    envs = list(get_environments(conf, None))
    varying = sorted({k for e in envs for k, v in e._requirements.items()
                      if len({(x._requirements.get(k) or "") for x in envs}) > 1})
    if not varying:
        raise ValueError(f"{repo}/asv.conf.json's matrix has one version of every requirement: nothing to compare "
                         "(give a `req` entry two or more versions)")

    def label(env: Any) -> str:
        return "+".join(f"{k}=={env._requirements.get(k)}" if env._requirements.get(k) else k for k in varying)

    labels = list(dict.fromkeys(label(e) for e in envs))
    commit_hash = asvdata.resolve_commit(os.path.join(repo, conf.repo), commit)
    rows: dict[tuple[str, str], CellRow] = {}
    for env in envs:
        stack = asvdata.env_stack(env.env_vars) or "tensorflow"
        stored = asvdata.read_results(repo, [commit_hash], regex, [env.name], machine)
        asvdata.require_layout(stored, "versions --from-asv")
        for cell in stored[commit_hash].values():
            values = cell.process_values()
            if not values:
                continue
            batch = int(cell.params.get("batch_size", "0") or 0)
            row = rows.setdefault((stack, cell.name), CellRow(
                cell=f"{stack} {cell.name}", backend=stack, api=cell.params.get("api", "'functional'").strip("'"),
                jit_requested=cell.params.get("jit", "True") == "True", variant="plain", device="cpu",
                batch_size=batch, kind="fit", step_time_s={c: [] for c in labels},
                samples_per_s={c: None for c in labels}, jit_effective={c: None for c in labels}, errors={}))
            row.step_time_s[label(env)] = values
            if batch and cell.unit == "seconds":
                row.samples_per_s[label(env)] = batch / statistics.median(values)
    ordered = [rows[k] for k in sorted(rows)]
    _decide(ordered, labels, settings)
    columns = [ColumnResult(VersionEnv(c, [c], READY, cached=True).to_dict(),
                            rounds_run=max((len(r.step_time_s[c]) for r in ordered), default=0)) for c in labels]
    settings = VersionsSettings(**{**asdict(settings), "processes": max((c.rounds_run for c in columns), default=0)})
    return VersionsDocument(settings=settings, reference=labels[0], columns=columns, cells=ordered,
                            machine=machine or asvdata.machine_name(), fitbench_version=__version__,
                            started=utc_stamp(), finished=utc_stamp()).to_dict()
