"""Real alerts, counted: A/A (a documentation-only commit) and A/B (a planted slowdown) `fitbench alert` runs
with every default, one after the other, some with a second job on the machine, so that docs/alerts.md can
state false-alarm and detection rates over independent real runs rather than resampled ones.

    python scripts/alert_trials.py --workdir /tmp/trials --out docs/results/alert-runs-DATE \\
        --plan aa,ab,aa,ab --plan-loaded aa,ab

The work directory gets a clone of this repository's HEAD (commit your changes first) with:
- `base`: HEAD;
- `aa-N`: base plus one blank line in README.md, a fresh commit for every A/A trial (asv measures it anew);
- `slow`: base with a plant in FitHarness.fit_executions that busy-waits --plant (default 0.10) of every
  training step's full cycle (the step and fit's own work between steps), on every backend alike.
Each trial runs `fitbench alert base <head>` in the clone with its defaults (plus --alpha etc. if given),
writes `<name>.json` (its alert.json) and `<name>.md` into --out, and appends a line with the exit status,
the wall time and whether it ran under load to `trials.jsonl` there. Under load means
scripts/background_load.py for the whole alert. The clone's asv environments are built by the first alert.
A file named PAUSE in the work directory holds the next trial until it is removed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLANT_ANCHOR = "                       verbose=0, callbacks=[timer], shuffle=False)"
PLANT_CALL = "                       verbose=0, callbacks=[_planted_slowdown(self.keras), timer], shuffle=False)"
PLANT_CODE = '''

def _planted_slowdown(keras):  # planted by scripts/alert_trials.py: a regression of {fraction:.0%} of every step
    import time as clock

    class _Plant(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.last, self.begin = None, 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self.begin = clock.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            now = clock.perf_counter()
            until = now + {fraction!r} * (now - (self.begin if self.last is None else self.last))
            while clock.perf_counter() < until:
                pass
            self.last = clock.perf_counter()

    return _Plant()
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=fitbench-trials", "-c",
                           "user.email=fitbench-trials@localhost", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def prepare(workdir: Path, plant: float) -> Path:
    clone = workdir / "fitbench"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        git(clone, "branch", "-f", "base", "HEAD")
        git(clone, "checkout", "-q", "-B", "slow", "base")
        harness = clone / "src" / "fitbench" / "measure" / "harness.py"
        text = harness.read_text()
        if PLANT_ANCHOR not in text:
            raise SystemExit("alert_trials: the plant no longer applies to FitHarness.fit_executions")
        harness.write_text(text.replace(PLANT_ANCHOR, PLANT_CALL, 1) + PLANT_CODE.format(fraction=plant))
        git(clone, "commit", "-qam", f"planted: busy-wait {plant:.0%} of every training step")
        git(clone, "checkout", "-q", "base")
    return clone


def aa_commit(clone: Path, name: str) -> str:
    git(clone, "checkout", "-q", "-B", name, "base")
    with open(clone / "README.md", "a") as f:
        f.write("\n")
    git(clone, "commit", "-qam", f"documentation only ({name})")
    git(clone, "checkout", "-q", "base")
    return name


def clopper_pearson(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion, by bisection on the binomial tails."""
    from math import comb

    def tail_at_least(p: float) -> float:
        return sum(comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(hits, n + 1))

    def tail_at_most(p: float) -> float:
        return sum(comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(0, hits + 1))

    def solve(f, target: float, increasing: bool) -> float:
        low, high = 0.0, 1.0
        for _ in range(60):
            mid = (low + high) / 2
            if (f(mid) < target) == increasing:
                low = mid
            else:
                high = mid
        return (low + high) / 2

    a = (1 - confidence) / 2
    lower = 0.0 if hits == 0 else solve(tail_at_least, a, increasing=True)
    upper = 1.0 if hits == n else solve(tail_at_most, a, increasing=False)
    return lower, upper


BATCH_OF_INDEX = {"0": "32", "1": "256"}  # StepTime's parameter index -> batch size, in the quick profile


