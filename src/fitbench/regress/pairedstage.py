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


@dataclass(frozen=True)
class PairedCell:
    """One cell (benchmark x parameters x environment) measured in pairs."""

    key: str  # asvdata.cell_key: "module.Class.method(params) [backend]"
    env_name: str
    benchmark: str  # asv's name, e.g. bench_fit.StepTime.time_step
    param_index: int  # into the product of its parameters, as asv numbers them
    samples_per_process: int  # windows per side of a pair

    @property
    def worker_id(self) -> str:
        """What asv's runner takes to build this benchmark at these parameters."""
        return f"{self.benchmark}-{self.param_index}"


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
                                  samples_per_process=per_process)
    return out


def sides_of(env: EnvironmentSides, base: str, head: str, extra: dict[str, str]) -> tuple[Side, Side]:
    return tuple(Side(commit=c, python=env.python,  # type: ignore[return-value]
                      env=worker_env(env.python, env.env_vars, env.asv_env, c, env.sites.get(c), extra))
                 for c in (base, head))


@dataclass
class StageOutcome:
    """One stage of pairs: every pair as measured, per environment."""

    stage: int
    pairs: dict[str, list[PairOutcome]]  # env name -> pairs
    seconds: float

    def failed(self, env_name: str) -> list[str]:
        return [p.failed for p in self.pairs.get(env_name, []) if p.failed]


def run_stage(repo: str, base: str, head: str, sides: dict[str, EnvironmentSides], cells: list[PairedCell],
              pairs: int, design: str, stage: int, seed: int, out_dir: Path, first_index: int,
              extra_env: dict[str, str], progress: Callable[[str], None], timeout_s: float = 600.0,
              labels: dict[str, str] | None = None) -> StageOutcome:
    """`pairs` pairs in every environment holding one of `cells`, each pair kept in pairs.jsonl as it ends."""
    import time

    by_env: dict[str, list[str]] = {}
    for cell in cells:
        by_env.setdefault(cell.env_name, []).append(cell.worker_id)
    env_sides = {name: sides_of(sides[name], base, head, extra_env) for name in by_env}
    benchmark_dir = asvdata.asv_config(repo).benchmark_dir
    kept = out_dir / "pairs.jsonl"

    def keep(env_name: str, pair: PairOutcome) -> None:
        with open(kept, "a") as f:
            f.write(json.dumps({"env_name": env_name, **asdict(pair)}) + "\n")

    started = time.monotonic()
    outcome = run_pairs(env_sides, benchmark_dir, by_env, pairs, max(c.samples_per_process for c in cells), design,
                        seed, out_dir / "workers.log", stage=stage, first_index=first_index, timeout_s=timeout_s,
                        progress=progress, on_pair=keep, labels=labels)
    return StageOutcome(stage=stage, pairs=outcome, seconds=round(time.monotonic() - started, 1))


def store_stage(repo: str, machine: str, runner: str, base: str, head: str, cells: list[PairedCell],
                stage: StageOutcome, append: bool) -> None:
    """The stage's good pairs into asv's results (base's and head's processes in the same order: process i of
    each is pair i), and the pairing record updated to match."""
    conf = asvdata.asv_config(repo)
    record = (asvpairs.load_pairing(conf.results_dir, machine, base, head) if append else None) or PairingRecord(
        base=base, head=head, machine=machine, cells={})
    for env_name in {c.env_name for c in cells}:
        mine = [c for c in cells if c.env_name == env_name]
        good = [p for p in stage.pairs.get(env_name, []) if not p.failed]
        clean = {c.worker_id: [p for p in good if c.worker_id not in p.errors] for c in mine}
        for commit, side in ((base, BASE), (head, HEAD)):
            samples: dict[str, dict[int, list[float] | str]] = {}
            for cell in mine:
                cid = cell.worker_id
                if any(side in p.not_available.get(cid, []) for p in good):
                    got: list[float] | str = asvpairs.NOT_AVAILABLE
                elif clean[cid]:  # a pair in which the cell failed on either side is dropped for it, both sides
                    got = [s for p in clean[cid] for s in p.windows[cid][side]]
                elif any(side in p.errors.get(cid, {}) for p in good):
                    got = asvpairs.FAILED  # it never ran here: failed, as asv records it
                elif good:
                    got = [s for p in good for s in p.windows[cid][side]]  # only the other side failed
                else:
                    continue
                samples.setdefault(cell.benchmark, {})[cell.param_index] = got
            if samples:
                asvpairs.store(repo, machine, env_name, commit, samples, append)
        for cell in mine:
            entry = record.cells.get(cell.key) if append else None
            if entry is None:
                entry = CellPairs(env_name=env_name, benchmark=cell.benchmark, param_index=cell.param_index,
                                  samples_per_process=cell.samples_per_process, pairs=[], digest={})
                record.cells[cell.key] = entry
            entry.pairs += [{"stage": stage.stage, "runner": runner, "design": p.design, "first": p.first,
                             "cpus": p.cpus, "index": p.index} for p in clean[cell.worker_id]]
            entry.failed += [f"stage {stage.stage}, pair {p.index + 1}: {p.failed}"
                             for p in stage.pairs.get(env_name, []) if p.failed]
            entry.failed += [f"stage {stage.stage}, pair {p.index + 1}: {side} {error}" for p in good
                             for side, error in p.errors.get(cell.worker_id, {}).items()]
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
        read = into.setdefault(key, CellPairsRead())
        read.failed += entry.failed
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
