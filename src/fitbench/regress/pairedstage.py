"""The paired design inside `fitbench alert`: which cells are measured in pairs, a stage of pairs, its
samples stored as asv results with the pairing recorded beside them, and the pairs read back for the
decision (live, or later with --stored, from one runner's results or several).

A cell is paired when asv times it (`time_*`) and its stored version carries the process layout
(`samples-per-process=N`, as StepTime's does): each side of a pair gives N windows, so asv stores a pair's
two processes exactly as it stores its own, and `asv publish`, `fitbench history` and an unpaired
`--stored` read them as ordinary processes. Every other cell (the exact determinism tracks, a benchmark
without a layout) runs through asv as before.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from fitbench.regress import asvdata, asvpairs, signedrank
from fitbench.regress.asvpairs import CellPairs, EnvironmentSides, PairingRecord
from fitbench.regress.pairing import BASE, HEAD, PairOutcome, Side, run_pairs, worker_env

GROUP_SEP = "::"
OWN_PROCESS = "process-per-parameters"  # in a benchmark's version: each parameter combination a process of its own
CONSECUTIVE_FAILURES = 3  # a group whose pairs fail this many times in a row is stopped: its worker cannot run


@dataclass(frozen=True)
class PairedCell:
    """One cell (benchmark x parameters x environment) measured in pairs."""

    key: str  # asvdata.cell_key: "module.Class.method(params) [backend]"
    env_name: str
    benchmark: str  # asv's name, e.g. bench_fit.StepTime.time_step
    param_index: int  # into the product of its parameters, as asv numbers them
    samples_per_process: int  # windows per side of a pair
    own_process: bool = False  # its version says one process per parameters (a setting read at start-up)

    @property
    def worker_id(self) -> str:
        """What asv's runner takes to build this benchmark at these parameters."""
        return f"{self.benchmark}-{self.param_index}"

    @property
    def group(self) -> str:
        """The cells one worker holds: those of one benchmark class in one environment (asv gives every
        benchmark a process of its own; a class's parameter combinations share its harnesses' cache safely, a
        switch or a device count set at start-up would not), or this cell alone (`own_process`)."""
        holder = self.worker_id if self.own_process else self.benchmark.rsplit(".", 1)[0]
        return f"{self.env_name}{GROUP_SEP}{holder}"


def pairable(selected: list[str], environments: dict[str, str], info: dict[str, dict[str, Any]]
             ) -> dict[str, PairedCell]:
    """The selected cells ({backend: env name}) that can be measured in pairs, by benchmarks.json: timed by
    asv, and stored with a process layout."""
    out = {}
    for name in selected:
        bench, _, params = name.partition("(")
        meta = info.get(bench)
        if not meta or meta.get("type") != "time":
            continue
        per_process = asvdata.samples_per_process(meta.get("version"))
        if per_process is None:
            continue
        combos = [", ".join(c) for c in itertools.product(*meta["params"])] if meta.get("params") else [""]
        wanted = params[:-1] if params else ""
        if wanted not in combos:
            continue
        for backend, env_name in environments.items():
            key = asvdata.cell_key(name, backend)
            out[key] = PairedCell(key=key, env_name=env_name, benchmark=bench, param_index=combos.index(wanted),
                                  samples_per_process=per_process,
                                  own_process=OWN_PROCESS in (meta.get("version") or ""))
    return out


def sides_of(env: EnvironmentSides, base: str, head: str, extra: dict[str, str]) -> tuple[Side, Side]:
    return tuple(Side(commit=c, python=env.python,  # type: ignore[return-value]
                      env=worker_env(env.python, env.env_vars, env.asv_env, c, env.sites.get(c), extra))
                 for c in (base, head))


@dataclass
class StageOutcome:
    """One stage of pairs: every pair as measured, per environment."""

    stage: int
    pairs: dict[str, list[PairOutcome]]  # group (PairedCell.group) -> pairs
    seconds: float
    stopped: dict[str, str] = field(default_factory=dict)  # group -> why its pairs stopped early
    notes: list[str] = field(default_factory=list)  # what the stage said of itself (pairs that cannot fit in time)

    def failed(self, group: str) -> list[str]:
        return [p.failed for p in self.pairs.get(group, []) if p.failed]


