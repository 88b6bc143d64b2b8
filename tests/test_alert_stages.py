"""`fitbench alert` end to end on a toy asv suite without a framework: real asv runs, real stored results,
in seconds, to check what the statistics tests cannot: the second stage (asv appending samples to the
first stage's), grouping by the layout a stored run recorded (results stored under another profile), a
legacy result refused with one line, a failed round reported, and a matrix with a KERAS_BACKEND axis (a row
per backend, a slowdown found only where it is planted).

The toy's "step" busy-waits a level drawn once per process (the between-process spread) times the commit's
`scale` from toy.json, which the benchmark reads from the commit asv is measuring (ASV_COMMIT): no package
is built or installed, so each asv process starts in a fraction of a second. Run alone with `pytest -m alert`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fitbench import schema

BENCH = r'''"""A toy process-level benchmark: fitbench's StepTime layout, no framework."""
import json
import math
import os
import random
import subprocess
import time

REPEAT = int(os.environ.get("TOY_REPEAT", "3"))
LAYOUT = os.environ.get("TOY_NO_LAYOUT") != "1"


def config():
    text = subprocess.run(["git", "-C", os.environ["ASV_CONF_DIR"], "show", os.environ["ASV_COMMIT"] + ":toy.json"],
                          capture_output=True, text=True, check=True).stdout
    return json.loads(text)


class StepTime:
    params = [["quiet", "noisy"]]
    param_names = ["kind"]
    number = 1
    repeat = REPEAT
    warmup_time = 0.0
    rounds = int(os.environ.get("FITBENCH_PROCESSES", "2"))
    version = f"toy StepTime; samples-per-process={REPEAT}" if LAYOUT else "toy StepTime"

    def setup(self, kind):
        cfg = config()
        state = os.environ.get("TOY_STATE")
        if state and cfg.get("fail_process"):  # the n-th process of this commit and kind fails
            marker = os.path.join(state, f"{os.environ['ASV_COMMIT'][:10]}-{kind}")
            count = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
            open(marker, "w").write(str(count))
            if count == cfg["fail_process"]:
                raise RuntimeError("planted failure in one process")
        if cfg.get("broken") == kind:  # a benchmark that errors in every process of this commit
            raise RuntimeError("planted failure in the benchmark")
        # a commit's scale applies on every backend, or only on the one its toy.json names
        scale = cfg["scale"] if cfg.get("only_on") in (None, os.environ.get("KERAS_BACKEND")) else 1.0
        self.seconds = 0.02 * scale * LEVEL[kind]  # 20 ms: far above a scheduler tick under load

    def time_step(self, kind):
        end = time.perf_counter() + self.seconds * random.uniform(0.99, 1.01)
        while time.perf_counter() < end:
            pass


LEVEL = {"quiet": math.exp(random.gauss(0, 0.01)), "noisy": math.exp(random.gauss(0, 0.25))}
'''


PHASES_BENCH = r'''"""A toy StepPhases: fitbench's configurations of a step, each a busy-wait; a slower commit's
extra time is in the metrics (the two fit configurations that keep them): "where it grew" should name them."""
import os
import random
import time

from .bench_toy import REPEAT, config

MS = {"forward": 2, "forward_loss": 3, "gradients": 6, "custom_step": 8, "fit_no_metrics": 10, "fit": 12,
      "fit_progress": 13}


class StepPhases:
    params = [list(MS), ["quiet", "noisy"]]
    param_names = ["configuration", "kind"]
    number = 1
    repeat = REPEAT
    warmup_time = 0.0
    rounds = 1
    version = f"toy StepPhases; samples-per-process={REPEAT}"

    def setup(self, configuration, kind):
        cfg = config()
        slower = cfg.get("only_on") in (None, os.environ.get("KERAS_BACKEND"))
        extra = 10 * (cfg["scale"] - 1) if slower and configuration in ("fit", "fit_progress") else 0.0
        self.seconds = (MS[configuration] + extra) / 1000

    def time_configuration(self, configuration, kind):
        end = time.perf_counter() + self.seconds * random.uniform(0.99, 1.01)
        while time.perf_counter() < end:
            pass
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=fitbench-test", "-c",
                           "user.email=fitbench-test@localhost", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str, **config: object) -> str:
    (repo / "toy.json").write_text(json.dumps({"scale": 1.0, **config}))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message, "--allow-empty")
    return git(repo, "rev-parse", "HEAD")


