"""The paired design's bookkeeping, without processes: which cells share a worker, how a stage of pairs stops
(a group that cannot run, --max-minutes), and the per-round ratio on windows in round order. The workers
themselves run in tests/test_alert_stages.py (a toy asv suite) and tests/test_alert.py (the real one)."""

from __future__ import annotations

import itertools
import math
import os
import random
import sys
from pathlib import Path

import pytest

from fitbench.regress import pairing, signedrank
from fitbench.regress.pairedstage import PairedCell, pairable
from fitbench.regress.pairing import PairOutcome, Side


def test_a_worker_holds_one_benchmark_class_and_a_start_up_setting_gets_its_own():
    info = {
        "bench_fit.StepTime.time_step": {"type": "time", "params": [["32", "256"]],
                                         "version": "StepTime 2; samples-per-process=5"},
        "bench_fit.StepTimeDeterministic.time_step": {"type": "time", "params": [["32", "256"]],
                                                      "version": "StepTimeDeterministic 1; samples-per-process=5"},
        "bench_fit.DataParallelStepTime.time_step": {
            "type": "time", "params": [["1", "2", "4"]],
            "version": "DataParallelStepTime 1; samples-per-process=5; process-per-parameters"},
        "bench_fit.FitLoop.time_fit_10_steps": {"type": "time", "params": [["32"]], "version": "abc"},  # no layout
        "bench_determinism.Determinism.track_run_to_run_identical": {"type": "track", "params": [],
                                                                     "version": "x; samples-per-process=1"},
    }
    selected = ["bench_fit.StepTime.time_step(32)", "bench_fit.StepTime.time_step(256)",
                "bench_fit.StepTimeDeterministic.time_step(32)", "bench_fit.DataParallelStepTime.time_step(2)",
                "bench_fit.DataParallelStepTime.time_step(4)", "bench_fit.FitLoop.time_fit_10_steps(32)",
                "bench_determinism.Determinism.track_run_to_run_identical"]
    cells = pairable(selected, {"jax": "env-jax"}, info)
    assert sorted(cells) == sorted(f"{name} [jax]" for name in selected[:5])  # timed, with a layout
    groups = {key.split(" [")[0]: cell.group for key, cell in cells.items()}
    # StepTime's two batch sizes share a worker (its harness cache keys them apart); the switched class, which
    # turns the determinism switch on for good, never shares StepTime's process; each device count has its own
    assert groups["bench_fit.StepTime.time_step(32)"] == groups["bench_fit.StepTime.time_step(256)"]
    assert groups["bench_fit.StepTimeDeterministic.time_step(32)"] != groups["bench_fit.StepTime.time_step(32)"]
    two, four = (groups[f"bench_fit.DataParallelStepTime.time_step({n})"] for n in (2, 4))
    assert two != four
    assert cells["bench_fit.StepTime.time_step(256) [jax]"].worker_id == "bench_fit.StepTime.time_step-1"


def fake_pair(failed: str | None = None, seconds: float = 0.0):
    def measure(base, head, benchmark_dir, cells, windows, design, rng, log, index, stage, timeout_s=600.0):
        return PairOutcome(index=index, stage=stage, design=design, first="base", cpus=None, failed=failed,
                           windows={c: {"base": [1.0] * windows, "head": [1.0] * windows} for c in cells},
                           seconds=seconds)
    return measure


def test_a_group_whose_pairs_keep_failing_is_stopped_and_the_others_go_on(monkeypatch, tmp_path):
    side = Side("a" * 40, "python", {})
    calls = []

    def measure(base, head, benchmark_dir, cells, windows, design, rng, log, index, stage, timeout_s=600.0):
        calls.append(cells[0])
        return fake_pair(failed="worker exited" if cells[0] == "broken-0" else None)(
            base, head, benchmark_dir, cells, windows, design, rng, log, index, stage)

    monkeypatch.setattr(pairing, "measure_pair", measure)
    out, stopped = pairing.run_pairs({"env::Broken": (side, side), "env::Fine": (side, side)}, "benchmarks",
                                     {"env::Broken": ["broken-0"], "env::Fine": ["fine-0"]}, 8,
                                     {"env::Broken": 5, "env::Fine": 5}, "alternate", 0, tmp_path / "log",
                                     max_failures=3)
    assert len(out["env::Broken"]) == 3 and len(out["env::Fine"]) == 8
    assert stopped == {"env::Broken": "stopped after 3 failed pairs in a row (worker exited)"}
    assert calls[:2] == ["broken-0", "fine-0"]  # the groups take turns, pair by pair


