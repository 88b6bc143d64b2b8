"""`fitbench alert` end to end: a throw-away clone, planted commits, real asv runs on both commits.

Run alone with `pytest -m alert`. The first test builds the clone's asv virtualenv (TensorFlow from pip's
cache), the others reuse it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fitbench.alerts import Comparison, classify, exit_status, render_markdown

ROOT = Path(__file__).resolve().parents[1]
FIT_CELL = r"time_fit_10_steps\('functional', False, 'cpu', 32\)"
IDENTITY_TRACK = r"Determinism\.track_sequential_functional_identical"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=fitbench-test", "-c",
                           "user.email=fitbench-test@localhost", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def plant(repo: Path, branch: str, path: str, old: str, new: str, message: str) -> str:
    """A commit on its own branch from the base that replaces `old` by `new` in `path`."""
    git(repo, "checkout", "-q", "-B", branch, "base")
    file = repo / path
    text = file.read_text()
    assert old in text, f"the planted change no longer applies to {path}"
    file.write_text(text.replace(old, new, 1))
    git(repo, "commit", "-qam", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("alert") / "fitbench"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    git(repo, "branch", "-f", "base", "HEAD")
    plant(repo, "slow", "src/fitbench/timing.py",
          "dataset = tf.data.Dataset.from_tensors((x, y)).repeat()",
          "dataset = tf.data.Dataset.from_tensors((x, y)).repeat().map(  # planted: an extra pass per step\n"
          "                lambda a, b: (a + 1e-30 * tf.reduce_mean(tf.matmul(a, tf.ones((a.shape[-1], 2048)))), b))",
          "planted slowdown: an extra matmul pass over every batch")
    plant(repo, "docs", "README.md", "# fitbench\n", "# fitbench\n\nA documentation-only change.\n",
          "docs only")
    plant(repo, "nondeterministic", "src/fitbench/model.py",
          '        inputs = keras.Input(shape=(spec.input_dim,))\n',
          '        inputs = keras.Input(shape=(spec.input_dim,))\n'
          '        import random; random.random()  # planted: one extra draw shifts the initializer seeds\n',
          "planted determinism break: Functional starts from other weights")
    plant(repo, "broken", "src/fitbench/timing.py", "        timer = step_timer()\n",
          "        raise RuntimeError('planted failure')\n", "planted failure in the fit harness")
    git(repo, "checkout", "-q", "base")
    return repo


def run_alert(repo: Path, head: str, bench: str, out: Path,
              backend: str = "tensorflow") -> tuple[subprocess.CompletedProcess[str], dict]:
    result = subprocess.run([sys.executable, "-m", "fitbench", "alert", "base", head, "--repo", str(repo),
                             "--bench", bench, "--out", str(out), "--backend", backend],
                            capture_output=True, text=True, timeout=1800)
    report = json.loads((out / "alert.json").read_text()) if (out / "alert.json").exists() else {}
    return result, report


@pytest.mark.alert
def test_a_planted_slowdown_in_the_fit_path_is_a_regression_on_the_backend_it_touches(clone, tmp_path):
    # The slowdown is planted in the tf.data pipeline, which only the tensorflow backend feeds from:
    # the same cell on jax (another environment of asv's matrix) must come out unchanged.
    result, report = run_alert(clone, "slow", FIT_CELL, tmp_path / "out", backend="tensorflow,jax")
    assert result.returncode == 1, result.stdout + result.stderr + (tmp_path / "out" / "asv.log").read_text()
    assert report["backends"] == ["tensorflow", "jax"]
    by_backend = {c["backend"]: c for c in report["comparisons"]}
    assert sorted(by_backend) == ["jax", "tensorflow"] and len(report["comparisons"]) == 2
    worse = by_backend["tensorflow"]
    assert (worse["change"], worse["benchmark"], worse["params"]["api"]) == (
        "worse", "bench_fit.FitLoop.time_fit_10_steps", "'functional'")
    assert worse["ratio"] > 1.10 and worse["after"] > worse["before"]
    assert by_backend["jax"]["change"] != "worse" and by_backend["jax"]["before"] > 0
    markdown = (tmp_path / "out" / "alert.md").read_text()
    assert "### Regressions" in markdown and "bench_fit.FitLoop.time_fit_10_steps" in markdown
    assert "backend=tensorflow, api=functional, jit=False, device=cpu, batch_size=32" in markdown
    assert markdown.strip() in result.stdout  # the same Markdown on stdout, for a CI job summary


@pytest.mark.alert
def test_a_documentation_only_commit_raises_no_alert(clone, tmp_path):
    result, report = run_alert(clone, "docs", FIT_CELL, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["comparisons"] and not [c for c in report["comparisons"] if c["change"] in ("worse", "failed")]
    assert "### Regressions" not in (tmp_path / "out" / "alert.md").read_text()


@pytest.mark.alert
def test_a_planted_determinism_break_takes_the_identity_track_from_1_to_0(clone, tmp_path):
    result, report = run_alert(clone, "nondeterministic", IDENTITY_TRACK, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    [track] = report["comparisons"]
    assert (track["before"], track["after"], track["change"]) == (1, 0, "worse")
    assert "track_sequential_functional_identical" in (tmp_path / "out" / "alert.md").read_text()


@pytest.mark.alert
def test_a_benchmark_that_errors_is_listed_and_exits_2(clone, tmp_path):
    result, report = run_alert(clone, "broken", FIT_CELL + "|" + IDENTITY_TRACK, tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    by_change = {c["benchmark"]: c for c in report["comparisons"]}
    assert by_change["bench_fit.FitLoop.time_fit_10_steps"]["failed_on"] == ["head"]
    # what did run is still reported
    assert by_change["bench_determinism.Determinism.track_sequential_functional_identical"]["change"] == "unchanged"
    markdown = (tmp_path / "out" / "alert.md").read_text()
    assert "`bench_fit.FitLoop.time_fit_10_steps('functional', False, 'cpu', 32) [tensorflow]`: failed on head" in markdown
    assert "RuntimeError: planted failure" in markdown and report["asv_errors"] == ["RuntimeError: planted failure"]
    assert "benchmark failed on head: bench_fit.FitLoop.time_fit_10_steps" in result.stderr


def test_a_backend_outside_the_matrix_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fitbench", "alert", "HEAD", "HEAD", "--repo", str(ROOT),
                             "--backend", "mxnet", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr.strip().splitlines() == [
        "fitbench: error: --backend mxnet: not in asv.conf.json's KERAS_BACKEND matrix (tensorflow, jax, torch)"]


def test_every_backend_of_the_matrix_gets_its_own_asv_environment():
    from fitbench.alerts import backend_environments

    envs = backend_environments(str(ROOT), None)
    assert list(envs) == ["tensorflow", "jax", "torch"]  # asv.conf.json's KERAS_BACKEND axis, in its order
    assert len(set(envs.values())) == 3 and all(name.endswith(f"KERAS_BACKEND{b}") for b, name in envs.items())
    assert backend_environments(str(ROOT), ["jax"]) == {"jax": envs["jax"]}


# ---------- the deciding, without asv runs ----------

def _ss(samples):
    import statistics
    return ({"repeat": len(samples), "ci_99_a": min(samples), "ci_99_b": max(samples),
             "q_25": statistics.quantiles(samples)[0], "q_75": statistics.quantiles(samples)[2]}, samples)


def test_classify_uses_the_factor_and_mann_whitney_on_samples():
    fast, slow = [1.0 + i * 0.001 for i in range(10)], [1.5 + i * 0.001 for i in range(10)]
    change, ratio, sig = classify("bench_fit.FitLoop.time_fit_10_steps", "seconds", 1.005, 1.505, _ss(fast), _ss(slow), 1.1)
    assert change == "worse" and ratio == pytest.approx(1.505 / 1.005) and sig.startswith("Mann-Whitney U")
    # a 5 % change is inside the factor: unchanged
    assert classify("x.time_y", "seconds", 1.0, 1.05, None, None, 1.1)[0] == "unchanged"
    # overlapping samples: not significant even past the factor
    noisy_a, noisy_b = [1.0, 3.0] * 5, [1.2, 3.2] * 5
    assert classify("x.time_y", "seconds", 2.0, 2.3, _ss(noisy_a), _ss(noisy_b), 1.1)[0] == "unchanged"


def test_higher_is_better_metrics_are_read_the_right_way_round():
    assert classify("bench_fit.FitLoop.track_samples_per_second", "samples/s", 1000.0, 500.0, None, None, 1.1)[0] == "worse"
    assert classify("bench_fit.FitLoop.track_samples_per_second", "samples/s", 500.0, 1000.0, None, None, 1.1)[0] == "better"
    assert classify("b.D.track_sequential_functional_identical", "identical (1/0)", 1, 0, None, None, 1.1)[0] == "worse"
    assert classify("b.D.track_sequential_functional_max_ulp", "ULP", 0, 3, None, None, 1.1)[0] == "worse"
    assert classify("x.time_y", "seconds", None, 1.0, None, None, 1.1)[0] == "failed"
    assert classify("x.time_y", "seconds", float("nan"), 1.0, None, None, 1.1)[0] == "skipped"


def test_exit_status_and_markdown():
    rows = [Comparison("b.C.time_x", {"api": "'functional'"}, "seconds", 0.01, 0.02, "worse", 2.0, False, "p",
                       backend="jax"),
            Comparison("b.C.time_z", {}, "seconds", 0.01, 0.01, "unchanged", 1.0)]
    assert exit_status(rows) == 1
    assert exit_status(rows + [Comparison("b.C.time_y", {}, "seconds", 1.0, None, "failed", failed_on=["head"])]) == 2
    assert exit_status(rows[1:]) == 0
    from dataclasses import asdict
    md = render_markdown({"base": "a" * 40, "head": "b" * 40, "factor": 1.1, "bench": "x", "machine": "m",
                          "comparisons": [asdict(r) for r in rows]})
    assert "| `b.C.time_x` | backend=jax, api=functional | 10 ms | 20 ms | 2.00× | p |" in md
    assert "**1 regression(s)**" in md and "<details>" in md