def toy_repo(repo: Path, backends: tuple[str, ...] = (), phases: bool = False) -> Path:
    """A git repository holding the toy suite and an asv.conf.json that installs nothing (no package is built:
    each asv process starts in a fraction of a second), with a KERAS_BACKEND axis when `backends`, and the
    toy StepPhases when `phases`; no commit yet."""
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "bench_toy.py").write_text(BENCH)
    if phases:
        (repo / "benchmarks" / "bench_phases.py").write_text(PHASES_BENCH)
    (repo / "asv.conf.json").write_text(json.dumps({
        "version": 1, "project": "toy", "repo": ".", "branches": ["main"], "environment_type": "virtualenv",
        "pythons": [f"{sys.version_info.major}.{sys.version_info.minor}"], "build_command": [],
        "install_command": ["in-dir={env_dir} python -c pass"], "uninstall_command": [],
        "benchmark_dir": "benchmarks", "env_dir": ".asv/env", "results_dir": ".asv/results",
        "html_dir": ".asv/html", "launch_method": "spawn",
        **({"matrix": {"env_nobuild": {"KERAS_BACKEND": list(backends)}}} if backends else {})}))
    git(repo, "init", "-q", "-b", "main")
    return repo


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    repo = tmp_path_factory.mktemp("stages") / "toy"
    toy_repo(repo)
    commits = {"base": commit(repo, "base"), "docs": commit(repo, "a documentation-only commit"),
               "slow": commit(repo, "30 % slower", scale=1.3),
               "flaky": commit(repo, "one process fails", fail_process=2),
               "broken": commit(repo, "the noisy benchmark raises", broken="noisy")}
    state = tmp_path_factory.mktemp("toy-state")
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=repo, check=True, capture_output=True)
    return {"repo": repo, "state": state, **commits}


def alert(toy: dict[str, object], base: str, head: str, out: Path, *args: str,
          env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict]:
    environment = {**os.environ, "TOY_STATE": str(toy["state"]), **(env or {})}
    result = subprocess.run([sys.executable, "-m", "fitbench", "alert", str(toy[base]), str(toy[head]), "--repo",
                             str(toy["repo"]), "--bench", "StepTime", "--out", str(out), "--order-seed", "1", *args],
                            capture_output=True, text=True, timeout=900, env=environment)
    report = json.loads((out / "alert.json").read_text()) if (out / "alert.json").exists() else {}
    return result, report


@pytest.mark.alert
def test_the_second_stage_appends_processes_and_decides_what_the_first_could_not(toy, tmp_path):
    # 4 + 4 processes cannot reach the first stage's level (2/70 > 0.005 / 2 cells): every cell goes on
    result, report = alert(toy, "base", "slow", tmp_path / "ab", "--processes", "4", "--design", "unpaired")
    assert result.returncode == 1, result.stdout + result.stderr
    schema.validate(report)
    assert [s["stage"] for s in report["stages"]] == [1, 2] and report["processes_planned"] == [4, 4]
    by_kind = {c["params"]["kind"]: c for c in report["comparisons"]}
    quiet = by_kind["'quiet'"]
    assert quiet["change"] == "worse" and quiet["stage"] == 2 and quiet["second_stage"] == "ran"
    assert quiet["stage_processes"] == [[4, 4], [4, 4]] and quiet["processes_base"] == 8
    assert quiet["processes_requested"] == 8 and 1.2 < quiet["ratio"] < 1.4 and quiet["ci_low"] > 1.1
    assert "stratified by stage" in quiet["method"]
    assert report["verdict"] == "regression" and report["stages"][1]["first_commit"].keys() == {"tensorflow"}
    assert "**regression**" in (tmp_path / "ab" / "alert.md").read_text().splitlines()[0]
    assert "stage 2: asv, 4 processes per commit" in result.stderr