def decidable_margins(out: Path, name: str, stages: int = 2) -> dict[str, float]:
    """Per cell of a trial: the smallest equivalence margin (0.5 % steps) with which the alert's own decision
    (Holm over the trial's cells, the first stage's level) calls it equivalent on its stage-1 pairs, from the
    trial's pairs.jsonl: the margin this budget can decide."""
    import math

    sys.path.insert(0, str(ROOT / "src"))
    from fitbench.regress import decide, signedrank

    path = out / f"{name}-pairs.jsonl"
    if not path.exists():
        return {}
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    cells = {}
    for env in sorted({p["env_name"] for p in pairs}):
        backend = env.rsplit("KERAS_BACKEND", 1)[-1]
        for cell in sorted({c for p in pairs if p["env_name"] == env for c in p["windows"]}):
            label = f"{backend} {BATCH_OF_INDEX.get(cell.rsplit('-', 1)[-1], cell)}"
            cells[label] = [signedrank.log_ratio(p["windows"][cell]["base"], p["windows"][cell]["head"])
                            for p in pairs if p["env_name"] == env and p["stage"] == 1 and not p["failed"]
                            and p["windows"].get(cell, {}).get("base")]
    margins = {label: math.inf for label in cells}
    for step in range(1, 61):
        settings = decide.DecisionSettings(threshold=step / 200, min_change=min(0.05, step / 200))
        evidence = {k: signedrank.paired_evidence(v, settings, "alternate") for k, v in cells.items()}
        for label, d in decide.conclude(evidence, settings, stage=1, stages=stages).items():
            if d.change == decide.EQUIVALENT and math.isinf(margins[label]):
                margins[label] = step / 200
    return margins


def trial_pairs(out: Path):
    """Every measured pair of every trial in `out` (its pairs.jsonl), with the trial's entry and the pair's
    backend; failed pairs left out."""
    for e in (json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()):
        path = out / f"{e['name']}-pairs.jsonl"
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            pair = json.loads(line)
            if not pair.get("failed"):
                yield e, pair, pair.get("group", pair.get("env_name", "")).split("KERAS_BACKEND")[-1].split("::")[0]


def switch_cost(out: Path) -> str:
    """Markdown: in each trial's pairs (pairs.jsonl), how much slower a window is when it is the second of its
    round (right after the other side's window, under the schedule before 2026-12-04's warm-up; after it,
    every timed window follows its own process's): per pair, half the mean log ratio head/base over the rounds
    base went first minus over the rounds head went first (d + x against d - x, for a change d and a second
    window slower by x), so that it reads +x whichever side led. Pairs of one cell only (in a worker holding
    several, the window before may be another cell's of the same process). Per fitbench commit, load and
    backend: pairs, median and the share of pairs above 0."""
    groups: dict[tuple[str, bool, str], list[float]] = {}
    for e, pair, backend in trial_pairs(out):
        if pair.get("design", "alternate") != "alternate":
            continue
        if len(pair["windows"]) != 1:  # with several cells a worker's next window may be another cell's
            continue
        for windows in pair["windows"].values():
            b, h = windows["base"], windows["head"]
            if len(b) != len(h) or len(b) < 2 or None in b or None in h:
                continue
            logs = [math.log(y) - math.log(x) for x, y in zip(b, h)]
            base_first = [v for k, v in enumerate(logs) if (k % 2 == 0) == (pair["first"] == "base")]
            head_first = [v for k, v in enumerate(logs) if (k % 2 == 0) != (pair["first"] == "base")]
            key = (e.get("fitbench_commit", "earlier"), e["loaded"], backend)
            groups.setdefault(key, []).append((statistics.mean(base_first) - statistics.mean(head_first)) / 2)
    lines = ["| fitbench commit | load | backend | pairs | second window of a round: slower by, median | "
             "share of pairs where it is slower |", "|---|---|---|---|---|---|"]
    for (commit, loaded, backend), values in sorted(groups.items()):
        lines.append(f"| {commit} | {'loaded' if loaded else 'quiet'} | {backend} | {len(values)} | "
                     f"{100 * statistics.median(values):+.1f} % | {sum(v > 0 for v in values) / len(values):.0%} |")
    return "\n".join(lines)


