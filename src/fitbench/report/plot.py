"""`fitbench run --plot PATH`: samples/s against batch size, one line per backend × device × jit × variant.

One colour per backend × device × jit; dotted lines are plain fit, solid lines tuned fit, dashed lines the
raw step of the same network (batch ÷ the raw step's median time, taken from the plain cells' records).
Log-log axes: batch sizes and throughputs both span orders of magnitude. matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from typing import Any

from fitbench.stacks import stack_name


def throughput_series(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Label -> [(batch size, samples/s)] sorted by batch, for every line the plot draws.

    Fit lines: "backend device jit=on|off plain|tuned" (effective jit). Raw lines: "backend device jit=...
    raw", from the plain cells (the tuned cells' own raw measurements are the same step, taken again)."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.get("status") != "ok" or r.get("kind") != "fit":
            continue
        base = f"{stack_name(r)} {r['device']} jit={'on' if r['jit_effective'] else 'off'}"
        variant = r.get("variant", "plain")
        fit = series[f"{base} {variant}"]  # several apis: the fastest at that batch (same network)
        fit[r["batch_size"]] = max(fit.get(r["batch_size"], 0.0), r["samples_per_s"])
        if variant == "plain" and r.get("raw_step_time_s"):
            raw = series[f"{base} raw"]
            # several apis share one raw step per batch: keep the fastest measurement of it
            raw[r["batch_size"]] = max(raw.get(r["batch_size"], 0.0), r["batch_size"] / r["raw_step_time_s"])
    return {label: sorted(points.items()) for label, points in sorted(series.items())}


def plot_throughput(records: list[dict[str, Any]], path: str, title: str | None = None) -> dict[str, Any]:
    """Write the PNG to `path` (atomically: a temporary file beside it, then renamed); return the series.

    With several apis in the records, each point is the api with the most samples/s at that batch
    (the apis build the same network; the table has every one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = throughput_series(records)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    styles = {"plain": ":", "tuned": "-", "raw": "--"}  # one colour per backend × device × jit
    markers = {"plain": "o", "tuned": "s", "raw": "^"}
    bases = list(dict.fromkeys(label.rsplit(" ", 1)[0] for label in series))
    colours = plt.get_cmap("tab10")
    for label, points in series.items():
        base, kind = label.rsplit(" ", 1)
        xs, ys = zip(*points)
        ax.plot(xs, ys, linestyle=styles[kind], marker=markers[kind], label=label,
                color=colours(bases.index(base) % 10), linewidth=2.2 if kind == "tuned" else 1.4)
    if not series:
        ax.text(0.5, 0.5, "no finished fit cells", ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("training samples / s (median step)")
    ax.set_title(title or "fit loop throughput: plain fit, tuned fit, raw step")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    target = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".fitbench-", suffix=".png", dir=os.path.dirname(target))
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, target)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return series
