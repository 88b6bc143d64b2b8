"""The paired design's measurement: one fresh process of each commit, both warm, measured close in time.

A pair starts a worker (fitbench/regress/pair_worker.py, run by path with an asv environment's Python) for
the base commit and one for the head commit, in the same environment, each importing its own commit's
build; both run the benchmarks' setup (build, compile, warm up), then:

- `alternate` (the default): the two take turns, each running one timed window (one asv sample, 60-300 ms
  for StepTime, far above a scheduler tick) of every cell the workers hold before the other's turn; which
  commit leads is drawn for the first round and then alternates (A B B A ...). A turn that starts right
  after the other side's is preceded by one untimed window of its own: a process that has just waited on
  the other's windows finds the caches and its thread pools cold, and such a window measured a few per cent
  slower than the same process's next one (docs/alerts.md), so every timed window follows a window of its
  own process, as asv's own samples do; one warm-up a round, whatever the number of cells;
- `duet` (Bulej et al., ICPE 2020): both run their window at the same moment, each pinned to its own half
  of the CPUs, which side gets which half drawn per pair. Both see the same interference, but they also
  interfere with each other, and on a 2-core machine nothing is left for the rest of the system.

The pair's value is the median over its rounds of the log of head's window over base's
(fitbench.regress.signedrank.log_ratio). Every pair is fresh processes, so what differs between processes
stays in the spread.
A pair that fails (a worker crashes, errs or outlives its timeout) is dropped on both sides and counted.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from fitbench.errors import UsageError
from fitbench.processes.isolation import JsonLines, heartbeat

ALTERNATE, DUET, UNPAIRED = "alternate", "duet", "unpaired"
DESIGNS = (ALTERNATE, DUET, UNPAIRED)
BASE, HEAD = "base", "head"
WORKER_SCRIPT = Path(__file__).with_name("pair_worker.py")
STOP_GRACE_S = 10.0
PAIR_HEARTBEAT_S = 20.0  # a progress line this often while one pair runs
# alternate: a turn that follows the other side's window is preceded by one untimed window of its own, so
# that each timed window finds its process warm, as asv's consecutive samples do
SWITCH_WARMUP = True


class PairFailed(RuntimeError):
    """A worker of the pair crashed, erred or did not answer in time: the pair is dropped on both sides."""


@dataclass(frozen=True)
class Side:
    """One commit's code in one asv environment: the Python to run, and the environment of its processes."""

    commit: str
    python: str
    env: dict[str, str]


@dataclass
class PairOutcome:
    """One pair of fresh processes: each cell's windows on both sides, or why the pair failed."""

    index: int  # 0-based over the whole alert, in the order measured
    stage: int
    design: str
    first: str  # base | head: which side led the first round (alternate) or was started first (duet)
    cpus: dict[str, list[int]] | None  # duet: the CPUs each side was pinned to
    windows: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # cell id -> side -> samples
    not_available: dict[str, list[str]] = field(default_factory=dict)  # cell id -> the sides that said n/a
    errors: dict[str, dict[str, str]] = field(default_factory=dict)  # cell id -> side -> its error (asv: failed)
    failed: str | None = None
    seconds: float = 0.0
    warmups: int = 0  # alternate: untimed windows run after the other side's (SWITCH_WARMUP)


def split_cpus(available: list[int]) -> tuple[list[int], list[int]] | None:
    """Two disjoint CPU sets for a duet (the lower and the upper half); None with fewer than two CPUs."""
    if len(available) < 2:
        return None
    half = len(available) // 2
    return available[:half], available[half:]


def available_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


class Worker:
    """One side of a pair: a warm process answering one JSON line per request (pair_worker.py)."""

    def __init__(self, side: Side, benchmark_dir: str, log: IO[str], cpus: list[int] | None = None) -> None:
        read_fd, write_fd = os.pipe()
        cmd = [side.python, str(WORKER_SCRIPT), benchmark_dir, str(write_fd), ",".join(map(str, cpus or []))]
        try:
            # its own session: Ctrl-C reaches fitbench, which stops the workers (a worker's benchmark may
            # start processes of its own: the whole group goes)
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=log, env=side.env,
                                         pass_fds=(write_fd,), text=True, start_new_session=True)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.answers = read_fd
        self.lines = JsonLines(read_fd)
        self.side = side

    def send(self, request: dict) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise PairFailed(f"the {self.side.commit[:10]} worker is gone ({self._status()})") from None

    def receive(self, timeout_s: float) -> dict:
        """Its next answer (ValueError when it is not JSON); PairFailed when none comes in time or it exited."""
        try:
            return self.lines.next(time.monotonic() + timeout_s)
        except TimeoutError:
            raise PairFailed(f"the {self.side.commit[:10]} worker did not answer within {timeout_s:.0f} s") from None
        except EOFError:
            raise PairFailed(f"the {self.side.commit[:10]} worker exited ({self._status()}; see workers.log)") from None

    def _status(self) -> str:
        code = self.proc.poll()
        return "still running" if code is None else f"exit status {code}"

    def ask_to_stop(self) -> None:
        """Ask it to finish (its teardown and a framework's exit take a second or two) without waiting."""
        try:
            self.send({"stop": True})
        except PairFailed:
            pass

    def finish(self, deadline: float) -> None:
        """After ask_to_stop: wait for its exit until `deadline` (time.monotonic()), then kill its group and reap it."""
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.kill()

    def kill(self) -> None:
        """Its whole process group (what the benchmark started too, even after the worker itself is gone)."""
        try:
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        if self.answers >= 0:  # once only: a closed descriptor's number is soon another file's
            try:
                os.close(self.answers)
            except OSError:
                pass
            self.answers = -1