def round_noise(out: Path) -> str:
    """Markdown: where a pair's spread comes from. Per fitbench commit, load, backend and batch (every cell of
    every pair): the spread of the round-by-round log ratios around their own pair's median (IQR / 1.349, the
    noise of one round), what the median of that many such rounds alone would spread (about 1.25 / sqrt(rounds)
    of it, for normal rounds), and the spread of the pairs' values themselves (each trial's around its own
    median, so that a planted change is not counted as spread). When the two last are close,
    the rounds' noise is most of the pair's and more rounds a pair would narrow it; when the pairs spread
    more, what differs between processes dominates and only more pairs help."""
    rounds_of: dict[tuple[str, bool, str, str], list[float]] = {}
    pairs_of: dict[tuple[str, bool, str, str], list[float]] = {}
    counts: dict[tuple[str, bool, str, str], int] = {}
    by_trial: dict[tuple[tuple[str, bool, str, str], str], list[float]] = {}
    for e, pair, backend in trial_pairs(out):
        if "StepTime" not in pair.get("group", "StepTime"):
            continue
        for cell, windows in pair["windows"].items():
            b, h = windows["base"], windows["head"]
            if len(b) != len(h) or len(b) < 3 or None in b or None in h:
                continue
            logs = [math.log(y) - math.log(x) for x, y in zip(b, h)]
            centre = statistics.median(logs)
            key = (e.get("fitbench_commit", "earlier"), e["loaded"], backend, cell.rsplit("-", 1)[-1])
            rounds_of.setdefault(key, []).extend(v - centre for v in logs)
            by_trial.setdefault((key, e["name"]), []).append(centre)
            counts[key] = len(logs)
    for (key, _), values in by_trial.items():  # each trial around its own median: an A/B's change is no spread
        middle = statistics.median(values)
        pairs_of.setdefault(key, []).extend(v - middle for v in values)

    def spread(values: list[float]) -> float:
        q = statistics.quantiles(values, n=4, method="inclusive")
        return (q[2] - q[0]) / 1.349

    lines = ["| fitbench commit | load | backend | cell (parameter index) | pairs | one round's spread | "
             "a median of the rounds alone would spread | the pairs' values spread |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(pairs_of):
        if len(pairs_of[key]) < 4:
            continue
        one = spread(rounds_of[key])
        lines.append(f"| {key[0]} | {'loaded' if key[1] else 'quiet'} | {key[2]} | {key[3]} | {len(pairs_of[key])} | "
                     f"{100 * one:.1f} % | {100 * 1.25 * one / math.sqrt(counts[key]):.1f} % | "
                     f"{100 * spread(pairs_of[key]):.1f} % |")
    return "\n".join(lines)


def median_pct(values: list[float]) -> str:
    return f"{100 * values[len(values) // 2]:.1f} %" if values else "–"


def summarize(out: Path) -> str:
    """Markdown: per kind and load, the exit statuses over runs with exact 95 % intervals, each backend's
    verdicts and ratios, and the wall times."""
    entries = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    lines = []
    for kind in ("aa", "ab"):
        for loaded in (False, True):
            group = [e for e in entries if e["kind"] == kind and e["loaded"] == loaded]
            if not group:
                continue
            n = len(group)
            label = f"{'A/A' if kind == 'aa' else 'A/B'}{' under load' if loaded else ', quiet'}"
            statuses = {s: sum(1 for e in group if e["exit_status"] == s) for s in (0, 1, 2, 3, None)}
            wanted = 1 if kind == "ab" else 0
            low, high = clopper_pearson(statuses[wanted], n)
            walls = sorted(e["wall_s"] / 60 for e in group)
            lines.append(f"### {label}: {n} alerts")
            lines.append("")
            lines.append("exit 0: {0} · exit 1: {1} · exit 3: {3} · exit 2: {2} · none: {n} — exit {w} in "
                         "{h}/{t} ({lo:.1%}–{hi:.1%}, exact 95 %); wall {a:.1f}–{b:.1f} min (median {m:.1f})".format(
                             *(statuses[s] for s in (0, 1, 2, 3)), n=statuses[None], w=wanted, h=statuses[wanted],
                             t=n, lo=low, hi=high, a=walls[0], b=walls[-1], m=walls[len(walls) // 2]))
            lines.append("")
            per_trial = []
            for e in group:  # which code decided (trials before the field: the commit the notes name)
                path = out / f"{e['name']}.json"
                changes = [c["change"] for c in json.loads(path.read_text())["comparisons"]] if path.exists() else []
                per_trial.append(f"{e['name']} ({e.get('fitbench_commit', 'earlier')}): exit {e['exit_status']}, "
                                 f"{e['wall_s'] / 60:.1f} min, {changes.count('worse')} worse / "
                                 f"{changes.count('equivalent')} equivalent / {len(changes)} cells")
            lines.append("Trials: " + "; ".join(per_trial) + ".")
            lines.append("")
            lines.append("| backend, batch | worse (exact 95 %) | equivalent | inconclusive | better | went to "
                         "stage 2 | ratio median (range) | spread per pair, median | between processes, median |")
            lines.append("|---|---|---|---|---|---|---|---|---|")
            rows: dict[str, list[dict]] = {}
            for e in group:
                path = out / f"{e['name']}.json"
                if path.exists():
                    for c in json.loads(path.read_text())["comparisons"]:
                        if c["benchmark"].endswith("StepTime.time_step"):
                            rows.setdefault(f"{c['backend']} {c['params'].get('batch_size', '')}", []).append(c)
            for key, cells in sorted(rows.items()):
                ratios = sorted(c["ratio"] for c in cells if c["ratio"])
                pair_cvs = sorted(c["pair_cv"] for c in cells if c.get("pair_cv") is not None)
                cvs = sorted(c["between_process_cv"] for c in cells if c.get("between_process_cv") is not None)
                count = {v: sum(1 for c in cells if c["change"] == v)
                         for v in ("worse", "equivalent", "inconclusive", "better")}
                stage2 = sum(1 for c in cells if c.get("stage") == 2)
                w_low, w_high = clopper_pearson(count["worse"], len(cells))
                lines.append(f"| {key} | {count['worse']}/{len(cells)} ({w_low:.0%}–{w_high:.0%}) | "
                             f"{count['equivalent']} | {count['inconclusive']} | "
                             f"{count['better']} | {stage2} | {ratios[len(ratios) // 2]:.3f} ({ratios[0]:.3f}–"
                             f"{ratios[-1]:.3f}) | {median_pct(pair_cvs)} | {median_pct(cvs)} |")
            lines.append("")
            if kind == "aa":
                by_cell: dict[str, list[float]] = {}
                for e in group:
                    for label, margin in decidable_margins(out, e["name"]).items():
                        by_cell.setdefault(label, []).append(margin)
                if by_cell:
                    lines.append("The smallest equivalence margin the alert's own decision reaches on each "
                                 "trial's first-stage pairs (Holm over its cells), median (range) over the trials: "
                                 + "; ".join(f"{label} {median_pct(sorted(m))} ({100 * min(m):.1f}–"
                                             f"{100 * max(m):.1f} %)" for label, m in sorted(by_cell.items())))
                    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--plan", default="aa,ab", help="trials on a quiet machine, in order (aa, ab)")
    parser.add_argument("--plan-loaded", default="", help="trials with scripts/background_load.py beside them")
    parser.add_argument("--plant", type=float, default=0.10)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per alert")
    parser.add_argument("--summary", action="store_true", help="only summarise the trials already in --out")
    parser.add_argument("--switch-cost", action="store_true",
                        help="only the cost of a switch: the second window of a round against the first, per pair")
    parser.add_argument("--round-noise", action="store_true",
                        help="only tabulate where the trials' pair spread comes from: rounds or processes")
    parser.add_argument("alert_args", nargs=argparse.REMAINDER, help="after --: more `fitbench alert` options")
    args = parser.parse_args()
    if args.summary:
        print(summarize(args.out))
        return 0
    if args.switch_cost:
        print(switch_cost(args.out))
        return 0
    if args.round_noise:
        print(round_noise(args.out))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    clone = prepare(args.workdir, args.plant)
    extra = [a for a in args.alert_args if a != "--"]
    plan = [(k, False) for k in args.plan.split(",") if k] + [(k, True) for k in args.plan_loaded.split(",") if k]
    log = args.out / "trials.jsonl"
    # a rerun of the script picks up where it stopped; an alert that errored (2, 70) or timed out is run again
    done = {e["name"] for e in map(json.loads, log.read_text().splitlines()) if e["exit_status"] in (0, 1, 3)} \
        if log.exists() else set()
    counts: dict[str, int] = {}
    for kind, loaded in plan:
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}{counts[kind]}{'-loaded' if loaded else ''}"
        if name in done:
            continue
        while (args.workdir / "PAUSE").exists():  # touch it to hold the next trial (e.g. to run tests between)
            time.sleep(10)
        head = aa_commit(clone, f"{name}-docs") if kind == "aa" else "slow"
        report_dir = args.workdir / "reports" / name
        shutil.rmtree(report_dir, ignore_errors=True)
        report_dir.parent.mkdir(parents=True, exist_ok=True)
        load = None
        if loaded:
            load = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "background_load.py"),
                                     "--seconds", str(args.timeout)], start_new_session=True)
        cmd = [sys.executable, "-m", "fitbench", "alert", "base", head, "--repo", str(clone), "--out",
               str(report_dir), *extra]
        started = time.time()
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd[2:])}", flush=True)
        try:
            # the alert's own code from the clone's base commit, not this working tree: what is measured and
            # what decides stay fixed while this checkout changes
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(clone / "src"), os.environ.get("PYTHONPATH")]))}
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
            status = proc.returncode
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        except subprocess.TimeoutExpired:
            status, tail = None, ["timed out"]
        finally:
            if load is not None:
                os.killpg(load.pid, signal.SIGTERM)
                load.wait()
        wall = round(time.time() - started, 1)
        for source, target in (("alert.json", f"{name}.json"), ("alert.md", f"{name}.md"),
                               ("pairs.jsonl", f"{name}-pairs.jsonl")):
            if (report_dir / source).exists():
                shutil.copy(report_dir / source, args.out / target)
        entry = {"name": name, "kind": kind, "loaded": loaded, "head": head, "exit_status": status,
                 "fitbench_commit": git(clone, "rev-parse", "--short", "base"),
                 "wall_s": wall, "stderr_tail": tail[0], "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                    time.gmtime())}
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")
        print(f"[{time.strftime('%H:%M:%S')}] {name}: exit {status} in {wall / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