def test_a_pair_that_runs_long_still_prints_a_line_every_so_often(monkeypatch, tmp_path):
    import time

    def slow(*args, **kwargs):
        time.sleep(0.35)
        return fake_pair()(*args, **kwargs)

    side = Side("a" * 40, "python", {})
    lines: list[str] = []
    monkeypatch.setattr(pairing, "measure_pair", slow)
    monkeypatch.setattr(pairing, "PAIR_HEARTBEAT_S", 0.1)
    pairing.run_pairs({"env::A": (side, side)}, "benchmarks", {"env::A": ["a-0"]}, 2, {"env::A": 5}, "alternate",
                      0, tmp_path / "log", progress=lines.append, labels={"env::A": "jax"})
    beats = [line for line in lines if line.startswith("stage 1: pair 1/2 on jax: ") and line.endswith("s so far")]
    assert len(beats) >= 2, lines
    assert lines.index(beats[-1]) < next(i for i, line in enumerate(lines) if "pair 1/2 on jax: 1 cell(s)" in line)


def test_no_round_of_pairs_starts_after_the_deadline(monkeypatch, tmp_path):
    import time

    side = Side("a" * 40, "python", {})
    monkeypatch.setattr(pairing, "measure_pair", fake_pair())
    out, stopped = pairing.run_pairs({"env::A": (side, side)}, "benchmarks", {"env::A": ["a-0"]}, 10,
                                     {"env::A": 5}, "alternate", 0, Path(tmp_path / "log"),
                                     deadline=time.monotonic() - 1)
    assert len(out["env::A"]) == 1  # the first round always runs: an alert without a pair decides nothing
    assert "--max-minutes reached" in stopped["env::A"]


def test_no_round_starts_that_would_end_past_the_deadline_at_the_pace_so_far(monkeypatch, tmp_path):
    # a fake clock: every pair takes 60 s; the deadline is 150 s away, so a third round (ending at 180 s)
    # would pass it: two rounds, not three (the old check, "past the deadline yet?", ran the third)
    clock = [1000.0]

    def measure(*args, **kwargs):
        clock[0] += 60.0
        return fake_pair()(*args, **kwargs)

    side = Side("a" * 40, "python", {})
    monkeypatch.setattr(pairing.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pairing, "measure_pair", measure)
    lines: list[str] = []
    out, stopped = pairing.run_pairs({"env::A": (side, side)}, "benchmarks", {"env::A": ["a-0"]}, 10,
                                     {"env::A": 5}, "alternate", 0, Path(tmp_path / "log"), progress=lines.append,
                                     deadline=clock[0] + 150.0)
    assert len(out["env::A"]) == 2 and clock[0] <= 1150.0
    assert stopped["env::A"] == "stopped after 2 of 10 pairs: --max-minutes reached"
    assert any("the next round, about 60 s, would end past it" in line for line in lines)
    # but never fewer rounds than can decide anything: min_pairs run even past the deadline
    out, stopped = pairing.run_pairs({"env::A": (side, side)}, "benchmarks", {"env::A": ["a-0"]}, 10,
                                     {"env::A": 5}, "alternate", 0, Path(tmp_path / "log"),
                                     deadline=clock[0] - 1.0, min_pairs=3)
    assert len(out["env::A"]) == 3 and "stopped after 3 of 10 pairs" in stopped["env::A"]


