"""`fitbench alert` end to end: a throw-away clone, planted commits, real asv runs on both commits.

Run alone with `pytest -m alert`. The test builds the clone's asv virtualenv (TensorFlow from pip's cache).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fitbench import schema

ROOT = Path(__file__).resolve().parents[1]
STEP_CELL = r"StepTime\.time_step\(32\)"
PROCESSES = "9"  # pairs: one more than the fewest (8) with which the exact test can reach alpha=0.01 (one timed cell)
IDENTITY_TRACK = r"Determinism\.track_sequential_functional_identical"
TRACE_TRACK = r"Traces\.track_step_traces\('functional', True\)"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=fitbench-test", "-c",
                           "user.email=fitbench-test@localhost", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def plant(repo: Path, branch: str, path: str, old: str, new: str, message: str, start: str = "base") -> str:
    """A commit on its own branch from `start` that replaces `old` by `new` in `path`."""
    git(repo, "checkout", "-q", "-B", branch, start)
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
    plant(repo, "slow", "src/fitbench/measure/harness.py",
          "tuple(tuple(v) if isinstance(v, list) else v for v in (x, y))).repeat()",
          "tuple(tuple(v) if isinstance(v, list) else v for v in (x, y))).repeat().map(  # planted: an extra pass\n"
          "                lambda a, b: (a + 1e-30 * tf.reduce_mean(tf.matmul(a, tf.ones((a.shape[-1], 2048)))), b))",
          "planted slowdown: an extra matmul pass over every batch")
    plant(repo, "slow-and-nondeterministic", "src/fitbench/models/seed.py",
          '        inputs = keras.Input(shape=(spec.input_dim,))\n',
          '        inputs = keras.Input(shape=(spec.input_dim,))\n'
          '        import random; random.random()  # planted: one extra draw shifts the initializer seeds\n',
          "planted determinism break: Functional starts from other weights", start="slow")
    plant(repo, "slow-nondeterministic-retracing", "src/fitbench/measure/traces.py",
          "callbacks=list(callbacks), shuffle=False)",
          "callbacks=[*callbacks, harness.keras.callbacks.LambdaCallback(  # planted: a retrace every epoch\n"
          "                              on_epoch_begin=lambda *a: harness.model.make_train_function(force=True))],"
          " shuffle=False)",
          "planted retrace: the train function rebuilt at every epoch", start="slow-and-nondeterministic")
    git(repo, "checkout", "-q", "base")
    if (ROOT / ".asv" / "env").is_dir():
        # the environments asv already built for this checkout (CI's asv stage): the same matrix, so the same
        # names; asv installs each commit into them afresh. A build of TensorFlow's virtualenv saved (CI's time).
        conf = json.loads((repo / "asv.conf.json").read_text())
        conf["env_dir"] = str(ROOT / ".asv" / "env")
        (repo / "asv.conf.json").write_text(json.dumps(conf, indent=4))
    return repo


def run_alert(repo: Path, head: str, bench: str, out: Path, backend: str = "tensorflow",
              processes: str = PROCESSES) -> tuple[subprocess.CompletedProcess[str], dict]:
    # one stage of pairs (the default design): the second stage, the unpaired design and several runners are
    # exercised on a toy suite (tests/test_alert_stages.py), in seconds
    result = subprocess.run([sys.executable, "-m", "fitbench", "alert", "base", head, "--repo", str(repo),
                             "--bench", bench, "--out", str(out), "--backend", backend, "--processes", processes,
                             "--stages", "1"],
                            capture_output=True, text=True, timeout=1800)
    report = json.loads((out / "alert.json").read_text()) if (out / "alert.json").exists() else {}
    return result, report


@pytest.mark.alert
def test_a_planted_slowdown_a_determinism_break_and_a_retrace_are_regressions(clone, tmp_path):
    # One alert, the three plants on its head: an extra matmul pass in the tf.data pipeline (the tensorflow
    # backend's input), an extra random draw that shifts Functional's initial weights (the identity track
    # goes from 1 to 0), and the train function rebuilt every epoch (the trace count grows, exactly). On
    # tensorflow only (CI's time: each backend doubles the processes); the backend axis of a report, a
    # benchmark that errors and the second stage are tested on the toy suite of tests/test_alert_stages.py.
    result, report = run_alert(clone, "slow-nondeterministic-retracing",
                               "|".join((STEP_CELL, IDENTITY_TRACK, TRACE_TRACK)), tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr + (tmp_path / "out" / "asv.log").read_text()
    assert report["backends"] == ["tensorflow"] and report["schema_version"] == 4
    assert report["design"] == "alternate"
    schema.validate(report)
    rows = {c["benchmark"].rsplit(".", 1)[-1]: c for c in report["comparisons"]}
    assert sorted(rows) == ["time_step", "track_sequential_functional_identical", "track_step_traces"]
    worse = rows["time_step"]
    assert (worse["change"], worse["params"]["batch_size"]) == ("worse", "32")
    # the statistics behind it: 9 pairs, the interval above 1, a detectable change, both spreads
    assert worse["pairs"] == worse["processes_base"] == worse["processes_head"] == 9
    assert worse["design"] == "alternate" and worse["pair_cv"] > 0 and worse["between_process_cv"] > 0
    assert worse["ratio"] > 1.05 and worse["ci_low"] > 1.0 and worse["after"] > worse["before"]
    assert worse["p_adjusted"] <= 0.01 and worse["min_detectable_change"] > 0
    track = rows["track_sequential_functional_identical"]
    assert (track["before"], track["after"], track["change"]) == (1, 0, "worse")
    traces = rows["track_step_traces"]  # 3 epochs: 2 traces of one tf.function, then one more per epoch
    assert (traces["before"], traces["after"], traces["change"]) == (2, 4, "worse")
    assert traces["method"].startswith("exact")
    markdown = (tmp_path / "out" / "alert.md").read_text()
    assert "### Regressions" in markdown and "bench_fit.StepTime.time_step" in markdown
    assert "backend=tensorflow, batch_size=32" in markdown and "alternate: 9 pairs (1)" in markdown
    assert "track_sequential_functional_identical" in markdown
    assert markdown.strip() in result.stdout  # the same Markdown on stdout, for a CI job summary


def test_a_backend_outside_the_matrix_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fitbench", "alert", "HEAD~1", "HEAD", "--repo", str(ROOT),
                             "--backend", "mxnet", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr.strip().splitlines() == [
        "fitbench: error: --backend mxnet: not in asv.conf.json's environments (tensorflow, jax, torch, tf-keras)"]


def test_every_backend_of_the_matrix_gets_its_own_asv_environment():
    from fitbench.regress.asvdata import backend_environments

    envs = backend_environments(str(ROOT), None)
    assert list(envs) == ["tensorflow", "jax", "torch"]  # asv.conf.json's KERAS_BACKEND axis, in its order
    assert len(set(envs.values())) == 3 and all(name.endswith(f"KERAS_BACKEND{b}") for b, name in envs.items())
    assert backend_environments(str(ROOT), ["jax"]) == {"jax": envs["jax"]}
    # the Keras 2 row: TF_USE_LEGACY_KERAS=1 beside KERAS_BACKEND=tensorflow (asv.conf.json's `include`), on
    # request or with every=True; the Keras 3 environments keep their names (stored results stay theirs)
    every = backend_environments(str(ROOT), None, every=True)
    assert every == {**envs, "tf-keras": envs["tensorflow"] + "-TF_USE_LEGACY_KERAS1"}
    assert backend_environments(str(ROOT), ["tf-keras"]) == {"tf-keras": every["tf-keras"]}


def test_the_same_commit_twice_is_refused_with_a_pointer_to_calibrate(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fitbench", "alert", "HEAD", "HEAD", "--repo", str(ROOT),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    [line] = result.stderr.strip().splitlines()
    assert "are the same commit" in line and "fitbench calibrate" in line


def test_bad_alert_settings_are_one_line_and_exit_2(tmp_path):
    for args, message in ((["--alpha", "2"], "--alpha must be between 0 and 0.5, got 2.0"),
                          (["--min-change", "0.5"], "--min-change must be between 0 and --threshold"),
                          (["--compile-threshold", "1.5"], "--compile-threshold must be a relative change"),
                          (["--processes", "1"], "--processes must be at least 2"),
                          (["--stored", "--processes", "6"], "--processes and --stored do not go together")):
        result = subprocess.run([sys.executable, "-m", "fitbench", "alert", "HEAD", "HEAD", "--repo", str(ROOT),
                                 "--out", str(tmp_path / "out"), *args], capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
        assert not (tmp_path / "out").exists()


def test_calibrate_rejects_too_few_processes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fitbench", "calibrate", "HEAD", "--repo", str(ROOT),
                             "--processes", "2", "--log", str(tmp_path / "log")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "fitbench: error: --processes must be at least 3 to measure a spread, got 2"


def test_without_asv_the_alert_names_the_extra_to_install(tmp_path):
    import os

    site = tmp_path / "no-asv"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['asv'] = None  # import raises\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "fitbench", "alert", "HEAD", "HEAD", "--repo", str(ROOT),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr.strip().splitlines() == [
        "fitbench: error: asv is not installed: pip install 'fitbench[alert]' "
        "(or pip install 'asv>=0.6.4,<0.7' virtualenv)"]


def test_outside_a_repository_alert_and_bisect_say_where_they_looked(tmp_path):
    for argv in (["alert", "HEAD~1", "HEAD"], ["bisect", "HEAD~1", "HEAD"]):
        result = subprocess.run([sys.executable, "-m", "fitbench", *argv, "--repo", str(tmp_path), "--out",
                                 str(tmp_path / "out")], capture_output=True, text=True)
        assert result.returncode == 2 and not (tmp_path / "out").exists()
        assert result.stderr.strip().splitlines() == [
            f"fitbench: error: {tmp_path} is not in a git repository: run this in your repository's clone, or "
            "give it with --repo"]