def stop_workers(workers: list[Worker], graceful: bool = True) -> None:
    """Both sides of a pair at once: each is asked first, then each is waited for within one shared grace
    period (waited for one after the other, a framework worker's seconds of teardown were paid twice)."""
    if graceful:
        for worker in workers:
            worker.ask_to_stop()
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in workers:
            worker.finish(deadline)
    else:
        for worker in workers:
            worker.kill()


def measure_pair(base: Side, head: Side, benchmark_dir: str, cells: list[str], windows: int, design: str,
                 rng: random.Random, log: IO[str], index: int, stage: int, timeout_s: float = 600.0) -> PairOutcome:
    """One pair: both workers set up every cell (asv benchmark ids), then `windows` rounds of one window per
    side and cell, alternating or as a duet. Never raises for the pair's own failure: it is in `failed`."""
    sides = {BASE: base, HEAD: head}
    first = BASE if rng.random() < 0.5 else HEAD
    cpus = None
    if design == DUET:
        halves = split_cpus(available_cpus())
        if halves is None:
            raise UsageError("--design duet needs at least two CPUs, one set for each side")
        low, high = halves
        cpus = {first: low, (HEAD if first == BASE else BASE): high}
    outcome = PairOutcome(index=index, stage=stage, design=design, first=first, cpus=cpus,
                          windows={c: {BASE: [], HEAD: []} for c in cells})
    started = time.monotonic()
    order = [first, HEAD if first == BASE else BASE]
    workers: dict[str, Worker] = {}
    try:
        for name in order:  # the leader starts first; both set up at once
            workers[name] = Worker(sides[name], benchmark_dir, log, cpus[name] if cpus else None)
        def take(cell: str, name: str, answer: dict) -> None:
            """A cell that errs on a side is failed there, as asv records a failed benchmark; the pair goes on."""
            if not answer.get("ok"):
                outcome.errors.setdefault(cell, {})[name] = answer.get("error", "error")
            elif answer.get("na"):
                outcome.not_available.setdefault(cell, []).append(name)
            else:
                outcome.windows[cell][name] += answer.get("samples", [])

        for cell in cells:
            for name in order:
                workers[name].send({"setup": cell})
            for name in order:
                take(cell, name, workers[name].receive(timeout_s))
        def runs(cell: str, name: str) -> bool:
            return name not in outcome.not_available.get(cell, []) and name not in outcome.errors.get(cell, {})

        last: str | None = None  # the side whose window ran last
        for round_number in range(windows):
            leader = order if round_number % 2 == 0 else order[::-1]
            if design == DUET:
                for cell in cells:
                    running = [name for name in leader if runs(cell, name)]
                    for name in running:
                        workers[name].send({"run": cell})
                    for name in running:
                        take(cell, name, workers[name].receive(timeout_s))
                continue
            # one side's windows of every cell, then the other's: the side that ends a round leads the next
            # (A B B A ...), so a switch of process comes once a round whatever the number of cells
            for name in leader:
                for cell in cells:
                    if not runs(cell, name):
                        continue
                    if SWITCH_WARMUP and last != name:  # the other's window ran last: warm up first
                        workers[name].send({"run": cell})
                        warm = workers[name].receive(timeout_s)
                        outcome.warmups += 1
                        last = name
                        if not warm.get("ok") or warm.get("na"):
                            take(cell, name, {**warm, "samples": []})
                            continue
                    workers[name].send({"run": cell})
                    take(cell, name, workers[name].receive(timeout_s))
                    last = name
    except PairFailed as exc:
        outcome.failed = str(exc)
    except (OSError, ValueError) as exc:  # a worker that cannot start, or an answer that is not JSON
        outcome.failed = f"{type(exc).__name__}: {exc}"
    finally:
        stop_workers(list(workers.values()), graceful=outcome.failed is None)
        outcome.seconds = round(time.monotonic() - started, 2)
    return outcome


