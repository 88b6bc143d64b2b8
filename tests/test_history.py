"""`fitbench history`: the detector on synthetic two-level samples, and the command on a toy asv history
(real asv runs, no framework): 8 documentation-only commits give no change point, a plant at the 5th commit of
a window exactly one, there, and three 4 % steps a drift."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fitbench import schema
from fitbench.regress.history import analyse_cell, change_points
from test_alert_stages import commit, toy_repo


def _series(levels: list[float], seed: int, processes: int = 6, spread: float = 0.03) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(np.log(level), spread, processes) for level in levels]


def test_change_points_on_synthetic_histories():
    assert change_points(_series([1.0] * 8, seed=1)) == []
    (point,) = change_points(_series([1.0] * 4 + [1.15] * 4, seed=2))
    assert point[0] == 4 and point[1] <= 0.01  # the first commit after the change, 0-based
    steps = _series([1.0, 1.0, 1.04, 1.04, 1.08, 1.08, 1.125, 1.125], seed=3)
    cell = analyse_cell("c", "seconds", [(str(i), list(g)) for i, g in enumerate(steps)], {}, 0.01, 0.05, 999)
    assert cell.drift.drifted and 1.08 < cell.drift.ratio < 1.14
    assert all(p.direction != "worse" or p.ratio >= 1.05 for p in cell.change_points)


def test_too_few_commits_are_not_searched():
    cell = analyse_cell("c", "seconds", [(str(i), list(g)) for i, g in enumerate(_series([1.0] * 3, seed=4))],
                        {}, 0.01, 0.05, 99)
    assert cell.drift is None and cell.change_points == [] and "at least 4" in cell.note


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """20 commits, measured by one interleaved asv run (4 processes each): c0..c7 documentation only, c8..c11
    30 % slower (a plant at c8), c12..c19 three more 4 % steps (c13, c15, c17)."""
    repo = tmp_path_factory.mktemp("history") / "toy"
    toy_repo(repo)
    scales = [1.0] * 8 + [1.3] * 4 + [1.3, 1.3 * 1.04, 1.3 * 1.04, 1.3 * 1.04**2, 1.3 * 1.04**2, 1.3 * 1.04**3,
                                      1.3 * 1.04**3, 1.3 * 1.04**3]
    commits = [commit(repo, f"c{i}" + (" the plant" if i == 8 else ""), scale=s) for i, s in enumerate(scales)]
    (repo / "commits.txt").write_text("\n".join(commits) + "\n")
    env = {**os.environ, "FITBENCH_PROCESSES": "4"}
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=repo, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "asv", "run", "--interleave-rounds", "--record-samples", "-b",
                    r"StepTime.*quiet", f"HASHFILE:{repo / 'commits.txt'}"], cwd=repo, env=env, check=True,
                   capture_output=True, timeout=900)
    return {"repo": repo, "commits": commits}


def history(stored: dict[str, object], since: int, until: int, out) -> tuple[subprocess.CompletedProcess, dict]:
    commits = stored["commits"]
    result = subprocess.run([sys.executable, "-m", "fitbench", "history", "--since", commits[since], "--until",
                             commits[until], "--bench", r"StepTime.*quiet", "--repo", str(stored["repo"]),
                             "--out", str(out)], capture_output=True, text=True, timeout=600)
    doc = json.loads((out / "history.json").read_text()) if (out / "history.json").exists() else {}
    return result, doc


@pytest.mark.alert
def test_history_finds_no_change_in_noop_commits_one_at_the_plant_and_drift_in_small_steps(stored, tmp_path):
    commits = stored["commits"]
    result, doc = history(stored, 0, 7, tmp_path / "aa")
    assert result.returncode == 0, result.stdout + result.stderr
    schema.validate(doc)
    (cell,) = doc["cells"]
    assert len(cell["commits"]) == 8 and cell["processes"] == [4] * 8
    assert cell["change_points"] == [] and not cell["drift"]["drifted"]

    result, doc = history(stored, 4, 11, tmp_path / "plant")
    assert result.returncode == 1, result.stdout + result.stderr
    (cell,) = doc["cells"]
    (point,) = cell["change_points"]
    assert point["commit"] == commits[8] and point["index"] == 4 and point["subject"] == "c8 the plant"
    assert point["direction"] == "worse" and 1.2 < point["ratio"] < 1.4 and point["ci_low"] > 1.15

    result, doc = history(stored, 12, 19, tmp_path / "drift")
    assert result.returncode == 1, result.stdout + result.stderr
    (cell,) = doc["cells"]
    assert cell["drift"]["drifted"] and 1.08 < cell["drift"]["ratio"] < 1.16
    assert "drifted towards worse" in result.stdout


@pytest.mark.alert
def test_a_since_off_the_history_is_one_line_and_nothing_is_written(stored, tmp_path):
    result, _ = history(stored, 10, 3, tmp_path / "report")
    assert result.returncode == 2 and "is not on" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()


def test_before_anything_is_stored_history_and_a_stored_alert_say_what_to_run_first(tmp_path):
    repo = toy_repo(tmp_path / "empty")
    first, second = commit(repo, "first"), commit(repo, "second")
    for argv in (["history", "--since", first, "--bench", "StepTime"],
                 ["alert", first, second, "--stored", "--bench", "StepTime"]):
        result = subprocess.run([sys.executable, "-m", "fitbench", *argv, "--repo", str(repo), "--out",
                                 str(tmp_path / argv[0])], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"fitbench: error: nothing is stored in {repo}/.asv/results yet (no benchmarks.json): run "
            "`fitbench alert BASE HEAD` or `asv run --record-samples` there first"]
        assert not (tmp_path / argv[0]).exists()


def test_a_reader_is_told_when_another_command_is_storing_results(tmp_path):
    from fitbench.regress import asvdata

    results = tmp_path / "results"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        results.mkdir()
        (results / asvdata.WRITING).write_text(f"{other.pid} fitbench bisect c1..c8 since 10:00:00")
        note = asvdata.writer(str(results))
        assert note.startswith(f"note: fitbench bisect c1..c8 since 10:00:00 (pid {other.pid}) is storing results")
    finally:
        other.kill()
        other.wait()
    assert asvdata.writer(str(results)) is None and not (results / asvdata.WRITING).exists()  # stale: removed
    with asvdata.writing(str(results), "fitbench alert a..b"):
        assert (results / asvdata.WRITING).read_text().startswith(f"{os.getpid()} fitbench alert a..b")
        assert asvdata.writer(str(results)) is None  # this process's own lock says nothing to itself
        with asvdata.writing(str(results), "fitbench alert c..d"):  # a bisect's alert inside the bisect
            pass
        assert (results / asvdata.WRITING).exists()
    assert not (results / asvdata.WRITING).exists()