def test_after_the_first_round_the_alert_says_when_the_deciding_pairs_cannot_fit(monkeypatch, tmp_path):
    # 60 s a round, 12 pairs needed, 5 minutes left: after round 1 (4 min left) the other 11 end 7 min past the
    # deadline; said once
    clock = [1000.0]

    def measure(*args, **kwargs):
        clock[0] += 60.0
        return fake_pair()(*args, **kwargs)

    side = Side("a" * 40, "python", {})
    monkeypatch.setattr(pairing.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pairing, "measure_pair", measure)
    lines: list[str] = []
    notes: list[str] = []
    out, _ = pairing.run_pairs({"env::A": (side, side)}, "benchmarks", {"env::A": ["a-0"]}, 13, {"env::A": 5},
                               "alternate", 0, Path(tmp_path / "log"), progress=lines.append,
                               deadline=clock[0] + 300.0, min_pairs=12, on_note=notes.append)
    assert len(out["env::A"]) == 12  # the deciding pairs ran; the margin pair did not
    [note] = notes
    assert note.startswith("at 60 s a round of pairs, the first 12 pairs (fewer decide nothing, so they run whatever "
                           "the time) end about 7.0 min past --max-minutes; 5 would fit")
    assert "--stages 1 --processes K" in note and sum(note in line for line in lines) == 1
    # when they fit, nothing is said
    assert pairing.overrun_note(60.0, 12, 0.0, 11 * 60.0) is None
    assert pairing.overrun_note(60.0, 12, 0.0, 11 * 60.0 - 1) is not None
    assert "; 1 would fit" in pairing.overrun_note(60.0, 12, 100.0, 50.0)  # past already: the round done counts


def test_the_pair_value_is_the_median_of_its_rounds_ratios():
    # a burst lands on base's 2nd and head's 4th window: the sides' medians differ, the rounds' ratios do not
    base = [10.0, 15.0, 10.0, 10.0, 10.0]
    head = [10.0, 10.0, 10.0, 15.0, 10.0]
    assert signedrank.log_ratio(base, head) == 0.0
    assert math.isclose(signedrank.log_ratio([10.0, 10.0], [11.0, 11.0, 11.0]), math.log(1.1))  # no rounds: medians
    rng = random.Random(4)
    assert abs(signedrank.log_ratio([rng.uniform(9, 11) for _ in range(5)], [12.0] * 5)) > 0


def test_a_cell_is_a_value_object():
    cell = PairedCell(key="k", env_name="env", benchmark="m.C.time_x", param_index=1, samples_per_process=5)
    assert cell.group == "env::m.C" and cell.worker_id == "m.C.time_x-1"


def test_both_workers_of_a_pair_are_asked_to_stop_before_either_is_waited_for(monkeypatch, tmp_path):
    # a worker that takes a second to exit once asked (a framework's teardown): the second worker must
    # already have its request while the first is still exiting, so the two exits overlap
    script = tmp_path / "slow_exit_worker.py"
    script.write_text(
        "import sys, time\n"
        "name = sys.argv[1].rsplit('/', 1)[-1]\n"
        "for line in sys.stdin:\n"
        "    if 'stop' in line:\n"
        "        open(sys.argv[1], 'a').write(f'asked {time.monotonic()}\\n')\n"
        "        time.sleep(1.0)\n"
        "        open(sys.argv[1], 'a').write(f'exited {time.monotonic()}\\n')\n"
        "        break\n")
    monkeypatch.setattr(pairing, "WORKER_SCRIPT", script)
    workers = []
    with open(tmp_path / "workers.log", "w") as log:
        for name in ("first", "second"):
            side = Side(commit=name, python=sys.executable, env=dict(os.environ))
            workers.append(pairing.Worker(side, str(tmp_path / name), log))
        pairing.stop_workers(workers)

    def times(name: str) -> dict[str, float]:
        return {k: float(v) for k, v in (line.split() for line in (tmp_path / name).read_text().splitlines())}

    first, second = times("first"), times("second")
    assert second["asked"] < first["exited"]
    assert all(w.proc.returncode is not None for w in workers)


def test_a_silent_step_still_prints_a_line_every_so_often_and_stops_when_it_ends():
    import threading
    import time

    from fitbench.processes.isolation import heartbeat

    lines: list[str] = []
    with heartbeat(lines.append, "preparing the builds", every_s=0.05):
        time.sleep(0.28)
    count = len(lines)
    time.sleep(0.15)
    assert 3 <= count == len(lines)  # nothing after the step ended
    assert lines[0].startswith("preparing the builds: ") and lines[0].endswith(" s so far")
    assert not any(t.name == "fitbench-heartbeat" for t in threading.enumerate())
    with heartbeat(None, "nothing to say to", every_s=0.01):
        time.sleep(0.05)