def run_pairs(sides: dict[str, tuple[Side, Side]], benchmark_dir: str, cells: dict[str, list[str]], pairs: int,
              windows: dict[str, int], design: str, seed: int, log_path: Path, stage: int = 1, first_index: int = 0,
              timeout_s: float = 600.0, progress: Callable[[str], None] = lambda line: None,
              on_pair: Callable[[str, PairOutcome], None] = lambda group, pair: None,
              labels: dict[str, str] | None = None, deadline: float | None = None,
              max_failures: int = 0, min_pairs: int = 1, on_note: Callable[[str], None] = lambda line: None
              ) -> tuple[dict[str, list[PairOutcome]], dict[str, str]]:
    """`pairs` pairs of each group's workers ({group: (base side, head side)}, `cells` the asv benchmark ids
    each group's workers hold, `windows` their rounds), the groups taken in turns pair by pair so that a drift
    of the machine over the stage reaches them alike. Every finished pair goes to `on_pair` at once (kept, so
    that a stopped alert loses nothing measured). No round of pairs starts that would end after `deadline`
    (time.monotonic()) at the pace of the rounds before it: --max-minutes is a bound a CI job's timeout can
    rely on, not a point past which one more round may run (on a loaded runner a round of three backends
    takes over a minute). The first `min_pairs` rounds always run (fewer pairs than the exact test needs to
    reach its level decide nothing: stopping there would spend the time and answer nothing). A group whose last
    `max_failures` pairs all failed is stopped (its worker cannot run: more would only cost time). When the
    first round's pace says the `min_pairs` rounds will end past `deadline`, that is said at once (progress and
    `on_note`), with how far past and what would fit. Returns the pairs and, per stopped group, why."""
    rng = random.Random(seed)
    out: dict[str, list[PairOutcome]] = {group: [] for group in sides}
    stopped: dict[str, str] = {}
    started = time.monotonic()
    round_seconds: list[float] = []
    with open(log_path, "a") as log:
        for number in range(pairs):
            round_started = time.monotonic()
            pace = sum(round_seconds) / len(round_seconds) if round_seconds else 0.0
            if deadline is not None and number >= max(1, min_pairs) and round_started + pace > deadline:
                for group in sides:
                    stopped.setdefault(group, f"stopped after {number} of {pairs} pairs: --max-minutes reached")
                progress(f"stage {stage}: --max-minutes reached after {number} of {pairs} pairs (the next round, "
                         f"about {pace:.0f} s, would end past it): no more pairs")
                break
            for group, (base, head) in sides.items():
                if group in stopped:
                    continue
                name = (labels or {}).get(group, group)
                log.write(f"--- stage {stage}, pair {number + 1}/{pairs} of {group}\n")
                log.flush()
                # a pair can outlast half a minute (a slow build, a loaded runner): a line while it runs
                with heartbeat(progress, f"stage {stage}: pair {number + 1}/{pairs} on {name}",
                               every_s=PAIR_HEARTBEAT_S):
                    pair = measure_pair(base, head, benchmark_dir, cells[group], windows[group], design, rng, log,
                                        index=first_index + number, stage=stage, timeout_s=timeout_s)
                out[group].append(pair)
                on_pair(group, pair)
                what = f"failed: {pair.failed}" if pair.failed else f"{pair.first} first"
                progress(f"stage {stage}: pair {number + 1}/{pairs} on {name}: {len(cells[group])} cell(s), "
                         f"{pair.seconds:.1f} s, {what} (elapsed {(time.monotonic() - started) / 60:.1f} min)")
                recent = out[group][-max_failures:] if max_failures else []
                if max_failures and len(recent) == max_failures and all(p.failed for p in recent):
                    stopped[group] = f"stopped after {max_failures} failed pairs in a row ({pair.failed})"
                    progress(f"stage {stage}: {name}: {stopped[group]}")
            round_seconds.append(time.monotonic() - round_started)
            if deadline is not None and number == 0 and min_pairs > 1:
                note = overrun_note(round_seconds[0], min_pairs, time.monotonic(), deadline)
                if note:
                    progress(f"stage {stage}: {note}")
                    on_note(note)
    return out, stopped


def overrun_note(round_s: float, min_pairs: int, now: float, deadline: float) -> str | None:
    """After the first round: when the rounds that run whatever the time (`min_pairs`, the first done) will
    end past the deadline at this pace, how far past, and what would fit; None when they fit."""
    end = now + round_s * (min_pairs - 1)
    if end <= deadline:
        return None
    fit = max(1, int((deadline - now) // max(round_s, 1e-9)) + 1)  # the round just done counts
    return (f"at {round_s:.0f} s a round of pairs, the first {min_pairs} pairs (fewer decide nothing, so they run "
            f"whatever the time) end about {(end - deadline) / 60:.1f} min past --max-minutes; {fit} would fit. "
            f"To fit, split the pairs over runners (`--machine runner-N --stages 1 --processes K` on each, then "
            f"one `--stored --results …` decides over all their pairs), or select fewer cells")


def worker_env(python: str, env_vars: dict[str, str], asv_env: dict[str, str], commit: str, site: str | None,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """A worker's environment, as asv gives its benchmark processes: this process's environment, the
    matrix's variables, asv's ASV_* variables with this commit's ASV_COMMIT, the environment's bin first on
    PATH, and the commit's build first on PYTHONPATH (asv drops an inherited PYTHONPATH: so does this)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(env_vars)
    env.update(asv_env)
    env["ASV_COMMIT"] = commit
    env["PATH"] = os.pathsep.join([os.path.dirname(python), env.get("PATH", "")])
    if site:
        env["PYTHONPATH"] = site
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env

