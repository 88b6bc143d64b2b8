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
from pathlib import Path
from typing import Any

from fitbench.errors import UsageError
from fitbench.regress import decide

SCHEMA_VERSION = 1


def read_sessions(paths: list[str]) -> dict[str, list[float]]:
    """{benchmark fullname: [median of each session]} over pytest-benchmark JSON files; a benchmark must
    be in every session (else it cannot be compared process by process)."""
    per_session = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
            per_session.append({b["fullname"]: float(b["stats"]["median"]) for b in doc["benchmarks"]})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} is not a pytest-benchmark --benchmark-json file ({exc})") from None
    if not per_session:
        return {}
    common = set.intersection(*(set(s) for s in per_session))
    return {name: [s[name] for s in per_session] for name in sorted(common)}


def gate(base_paths: list[str], head_paths: list[str], alpha: float = 0.01, threshold: float = 0.10,
         min_change: float = 0.05) -> dict[str, Any]:
    """Every benchmark found in all sessions of both sides, decided; the document `fitbench gate` prints."""
    if len(base_paths) < 2 or len(head_paths) < 2:
        raise UsageError("the gate needs at least 2 sessions per side (--base A.json A2.json --head B.json B2.json)")
    base, head = read_sessions(base_paths), read_sessions(head_paths)
    names = sorted(base.keys() & head.keys())
    if not names:
        raise UsageError("no benchmark is in every session of both sides")
    decisions = decide.decide({n: (base[n], head[n]) for n in names}, alpha=alpha, threshold=threshold,
                              min_change=min_change)
    rows = [{"benchmark": n, "before": statistics.median(base[n]), "after": statistics.median(head[n]),
             "change": d.change, "ratio": d.ratio, "ci_low": d.ci_low, "ci_high": d.ci_high,
             "p_adjusted": d.p_adjusted, "sessions_base": d.processes_base, "sessions_head": d.processes_head,
             "between_session_cv": d.log_sd, "min_detectable_change": d.min_detectable_change}
            for n, d in decisions.items()]
    return {"schema_version": SCHEMA_VERSION, "command": "gate", "base": base_paths, "head": head_paths,
            "settings": {"alpha": alpha, "threshold": threshold, "min_change": min_change}, "rows": rows,
            "exit_status": 1 if any(r["change"] == decide.WORSE for r in rows) else 0}
