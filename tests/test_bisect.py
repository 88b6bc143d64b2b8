"""`fitbench bisect` on the toy asv suite of test_alert_stages (real asv runs, no framework, seconds per step):
the planted commit found with at most log2 steps, the evidence and the cost reported; bad input refused
before anything runs or is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fitbench import schema
from fitbench.regress.bisect import SAME, UNKNOWN, CellEvidence, step_answer, watched_bench
from test_alert_stages import commit, toy_repo

QUIET = r"StepTime\.time_step\('quiet'\)"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """base, two documentation-only commits, the plant (30 % slower from there on), two more."""
    repo = tmp_path_factory.mktemp("bisect") / "toy"
    toy_repo(repo, phases=True)
    commits = {"base": commit(repo, "base"), "d1": commit(repo, "docs 1"), "d2": commit(repo, "docs 2"),
               "slow": commit(repo, "the plant: 30 % slower", scale=1.3),
               "d3": commit(repo, "docs 3", scale=1.3), "d4": commit(repo, "docs 4", scale=1.3)}
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=repo, check=True, capture_output=True)
    return {"repo": repo, **commits}


def bisect(history: dict[str, object], good: str, bad: str, out: Path, *args: str
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fitbench", "bisect", str(history.get(good, good)),
                           str(history.get(bad, bad)), "--repo", str(history["repo"]), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=900, env={**os.environ})


@pytest.mark.alert
def test_bisect_names_the_planted_commit_with_its_evidence_and_cost(history, tmp_path):
    out = tmp_path / "report"
    result = bisect(history, "base", "d4", out, "--bench", QUIET, "--processes", "10", "--order-seed", "1",
                    "--json", str(tmp_path / "copy.json"))
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    doc = json.loads((out / "bisect.json").read_text())
    schema.validate(doc)
    assert json.loads((tmp_path / "copy.json").read_text()) == doc  # --json: the same document
    assert doc["culprit"] == history["slow"] and doc["culprit_subject"] == "the plant: 30 % slower"
    assert doc["watched"] == ["bench_toy.StepTime.time_step('quiet') [tensorflow]"]
    # 5 commits after GOOD: BAD, then the middle (docs 2: same), then the plant (worse): log2 steps
    assert [s["commit"] for s in doc["steps"]] == [history["d4"], history["d2"], history["slow"]]
    assert [s["answer"] for s in doc["steps"]] == ["worse", "same", "worse"]
    assert doc["commits_measured"] == 2 <= 4
    (evidence,) = doc["culprit_evidence"]
    assert evidence["change"] == "worse" and 1.15 < evidence["ratio"] < 1.45 and evidence["ci_low"] > 1.05
    assert result.stdout.startswith(f"**culprit: {history['slow'][:10]}**")
    assert "Cost: 3 step(s), 2 commit(s) measured besides GOOD and BAD" in result.stdout
    for step in doc["steps"]:  # every step's own alert report is kept
        assert (out / step["report"]).exists()
    # where it grew, asked once the search is over (the steps do without): StepPhases of GOOD against the
    # culprit, the metrics phase first, where the plant put its extra 3 ms
    [where] = doc["localized"]
    assert where["cell"] == evidence["cell"] and where["pairs"] >= 9 and where["grew"][0] == "metrics", where
    assert f"### Where it grew: `{evidence['cell']}`" in (out / "bisect.md").read_text()
    assert "where it grew: 10 pairs of StepPhases" in result.stderr


@pytest.mark.alert
@pytest.mark.parametrize("good, bad, fragment", [
    ("d4", "base", "is not on BAD's first-parent history"),
    ("d3", "d4", "holds one commit"),
    ("base", "base", "the same commit"),
    ("base", "nosuchrev", "unknown commit 'nosuchrev'"),
])
def test_bad_ranges_are_one_line_and_nothing_is_written(history, tmp_path, good, bad, fragment):
    result = bisect(history, good, bad, tmp_path / "report", "--bench", QUIET)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (tmp_path / "report").exists()


@pytest.mark.alert
def test_a_regex_that_selects_nothing_is_refused_before_any_run(history, tmp_path):
    result = bisect(history, "base", "d4", tmp_path / "report", "--bench", "NoSuchBenchmark")
    assert result.returncode == 2 and "selects no benchmark" in result.stderr
    assert not (tmp_path / "report").exists()


def test_a_step_is_same_only_when_every_watched_cell_is_decided_and_none_worse():
    def cell(change: str) -> CellEvidence:
        return CellEvidence(cell="c", change=change, ratio=1.0, ci_low=0.9, ci_high=1.1, stage=1, processes=[4, 4])

    assert step_answer([cell("equivalent"), cell("better")]) == SAME
    assert step_answer([cell("equivalent"), cell("inconclusive")]) == UNKNOWN  # never "same" when noisy
    assert step_answer([cell("inconclusive"), cell("worse")]) == "worse"
    assert step_answer([cell("failed"), cell("equivalent")]) == "failed"
    assert step_answer([]) == "failed"


def test_a_step_nearer_bad_than_good_is_worse_even_when_equivalent_within_the_threshold():
    # 2026-12-04, fitbench's own suite: BAD 1.073x GOOD; the planted commit 1.045x [1.023, 1.069] was
    # "equivalent" within +-10 % (under the 5 % --min-change), so the plain rule called it same and named the
    # documentation-only commit after it. Nearer BAD than GOOD (log scale) and significantly off GOOD: worse.
    def cell(change: str, ratio: float, low: float, high: float, name: str = "c") -> CellEvidence:
        return CellEvidence(cell=name, change=change, ratio=ratio, ci_low=low, ci_high=high, stage=1,
                            processes=[12, 12])

    at_bad = {"c": 1.073}
    assert step_answer([cell("equivalent", 1.045, 1.023, 1.069)], at_bad) == "worse"  # the plant
    assert step_answer([cell("equivalent", 1.045, 1.023, 1.069)]) == SAME  # the rule that misnamed it
    assert step_answer([cell("equivalent", 1.015, 1.002, 1.044)], at_bad) == SAME  # a documentation-only commit
    # nearer BAD, but its interval reaches GOOD: neither same nor worse
    assert step_answer([cell("equivalent", 1.045, 0.990, 1.100)], at_bad) == UNKNOWN
    assert step_answer([cell("worse", 1.2, 1.1, 1.3)], at_bad) == "worse"
    # a throughput (higher is better) that fell to 0.9x at BAD: 0.93x [0.91, 0.95] is nearer BAD, and off GOOD
    assert step_answer([cell("equivalent", 0.93, 0.91, 0.95, "t")], {"t": 0.9}) == "worse"
    assert step_answer([cell("equivalent", 0.98, 0.96, 0.995, "t")], {"t": 0.9}) == SAME
    # the report says where each candidate sits, and the culprit's evidence is the cell that made it worse
    from fitbench.regress.bisect import cell_answer, place_between

    plant = cell("equivalent", 1.045, 1.023, 1.069)
    place_between([plant], at_bad)
    assert plant.of_bad == pytest.approx(0.625, abs=0.001) and cell_answer(plant, at_bad) == "worse"
    bench, backends = watched_bench(["m.S.t(256) [jax]", "m.S.t(32) [tensorflow]", "m.S.t(256) [torch]"])
    assert bench == r"^(m\.S\.t\(256\)|m\.S\.t\(32\))$" and backends == ("jax", "tensorflow", "torch")


def test_where_the_culprit_grew_is_a_remark_when_it_fails_and_the_culprit_stands(monkeypatch, tmp_path):
    from fitbench.regress import bisect as bisecting

    def fails(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(bisecting.pairedalert, "where_it_grew_between", fails)
    evidence = [CellEvidence(cell="m.StepTime.time_step(256) [jax]", change="worse", ratio=1.2, ci_low=1.1,
                             ci_high=1.3, stage=1, processes=[12, 12])]
    localized, remarks = bisecting.where_culprit_grew("repo", "g" * 40, "c" * 40, evidence, {"stages": []},
                                                      bisecting.AlertOptions(), tmp_path, lambda line: None)
    assert localized is None and remarks == ["where it grew: not measured, it failed: OSError: no space left on "
                                             "device"]


def test_a_bisection_s_steps_do_not_ask_where_it_grew(monkeypatch, tmp_path):
    # where a regression grew costs minutes an alert: one alert's question, not every step's
    from fitbench.regress import bisect as bisecting

    asked = []

    def alert(repo, good, head, out, settings, request, progress):
        asked.append(request)
        return 0, {"comparisons": []}  # the range holds no regression: one step

    monkeypatch.setattr(bisecting, "alert", alert)
    monkeypatch.setattr(bisecting.asvdata, "require_asv", lambda: None)
    monkeypatch.setattr(bisecting.asvdata, "repo_root", lambda repo: repo)
    monkeypatch.setattr(bisecting.asvdata, "resolve_commit", lambda repo, rev: rev * 40)
    monkeypatch.setattr(bisecting.asvdata, "select_benchmarks", lambda repo, bench: None)
    monkeypatch.setattr(bisecting.asvdata, "git", lambda repo, *args: "a subject")
    monkeypatch.setattr(bisecting, "first_parent_range", lambda repo, good, bad: ["c" * 40, bad])
    doc = bisecting.bisect("repo", "a", "b", str(tmp_path / "out"))
    assert doc.note.startswith("BAD is not worse") and [r.localize for r in asked] == [False]


def test_a_bisection_names_the_commit_nearer_bad_and_asks_where_it_grew_with_that_cell(monkeypatch, tmp_path):
    # the real bisection's numbers (2026-12-04): BAD 1.073x, the plant 1.045x "equivalent", a documentation-only
    # commit before it 1.015x: the culprit is the plant, its evidence the equivalent cell nearer BAD, and where
    # it grew is asked once, of GOOD against it, with that cell and its ratio
    from fitbench.regress import bisect as bisecting

    # jax made worse by the plant too, by more: both cells go to where it grew with their ratios, which it
    # orders by (the largest change first: tests/test_breakdown.py)
    docs, plant, bad = "d" * 40, "p" * 40, "b" * 40
    ratios = {docs: {"tensorflow": ("equivalent", 1.015, 1.002, 1.044), "jax": ("equivalent", 1.01, 0.99, 1.03)},
              plant: {"tensorflow": ("equivalent", 1.045, 1.023, 1.069), "jax": ("worse", 1.2, 1.1, 1.3)},
              bad: {"tensorflow": ("worse", 1.073, 1.060, 1.092), "jax": ("worse", 1.25, 1.15, 1.35)}}

    def alert(repo, good, head, out, settings, request, progress):
        rows = [{"benchmark": "bench_fit.StepTime.time_step", "params": {"batch_size": "256"}, "backend": backend,
                 "change": change, "ratio": ratio, "ci_low": low, "ci_high": high, "stage": 1, "processes_base": 12,
                 "processes_head": 12} for backend, (change, ratio, low, high) in ratios[head].items()]
        status = 1 if any(r["change"] == "worse" for r in rows) else 0
        return status, {"comparisons": rows, "stages": [], "order_seed": 3}

    asked = []

    def where(repo, good, culprit, worse_keys, per_pair, max_minutes, seed, out, progress, ratios=None):
        asked.append((good, culprit, worse_keys, ratios))
        return [], ["where it grew: recorded"]

    monkeypatch.setattr(bisecting, "alert", alert)
    monkeypatch.setattr(bisecting.pairedalert, "where_it_grew_between", where)
    monkeypatch.setattr(bisecting.asvdata, "require_asv", lambda: None)
    monkeypatch.setattr(bisecting.asvdata, "repo_root", lambda repo: repo)
    monkeypatch.setattr(bisecting.asvdata, "resolve_commit", lambda repo, rev: rev * 40)
    monkeypatch.setattr(bisecting.asvdata, "select_benchmarks", lambda repo, bench: None)
    monkeypatch.setattr(bisecting.asvdata, "git", lambda repo, *args: "a subject")
    monkeypatch.setattr(bisecting, "first_parent_range", lambda repo, good, bad_: [docs, plant, bad])
    doc = bisecting.bisect("repo", "g", "b", str(tmp_path / "out"))
    cell, jax = "bench_fit.StepTime.time_step(256) [tensorflow]", "bench_fit.StepTime.time_step(256) [jax]"
    assert doc.culprit == plant and doc.exit_status == 1
    assert [(s.commit, s.answer) for s in doc.steps] == [(bad, "worse"), (docs, "same"), (plant, "worse")]
    evidence = {c.cell: c for c in doc.culprit_evidence}
    assert evidence[cell].change == "equivalent" and evidence[cell].of_bad == pytest.approx(0.625, abs=0.001)
    assert [c.cell for c in doc.culprit_evidence] == [cell, jax]  # as the step's rows came
    assert asked == [("g" * 40, plant, [cell, jax], {cell: (1.045, 1.023), jax: (1.2, 1.1)})]
    assert doc.localize_remarks == ["where it grew: recorded"]
    from fitbench import schema

    schema.validate(json.loads((tmp_path / "out" / "bisect.json").read_text()))  # schema 4: every cell's of_bad

    # interrupted while it measures where the culprit grew: bisect.json and the --json copy keep the answer
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bisecting.pairedalert, "where_it_grew_between", interrupted)
    copy = tmp_path / "copy.json"
    with pytest.raises(KeyboardInterrupt):
        bisecting.bisect("repo", "g", "b", str(tmp_path / "again"), copies=(str(copy),))
    for kept in (copy, tmp_path / "again" / "bisect.json"):
        assert json.loads(kept.read_text())["culprit"] == plant