def test_a_worker_window_runs_the_benchmark_s_setup_once_so_a_fresh_model_is_built_once(tmp_path):
    # FirstStep builds a fresh model in setup and times its first step: the worker's own setup before each
    # window must be the only one (asv's timer would otherwise tear down and set up once more inside the run)
    import json
    import subprocess

    suite = tmp_path / "benchmarks"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    log = tmp_path / "setups.log"
    (suite / "bench_toy.py").write_text(
        "class Fresh:\n"
        "    number = 1\n"
        "    warmup_time = 0.0\n"
        "    repeat = 3\n"
        "    def setup(self):\n"
        f"        open({str(log)!r}, 'a').write('setup\\n')\n"
        "        self.stepped = False\n"
        "    def time_first(self):\n"
        "        assert not self.stepped, 'a model that already stepped'\n"
        "        self.stepped = True\n"
        f"        open({str(log)!r}, 'a').write('run\\n')\n")
    worker = Path(pairing.__file__).with_name("pair_worker.py")
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, str(worker), str(suite), str(write)], stdin=subprocess.PIPE,
                            pass_fds=(write,), text=True, cwd=tmp_path)
    os.close(write)
    answers = os.fdopen(read)
    requests = [{"setup": "bench_toy.Fresh.time_first"}] + [{"run": "bench_toy.Fresh.time_first"}] * 3
    replies = []
    for request in requests:
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        replies.append(json.loads(answers.readline()))
    proc.stdin.write(json.dumps({"stop": True}) + "\n")
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert all(r["ok"] for r in replies) and all(len(r["samples"]) == 1 for r in replies[1:])
    # the worker's setup, then one setup before each window: never two in a row
    assert log.read_text().split() == ["setup"] + ["setup", "run"] * 3


@pytest.mark.parametrize("cells", [1, 2])
def test_every_timed_window_of_an_alternate_pair_follows_its_own_process_s_window(tmp_path, cells):
    # after the other side's window a process finds the caches and its thread pools cold (measured a few per
    # cent slower): each side's turn (one window of every cell) starts with an untimed window of its own
    # whenever the other side ran last, once a round whatever the number of cells
    suite = tmp_path / "benchmarks"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    log = tmp_path / "runs.log"
    (suite / "bench_toy.py").write_text(
        "import os\n"
        "class Turns:\n"
        "    number = 1\n"
        "    warmup_time = 0.0\n"
        "    repeat = 5\n"
        "    params = [['a', 'b']]\n"
        "    def time_window(self, which):\n"
        f"        open({str(log)!r}, 'a').write(f'{{os.getpid()}} {{which}}\\n')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base, head = Side("b" * 40, sys.executable, env), Side("h" * 40, sys.executable, env)
    names = ["bench_toy.Turns.time_window-0", "bench_toy.Turns.time_window-1"][:cells]
    rounds = 5
    with open(tmp_path / "workers.log", "w") as worker_log:
        pair = pairing.measure_pair(base, head, str(suite), names, rounds, pairing.ALTERNATE, random.Random(3),
                                    worker_log, index=0, stage=1, timeout_s=60)
    assert pair.failed is None and not pair.errors
    assert all(len(pair.windows[c][side]) == rounds for c in pair.windows for side in ("base", "head"))
    runs = [tuple(line.split()) for line in log.read_text().splitlines()]
    # a warm-up for each side's first turn and one for every switch after: the leader alternates (A B B A ...)
    assert pair.warmups == rounds + 1
    assert len(runs) == 2 * cells * rounds + pair.warmups and len({pid for pid, _ in runs}) == 2
    # the stretches of one process: each starts with its warm-up, then that process's timed windows (never a
    # lone window after the other's), every cell in order once a turn
    stretches = [[which for _, which in group] for _, group in itertools.groupby(runs, key=lambda r: r[0])]
    assert len(stretches) == pair.warmups
    cell_order = ["a", "b"][:cells]
    lengths = [len(s) for s in stretches]
    assert lengths == [1 + cells] + [1 + 2 * cells] * (rounds - 1) + [1 + cells]
    assert all(s[0] == "a" and s[1:] == cell_order * ((len(s) - 1) // cells) for s in stretches)
    # and the warm-ups fall on both sides alike
    per_process = {pid: sum(1 for p, _ in runs if p == pid) for pid, _ in runs}
    assert sorted(per_process.values()) == [cells * rounds + pair.warmups // 2] * 2
