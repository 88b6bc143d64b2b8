"""What pairing buys on this machine: the spread of per-pair ratios against the spread between processes, per
backend and batch size, for both paired designs, measured with the alert's own workers (fitbench.regress.pairing)
on one commit against itself (an A/A, so every ratio's true value is 1).

    python scripts/pair_noise.py --rounds 12 --out docs/results/pair-noise-DATE/quiet.json
    python scripts/background_load.py --seconds 3600 &  python scripts/pair_noise.py --rounds 12 --out .../loaded.json
    python scripts/pair_noise.py --summary docs/results/pair-noise-DATE/*.json

Each round, for every backend in turn: one `alternate` pair, one `duet` pair and one `solo` process (a worker
alone, as asv runs a process: the unpaired design's unit), the three in an order drawn per round. Every
process holds StepTime at batch 32 and 256 and gives 5 windows per cell, as in the alert. This checkout's
code is both commits (run it from a frozen copy: the workers import `--site`), its `benchmarks/` the suite,
and this Python the environment (it needs what the backends need, and asv_runner).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fitbench.regress import signedrank  # noqa: E402
from fitbench.regress.pairing import ALTERNATE, BASE, DUET, HEAD, Side, measure_pair, worker_env  # noqa: E402

CELLS = {"bench_fit.StepTime.time_step-0": 32, "bench_fit.StepTime.time_step-1": 256}  # the quick profile's
SOLO = "solo"


def solo(side: Side, log, windows: int) -> dict:
    """One worker alone: its windows per cell (the same worker code, the base side only)."""
    from fitbench.regress.pairing import PairFailed, Worker

    worker = Worker(side, str(ROOT / "benchmarks"), log)
    started = time.monotonic()
    out: dict = {"windows": {c: [] for c in CELLS}, "failed": None}
    try:
        for cell in CELLS:
            worker.send({"setup": cell})
            worker.receive(600)
        for _ in range(windows):
            for cell in CELLS:
                worker.send({"run": cell})
                out["windows"][cell] += worker.receive(600)["samples"]
        worker.stop()
    except PairFailed as exc:
        out["failed"] = str(exc)
        worker.kill()
    out["seconds"] = round(time.monotonic() - started, 2)
    return out


def measure(args: argparse.Namespace) -> None:
    site = args.site or str(ROOT / "src")
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    with open(out.with_suffix(".log"), "a") as log:
        for round_number in range(args.rounds):
            for backend in args.backends.split(","):
                env = worker_env(sys.executable, {"KERAS_BACKEND": backend}, {"ASV": "true"}, "0" * 40, site,
                                 {"FITBENCH_PROFILE": "quick"})
                side = Side("0" * 40, sys.executable, env)
                arms = [ALTERNATE, DUET, SOLO]
                rng.shuffle(arms)
                for arm in arms:
                    load = Path("/proc/loadavg").read_text().split()[0]
                    if arm == SOLO:
                        result = solo(side, log, 5)
                        record = {"arm": arm, "backend": backend, "round": round_number, "load": float(load),
                                  "failed": result["failed"], "seconds": result["seconds"],
                                  "windows": {CELLS[c]: {BASE: w} for c, w in result["windows"].items()}}
                    else:
                        pair = measure_pair(side, side, str(ROOT / "benchmarks"), list(CELLS), 5, arm, rng, log,
                                            index=round_number, stage=1)
                        record = {"arm": arm, "backend": backend, "round": round_number, "load": float(load),
                                  "failed": pair.failed, "seconds": pair.seconds, "first": pair.first,
                                  "cpus": pair.cpus, "windows": {CELLS[c]: w for c, w in pair.windows.items()}}
                    records.append(record)
                    print(f"round {round_number + 1}/{args.rounds} {backend} {arm}: {record['seconds']} s"
                          f"{' FAILED ' + record['failed'] if record['failed'] else ''}", file=sys.stderr, flush=True)
                    doc = {"command": " ".join(sys.argv), "started": args.started, "records": records}
                    out.write_text(json.dumps(doc, indent=1))


def summarize(paths: list[str]) -> str:
    """Per condition, backend and batch: the spreads, and the half-width of the ratio's 95 % interval from
    the same 24 processes of each paired design decided three ways — as pairs by the alert's statistic (the
    median of the per-round ratios), as pairs by the ratio of the two sides' medians, and as 12 + 12
    unpaired processes — the gain of pairing with everything else equal."""
    from fitbench.regress import ranksum

    def half_width(interval: tuple[float, float, float]) -> str:
        return f"±{100 * (interval[2] / interval[1] - 1) / 2:.1f} %"

    def spread_of(values: list[float]) -> float:
        return signedrank.robust_spread([math.log(v) for v in values])

    lines = ["| file | backend | batch | median step | between processes, solo | alternate: per pair "
             "(rounds / medians / unpaired interval) | duet: per pair (rounds / medians / unpaired interval) | "
             "seconds per pair: alternate, duet, solo |", "|---|---|---|---|---|---|---|---|"]
    for path in paths:
        records = [r for r in json.loads(Path(path).read_text())["records"] if not r["failed"]]
        for backend in sorted({r["backend"] for r in records}):
            for batch in ("32", "256"):
                def arm(name: str, backend: str = backend, records: list = records) -> list[dict]:
                    return [r for r in records if r["backend"] == backend and r["arm"] == name]

                solo_values = [statistics.median(r["windows"][batch][BASE]) for r in arm(SOLO)]
                cells = []
                for a in (ALTERNATE, DUET):
                    pairs = [(r["windows"][batch][BASE], r["windows"][batch][HEAD]) for r in arm(a)]
                    rounds = [signedrank.log_ratio(b, h) for b, h in pairs]
                    medians = [math.log(statistics.median(h) / statistics.median(b)) for b, h in pairs]
                    unpaired = ranksum.hodges_lehmann_ci([statistics.median(b) for b, _ in pairs],
                                                        [statistics.median(h) for _, h in pairs])
                    cells.append(f"{100 * signedrank.robust_spread(rounds):.1f} % (n={len(pairs)}): "
                                 f"{half_width(signedrank.hodges_lehmann_ci(rounds))} / "
                                 f"{half_width(signedrank.hodges_lehmann_ci(medians))} / {half_width(unpaired)}")
                seconds = [statistics.median([r["seconds"] for r in arm(a)] or [math.nan])
                           for a in (ALTERNATE, DUET, SOLO)]
                lines.append(f"| {Path(path).stem} | {backend} | {batch} | "
                             f"{1e3 * statistics.median(solo_values):.2f} ms | "
                             f"{100 * spread_of(solo_values):.1f} % (n={len(solo_values)}) | {cells[0]} | {cells[1]} | "
                             f"{seconds[0]:.0f}, {seconds[1]:.0f}, {seconds[2]:.0f} |")
    return "\n".join(lines)


def alert_pairs(path: str) -> str:
    """The same two pair statistics on an alert's pairs.jsonl: per environment and cell, the interval's
    half-width with the per-round ratio (the alert's) and with the ratio of the sides' medians."""
    lines = ["| environment | cell | pairs | per-round ratios: ratio, ±interval | ratio of medians: ratio, ±interval |",
             "|---|---|---|---|---|"]
    pairs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for env in sorted({p["env_name"] for p in pairs}):
        for cell in sorted({c for p in pairs if p["env_name"] == env for c in p["windows"]}):
            sides = [(p["windows"][cell][BASE], p["windows"][cell][HEAD]) for p in pairs
                     if p["env_name"] == env and not p["failed"] and p["windows"].get(cell, {}).get(BASE)]
            rounds = signedrank.hodges_lehmann_ci([signedrank.log_ratio(b, h) for b, h in sides])
            medians = signedrank.hodges_lehmann_ci([math.log(statistics.median(h) / statistics.median(b))
                                                    for b, h in sides])
            lines.append(f"| {env} | {cell} | {len(sides)} | " + " | ".join(
                f"{r:.3f}, ±{100 * (high / low - 1) / 2:.1f} %" for r, low, high in (rounds, medians)) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--site", default=None, help="the code both sides import (default: this checkout's src)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--summary", nargs="*")
    parser.add_argument("--alert-pairs", metavar="PAIRS_JSONL", help="the two statistics on an alert's pairs.jsonl")
    args = parser.parse_args()
    if args.alert_pairs:
        print(alert_pairs(args.alert_pairs))
        return 0
    args.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.summary:
        print(summarize(args.summary))
        return 0
    if not args.out:
        parser.error("--out is required to measure")
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
