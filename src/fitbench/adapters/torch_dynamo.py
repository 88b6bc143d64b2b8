"""PyTorch internals: how many graphs `torch.compile` (Dynamo) has compiled in this process.

Why private: Dynamo counts every graph it compiles in `torch._dynamo.utils.counters["stats"]["unique_graphs"]`
(a recompile after a failed guard is one more), and no public API gives that count. A counter kept by
fitbench inside the compiled step would not do: Dynamo guards on the Python state the step touches, so the
counter itself makes it recompile at every call. Checked with torch 2.13.0; None where the counter is absent.
"""

from __future__ import annotations

CHECKED_TORCH = "2.13.0"


def graphs_compiled() -> int | None:
    """Graphs Dynamo compiled so far in this process, or None where this torch keeps no such counter."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    stats = counters.get("stats") if hasattr(counters, "get") else None
    return int(stats.get("unique_graphs", 0)) if stats is not None else 0
