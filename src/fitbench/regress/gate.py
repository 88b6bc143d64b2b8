"""`fitbench gate`: the micro-benchmark gate with the process as the unit.

pytest-benchmark's own `--benchmark-compare-fail=median:10%` compares one session with another: one process
against one, so a process that landed slow (docs/noise.md) fails the gate. Here each side is several
sessions (`--benchmark-json` files, one process each, run alternately base, head, base, head, ...), each
session's median of a benchmark is one observation, and fitbench.regress.decide decides every benchmark
with the same exact rank-sum test, Holm correction, interval and detectable change as `fitbench alert`.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitbench.errors import UsageError
from fitbench.regress import decide
from fitbench.regress.decide import ALERT_SETTINGS, DecisionSettings
from fitbench.report.document import Document

SCHEMA_VERSION = 2  # 1: no equivalence test, exit 0 when undecided


@dataclass
class GateRow:
    """One benchmark: base against head, one observation per session."""

    benchmark: str
    before: float | None = field(metadata={"doc": "median over the base sessions' medians (seconds)"})
    after: float | None
    change: str = field(metadata={"doc": "worse | better | equivalent | inconclusive"})
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_adjusted: float | None
    p_equivalence_adjusted: float | None
    sessions_base: int
    sessions_head: int
    sessions_dropped: list[int] = field(metadata={"doc": "[base, head]: missing, 0 or not finite"})
    between_session_cv: float | None
    min_detectable_change: float | None
    note: str


@dataclass
class GateDocument(Document):
    """What `fitbench gate --json` writes (fitbench/schemas/gate.schema.json, built from this)."""

    base: list[str]
    head: list[str]
    settings: DecisionSettings
    undecided_ok: bool
    rows: list[GateRow]
    exit_status: int
    command: str = "gate"
    schema_version: int = SCHEMA_VERSION



def read_sessions(paths: list[str]) -> dict[str, list[float | None]]:
    """{benchmark fullname: [median of each session, None where the session lacks it]} over pytest-benchmark
    JSON files, every benchmark any session has."""
    per_session = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
            per_session.append({b["fullname"]: float(b["stats"]["median"]) for b in doc["benchmarks"]})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} is not a pytest-benchmark --benchmark-json file ({exc})") from None
    names = sorted(set().union(*per_session)) if per_session else []
    return {name: [s.get(name) for s in per_session] for name in names}


def gate(base_paths: list[str], head_paths: list[str], settings: DecisionSettings = ALERT_SETTINGS,
         undecided_ok: bool = False) -> dict[str, Any]:
    """Every benchmark of any session, decided; the document `fitbench gate` prints. A session that lacks a
    benchmark, or whose median is 0 or not finite, is a dropped observation of it (counted); fewer than 2
    left on a side leaves it inconclusive. Exit statuses as `fitbench alert`'s: 1 a benchmark is worse, 3 one
    could not be decided (0 with `undecided_ok`), 0 every benchmark decided and none worse."""
    if len(base_paths) < 2 or len(head_paths) < 2:
        raise UsageError("the gate needs at least 2 sessions per side (--base A.json A2.json --head B.json B2.json)")
    base, head = read_sessions(base_paths), read_sessions(head_paths)
    names = sorted(base.keys() | head.keys())
    if not names:
        raise UsageError("the sessions hold no benchmark")
    usable = {n: (decide.usable_values(base.get(n, [None] * len(base_paths))),
                  decide.usable_values(head.get(n, [None] * len(head_paths)))) for n in names}
    testable = {n: (b.values, h.values) for n, (b, h) in usable.items() if len(b.values) >= 2 and len(h.values) >= 2}
    decisions = decide.decide(testable, settings) if testable else {}
    rows = []
    for n in names:
        b, h = usable[n]
        d = decisions.get(n)
        rows.append(GateRow(benchmark=n, before=statistics.median(b.values) if b.values else None,
                            after=statistics.median(h.values) if h.values else None,
                            change=d.change if d else decide.INCONCLUSIVE, ratio=d.ratio if d else None,
                            ci_low=d.ci_low if d else None, ci_high=d.ci_high if d else None,
                            p_adjusted=d.p_adjusted if d else None,
                            p_equivalence_adjusted=d.p_equivalence_adjusted if d else None,
                            sessions_base=len(b.values), sessions_head=len(h.values),
                            sessions_dropped=[b.dropped, h.dropped], between_session_cv=d.log_sd if d else None,
                            min_detectable_change=d.min_detectable_change if d else None,
                            note="" if d else "fewer than 2 usable sessions on a side (missing, 0 or not finite)"))
    changes = {r.change for r in rows}
    status = (1 if decide.WORSE in changes else 3 if decide.INCONCLUSIVE in changes and not undecided_ok else 0)
    return GateDocument(base=base_paths, head=head_paths, settings=settings, undecided_ok=undecided_ok, rows=rows,
                        exit_status=status).to_dict()