@pytest.mark.alert
def test_a_paired_aa_alert_never_exits_1_and_the_stored_pairs_decide_the_same(toy, tmp_path):
    # the default design: pairs of warm workers, one per commit, taking turns window by window
    result, report = alert(toy, "base", "docs", tmp_path / "aa", "--processes", "8")
    assert result.returncode in (0, 3), result.stdout + result.stderr
    schema.validate(report)
    assert report["design"] == "alternate" and report["stages"][0]["design"] == "alternate"
    rows = {c["params"]["kind"]: c for c in report["comparisons"]}
    quiet = rows["'quiet'"]
    # 1 % noise: equivalent, by the first stage on a quiet machine, by the second when load widened the first
    stages = len(report["stages"])
    assert quiet["change"] == "equivalent" and quiet["design"] == "alternate" and quiet["pairs"] == 8 * quiet["stage"]
    assert quiet["pair_cv"] is not None and quiet["between_process_cv"] is not None
    assert "exact signed-rank on the per-pair ratios" in quiet["method"]
    assert "stage 1: pair 8/8 on tensorflow: " in result.stderr  # a line per pair, with its time
    if rows["'noisy'"]["change"] == "inconclusive":  # 25 % between processes: usually too noisy
        assert result.returncode == 3 and "**undecided**" in result.stdout.splitlines()[0]
        assert "fitbench: undecided: 1 cell(s) could not be decided" in result.stderr
    # every pair was kept as it ended, and asv holds them as processes (asv publish and history read them)
    pairs_run = len((tmp_path / "aa" / "pairs.jsonl").read_text().splitlines())
    assert pairs_run == 8 * stages or (stages == 2 and 8 < pairs_run < 16)  # stage 2: the undecided cells' pairs
    from fitbench.regress import asvdata

    stored_cells = asvdata.read_results(str(toy["repo"]), [toy["base"], toy["docs"]], "StepTime")
    quiet_stored = next(c for key, c in stored_cells[toy["docs"]].items() if "quiet" in str(key))
    assert len(quiet_stored.samples) == quiet["pairs"] * 3  # its pairs' processes, 3 windows each
    # the same pairs, decided again without a run, to the same ratios; --undecided-ok turns 3 into 0
    again, stored = alert(toy, "base", "docs", tmp_path / "stored", "--stored", "--undecided-ok")
    assert again.returncode == 0 and stored["stages"] == [] and stored["design"] == "stored"
    for c in stored["comparisons"]:
        live = rows[c["params"]["kind"]]
        assert (c["design"], c["pairs"], c["ratio"], c["p_value"]) == ("alternate", live["pairs"], live["ratio"],
                                                                         live["p_value"])