def run_stage(repo: str, base: str, head: str, sides: dict[str, EnvironmentSides], cells: list[PairedCell],
              pairs: int, design: str, stage: int, seed: int, out_dir: Path, first_index: int,
              extra_env: dict[str, str], progress: Callable[[str], None], timeout_s: float = 600.0,
              labels: dict[str, str] | None = None, deadline: float | None = None,
              min_pairs: int = 1) -> StageOutcome:
    """`pairs` pairs of every group of `cells`, each pair kept in pairs.jsonl as it ends; past the first
    `min_pairs`, no round of pairs that would end after `deadline` (time.monotonic(); pairing.run_pairs), and a
    group stopped after CONSECUTIVE_FAILURES failed pairs in a row."""
    import time

    by_group: dict[str, list[PairedCell]] = {}
    for cell in cells:
        by_group.setdefault(cell.group, []).append(cell)
    group_sides = {g: sides_of(sides[members[0].env_name], base, head, extra_env) for g, members in by_group.items()}
    names = {g: (labels or {}).get(g.split(GROUP_SEP)[0], g.split(GROUP_SEP)[0])
             + (f" {g.split(GROUP_SEP)[1].rsplit('.', 1)[-1]}"
                if sum(k.split(GROUP_SEP)[0] == g.split(GROUP_SEP)[0] for k in by_group) > 1 else "")
             for g in by_group}
    benchmark_dir = asvdata.asv_config(repo).benchmark_dir
    kept = out_dir / "pairs.jsonl"

    def keep(group: str, pair: PairOutcome) -> None:
        with open(kept, "a") as f:
            f.write(json.dumps({"env_name": group.split(GROUP_SEP)[0], "group": group, **asdict(pair)}) + "\n")

    started = time.monotonic()
    notes: list[str] = []
    outcome, stopped = run_pairs(group_sides, benchmark_dir, {g: [c.worker_id for c in m] for g, m in by_group.items()},
                                 pairs, {g: m[0].samples_per_process for g, m in by_group.items()}, design, seed,
                                 out_dir / "workers.log", stage=stage, first_index=first_index, timeout_s=timeout_s,
                                 progress=progress, on_pair=keep, labels=names, deadline=deadline,
                                 max_failures=CONSECUTIVE_FAILURES, min_pairs=min_pairs, on_note=notes.append)
    return StageOutcome(stage=stage, pairs=outcome, seconds=round(time.monotonic() - started, 1), stopped=stopped,
                        notes=notes)


def _usable_windows(pair: PairOutcome, cid: str) -> bool:
    return all(w is not None for side in (BASE, HEAD) for w in pair.windows.get(cid, {}).get(side, []))


def store_stage(repo: str, machine: str, runner: str, base: str, head: str, cells: list[PairedCell],
                stage: StageOutcome, append: bool, stages: int = 1) -> None:
    """The stage's good pairs into asv's results (base's and head's processes in the same order: process i of
    each is pair i), and the pairing record updated to match. A pair in which a cell failed on either side, or
    gave a window that is not a number, is dropped for that cell on both sides. Stage 1 with no good pair of a
    cell stores it as failed (so that nothing older stored for these commits is read as this alert's); a later
    stage never overwrites what an earlier one stored: a cell it could not measure keeps its earlier pairs."""
    conf = asvdata.asv_config(repo)
    record = asvpairs.load_pairing(conf.results_dir, machine, base, head)
    if record is None:
        record = PairingRecord(base=base, head=head, machine=machine, cells={}, stages=stages)
    elif not append:  # a new alert on these commits: its cells start again, the others' pairs stay
        for cell in cells:
            record.cells.pop(cell.key, None)
        record.stages = stages
    for group in {c.group for c in cells}:
        mine = [c for c in cells if c.group == group]
        env_name = mine[0].env_name
        measured = stage.pairs.get(group, [])
        good = [p for p in measured if not p.failed]
        clean = {c.worker_id: [p for p in good if c.worker_id not in p.errors and _usable_windows(p, c.worker_id)]
                 for c in mine}
        for commit, side in ((base, BASE), (head, HEAD)):
            samples: dict[str, dict[int, list[float] | str]] = {}
            for cell in mine:
                cid = cell.worker_id
                na = any(side in p.not_available.get(cid, []) for p in good)
                if append and (na or not clean[cid]):
                    continue  # the earlier stages' samples stand
                ran = [p for p in good if side not in p.errors.get(cid, {})
                       and p.windows[cid][side] and None not in p.windows[cid][side]]
                if na:
                    got: list[float] | str = asvpairs.NOT_AVAILABLE
                elif clean[cid]:
                    got = [s for p in clean[cid] for s in p.windows[cid][side]]
                elif ran and any(p.errors.get(cid) for p in good):  # only the other side failed: this one ran
                    got = [s for p in ran for s in p.windows[cid][side]]
                else:
                    got = asvpairs.FAILED  # no pair measured it: failed, as asv records a benchmark that failed
                samples.setdefault(cell.benchmark, {})[cell.param_index] = got
            if samples:
                asvpairs.store(repo, machine, env_name, commit, samples, append)
        for cell in mine:
            entry = record.cells.get(cell.key)
            if entry is None:
                entry = CellPairs(env_name=env_name, benchmark=cell.benchmark, param_index=cell.param_index,
                                  samples_per_process=cell.samples_per_process, pairs=[], digest={})
                record.cells[cell.key] = entry
            entry.pairs += [{"stage": stage.stage, "runner": runner, "design": p.design, "first": p.first,
                             "cpus": p.cpus, "index": p.index} for p in clean[cell.worker_id]]
            entry.failed += [f"stage {stage.stage}, pair {p.index + 1}: {p.failed}" for p in measured if p.failed]
            entry.failed += [f"stage {stage.stage}, pair {p.index + 1}: {side} {error}" for p in good
                             for side, error in p.errors.get(cell.worker_id, {}).items()]
            entry.failed += [f"stage {stage.stage}, pair {p.index + 1}: a window that is not a number" for p in good
                             if cell.worker_id not in p.errors and not _usable_windows(p, cell.worker_id)]
            if group in stage.stopped:
                entry.failed.append(f"stage {stage.stage}: {stage.stopped[group]}")
    stored = asvdata.read_results(repo, [base, head], ".", sorted({e.env_name for e in record.cells.values()}),
                                  machine)
    for key, entry in record.cells.items():
        for commit, side in ((base, BASE), (head, HEAD)):
            cell = stored[commit].get(key)
            entry.digest[side] = asvpairs.digest(cell.samples if cell else None)
    asvpairs.save_pairing(conf.results_dir, record)