@pytest.mark.alert
def test_two_runners_combine_into_one_decision_stratified_by_runner(toy, tmp_path):
    # two runs stored under two machine names stand in for two CI runners
    for runner in ("runner-1", "runner-2"):
        result, report = alert(toy, "base", "slow", tmp_path / runner, "--machine", runner, "--stages", "1",
                               "--processes", "11")
        assert result.returncode == 1 and report["runners"] == [runner], result.stderr
        # a runner's share: where it grew is not measured there (its report is not the one read), and it says so
        assert not report.get("localized")
        assert any(r.startswith("where it grew: not measured on a runner's share") for r in report["remarks"])
    results = Path(toy["repo"]) / ".asv" / "results"
    folders = []
    for runner in ("runner-1", "runner-2"):  # what each CI runner uploads: its machine's folder, benchmarks.json
        folder = tmp_path / f"uploaded-{runner}"
        shutil.copytree(results / runner, folder / runner)
        shutil.copy(results / "benchmarks.json", folder)
        folders += ["--results", str(folder)]
    two, combined = alert(toy, "base", "slow", tmp_path / "two", "--stored", *folders)
    one, together = alert(toy, "base", "slow", tmp_path / "one", "--stored", "--machine", "runner-1,runner-2")
    assert two.returncode == one.returncode == 1, two.stderr + one.stderr
    schema.validate(combined)
    assert combined["runners"] == together["runners"] == ["runner-1", "runner-2"]
    for a, b in zip(combined["comparisons"], together["comparisons"]):
        assert (a["change"], a["ratio"], a["ci_low"], a["p_value"], a["runners"]) == \
            (b["change"], b["ratio"], b["ci_low"], b["p_value"], b["runners"])
    quiet = {c["params"]["kind"]: c for c in combined["comparisons"]}["'quiet'"]
    assert quiet["change"] == "worse" and quiet["runners"] == {"runner-1": 11, "runner-2": 11}
    assert "stratified by runner" in quiet["method"] and quiet["pairs"] == 22


@pytest.mark.alert
def test_stored_results_are_cut_by_their_own_layout_or_refused(toy, tmp_path):
    repo = toy["repo"]
    # Today's suite says 5 samples per process (a run of another commit under that profile rewrites
    # benchmarks.json); the base and slow results above were stored with 3: still 8 processes each.
    env = {**os.environ, "TOY_REPEAT": "5", "FITBENCH_PROCESSES": "2"}
    subprocess.run([sys.executable, "-m", "asv", "run", "--record-samples", "-b", "StepTime", f"{toy['docs']}^!"],
                   cwd=repo, env=env, check=True, capture_output=True, timeout=600)
    result, report = alert(toy, "base", "slow", tmp_path / "stored", "--stored")
    assert result.returncode == 1, result.stderr
    by_kind = {c["params"]["kind"]: c for c in report["comparisons"]}
    assert (by_kind["'quiet'"]["processes_base"], by_kind["'quiet'"]["processes_head"]) == (8, 8)
    assert all(c["method"] != "samples do not split into processes" for c in report["comparisons"])
    # a result stored by a suite that did not record its layout, read by one that does: one line, exit 2
    env = {**env, "TOY_NO_LAYOUT": "1"}
    subprocess.run([sys.executable, "-m", "asv", "run", "--record-samples", "-b", "StepTime", f"{toy['docs']}^!"],
                   cwd=repo, env=env, check=True, capture_output=True, timeout=600)
    env.pop("TOY_NO_LAYOUT")
    subprocess.run([sys.executable, "-m", "asv", "run", "--record-samples", "-b", "StepTime", f"{toy['base']}^!"],
                   cwd=repo, env=env, check=True, capture_output=True, timeout=600)
    result, report = alert(toy, "base", "docs", tmp_path / "legacy", "--stored")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "does not record how many samples each process gave" in result.stderr
    assert not (tmp_path / "legacy" / "alert.json").exists()


@pytest.mark.alert
def test_a_failed_round_is_reported_with_the_processes_that_came_back(toy, tmp_path):
    result, report = alert(toy, "base", "flaky", tmp_path / "flaky", "--processes", "6", "--stages", "1",
                           "--design", "unpaired")
    assert result.returncode in (0, 3), result.stdout + result.stderr  # never "found", never a crash
    for c in report["comparisons"]:
        assert c["processes_head"] < 6 and c["processes_base"] == 6
        assert c["processes_missing"] == [0, 6 - c["processes_head"]]
        assert c["note"].startswith("processes missing (head ") and "a round failed" in c["note"]
    # asv itself says nothing of a failed middle round: the report is the only place it shows
    assert "planted failure" not in (tmp_path / "flaky" / "asv.log").read_text()


@pytest.mark.alert
def test_a_benchmark_that_errors_is_listed_and_exits_2(toy, tmp_path):
    result, report = alert(toy, "base", "broken", tmp_path / "broken", "--processes", "6", "--stages", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    by_kind = {c["params"]["kind"]: c for c in report["comparisons"]}
    assert by_kind["'noisy'"]["change"] == "failed" and by_kind["'noisy'"]["failed_on"] == ["head"]
    assert by_kind["'quiet'"]["change"] != "failed" and by_kind["'quiet'"]["before"] > 0  # what ran is reported
    assert report["asv_errors"] == ["RuntimeError: planted failure in the benchmark"]
    markdown = (tmp_path / "broken" / "alert.md").read_text()
    assert "failed on head" in markdown and "RuntimeError: planted failure in the benchmark" in markdown
    assert "benchmark failed on head: bench_toy.StepTime.time_step" in result.stderr
    schema.validate(report)  # exit status 2 is in the alert's schema


@pytest.mark.alert
def test_a_pair_whose_worker_fails_is_dropped_on_both_sides_and_counted(toy, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    result, report = alert(toy, "base", "flaky", tmp_path / "flaky", "--processes", "7", "--stages", "1",
                           env={"TOY_STATE": str(state)})
    assert result.returncode in (0, 3), result.stdout + result.stderr  # never "found", never a crash
    for c in report["comparisons"]:  # the second head process of each cell failed in its setup
        assert c["pairs"] == 6 and c["processes_missing"] == [1, 1], c
        assert "1 pair(s) failed and were dropped" in c["note"] and "planted failure in one process" in c["note"]


@pytest.mark.alert
def test_a_slowdown_on_one_backend_is_worse_there_and_not_on_the_other(tmp_path):
    # asv's matrix with a KERAS_BACKEND axis: an environment per backend, a pair of workers per backend, a row
    # per backend in the report; the commit is slower only where KERAS_BACKEND=tensorflow. 10 pairs: 9 are the
    # fewest whose exact test can reach alpha=0.01 over two cells. Its StepPhases then says where: the metrics
    repo = toy_repo(tmp_path / "toy", backends=("tensorflow", "jax"), phases=True)
    base = commit(repo, "base")
    head = commit(repo, "30 % slower on tensorflow", scale=1.3, only_on="tensorflow")
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=repo, check=True, capture_output=True)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "fitbench", "alert", base, head, "--repo", str(repo), "--bench",
                             r"StepTime.*quiet", "--backend", "tensorflow,jax", "--processes", "10", "--stages", "1",
                             "--order-seed", "1", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((out / "alert.json").read_text())
    schema.validate(report)
    assert report["backends"] == ["tensorflow", "jax"] and report["design"] == "alternate"
    rows = {c["backend"]: c for c in report["comparisons"]}
    assert sorted(rows) == ["jax", "tensorflow"]
    assert rows["tensorflow"]["change"] == "worse" and 1.2 < rows["tensorflow"]["ratio"] < 1.4
    assert rows["jax"]["change"] in ("equivalent", "inconclusive") and rows["jax"]["pairs"] == 10
    markdown = (out / "alert.md").read_text()
    assert "backend=tensorflow" in markdown and "backend=jax" in markdown
    # where it grew: only the worse cell, in pairs of StepPhases at its parameters; the metrics phase first, by
    # about the 3 ms planted there (another phase may show above zero by chance: 5 % of alerts at most)
    [where] = report["localized"]
    assert where["cell"] == "bench_toy.StepTime.time_step('quiet') [tensorflow]" and where["params"] == "'quiet'"
    assert where["pairs"] >= 9 and where["grew"][0] == "metrics", where
    metrics = {p["name"]: p for p in where["phases"]}["metrics"]
    assert metrics["low_ms"] < 3.0 < metrics["high_ms"] and 2.0 < metrics["change_ms"] < 4.0, metrics
    assert "### Where it grew: `" in markdown and "Grew: **metrics" in markdown
    assert "cannot place it" not in where["note"]  # its cut saw most of the change (localize.unseen_change)
    assert "where it grew: 10 pairs of StepPhases" in result.stderr