@dataclass
class CellPairsRead:
    """One cell's pairs as stored: each pair's log ratio, its stage and runner, and each side's per-process
    values (for the between-process spread the unpaired design would have faced)."""

    ratios: list[float] = field(default_factory=list)
    stages: list[int] = field(default_factory=list)
    runners: list[str] = field(default_factory=list)
    designs: list[str] = field(default_factory=list)
    base_values: list[float] = field(default_factory=list)
    head_values: list[float] = field(default_factory=list)
    dropped: int = 0  # pairs with a window that is not a finite time above 0
    failed: list[str] = field(default_factory=list)  # pairs dropped while measuring, and why
    planned_stages: int = 1  # what the alert that measured them planned: --stored decides at that level

    def strata(self, up_to_stage: int | None = None) -> list[list[float]]:
        """The log ratios, one list per runner (each runner compared only with itself)."""
        out: dict[str, list[float]] = {}
        for ratio, stage, runner in zip(self.ratios, self.stages, self.runners):
            if up_to_stage is None or stage <= up_to_stage:
                out.setdefault(runner, []).append(ratio)
        return list(out.values())

    def process_log_sd(self) -> float:
        """The unpaired design's spread: base's and head's per-process values around each side's median."""
        from fitbench.regress.decide import pooled_log_sd

        if len(self.base_values) < 2 or len(self.head_values) < 2:
            return math.nan
        return pooled_log_sd(self.base_values, self.head_values)


def read_pairs(cells: dict[str, tuple[asvdata.CellResult, asvdata.CellResult]], record: PairingRecord | None,
               into: dict[str, CellPairsRead]) -> list[str]:
    """Add one runner's stored pairs ({key: (base cell, head cell)} as asv holds them, with their pairing
    record) to `into`; returns the keys whose stored samples no longer match the record (measured again
    since: not pairs any more)."""
    from fitbench.regress.decide import usable

    stale = []
    for key, (b, h) in cells.items():
        entry = record.cells.get(key) if record else None
        if entry is None:
            continue
        if (asvpairs.digest(b.samples) != entry.digest.get(BASE)
                or asvpairs.digest(h.samples) != entry.digest.get(HEAD)):
            stale.append(key)
            continue
        per = entry.samples_per_process
        blocks_b = [b.samples[i:i + per] for i in range(0, len(b.samples or []), per)]
        blocks_h = [h.samples[i:i + per] for i in range(0, len(h.samples or []), per)]
        if not (len(entry.pairs) == len(blocks_b) == len(blocks_h)):  # the record and the samples disagree
            stale.append(key)
            continue
        read = into.setdefault(key, CellPairsRead())
        read.failed += entry.failed
        read.planned_stages = max(read.planned_stages, record.stages or max((p["stage"] for p in entry.pairs),
                                                                           default=1))
        for pair, wb, wh in zip(entry.pairs, blocks_b, blocks_h):
            if not (all(usable(x) for x in wb) and all(usable(x) for x in wh)):
                read.dropped += 1
                continue
            read.ratios.append(signedrank.log_ratio(wb, wh))
            read.stages.append(pair["stage"])
            read.runners.append(pair["runner"])
            read.designs.append(pair["design"])
            read.base_values.append(statistics.median(wb))
            read.head_values.append(statistics.median(wh))
    return stale
