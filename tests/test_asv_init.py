"""`fitbench asv-init`: asv on a user's own repository with their own model.

The fast tests check what it writes and what it refuses. The end-to-end test (`pytest -m alert`) is the
user's path: a throw-away repository with a toy model, two commits (the asv suite, a change that makes the
model slower), `asv run` over them, `asv publish`, and `fitbench alert --stored`: the slow commit is a
regression. Its A/A beside it (no change, no alarm) runs on the toy suite of tests/test_alert_stages.py in
seconds (CI's time), and counted over real alerts in docs/results/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fitbench import schema

MODEL = "toymodels.models:build"
TOY_MODEL = '''import keras

WIDTH = 256


def build():
    # fitbench seeds Keras before it calls this, so two calls give the same initial weights
    return keras.Sequential([keras.Input((32,)), keras.layers.Dense(WIDTH, activation="relu"),
                             keras.layers.Dense(WIDTH, activation="relu"), keras.layers.Dense(4)])
'''
PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "toymodels"
version = "0.1"
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=fitbench-test", "-c",
                           "user.email=fitbench-test@localhost", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def fitbench(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fitbench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def toy_repo(root: Path) -> Path:
    """A user's repository: a package with a model factory, one commit on main."""
    repo = root / "toyrepo"
    (repo / "toymodels").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(PYPROJECT)
    (repo / "toymodels" / "__init__.py").write_text("")
    (repo / "toymodels" / "models.py").write_text(TOY_MODEL)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a toy model")
    return repo


def test_asv_init_writes_a_loadable_config_and_a_thin_suite(tmp_path):
    import numpy as np

    repo = toy_repo(tmp_path)
    (repo / "data").mkdir()
    np.savez(repo / "data" / "xy.npz", x=np.zeros((8, 3), np.float32), y=np.zeros((8, 1), np.float32))
    result = fitbench("asv-init", "--model", MODEL, "--backend", "tensorflow,jax", "--batch-sizes", "64,256",
                      "--loss", "mse", "--data", str(repo / "data" / "xy.npz"), "--no-check", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "StepTime" in result.stdout and "fitbench alert" in result.stdout

    from asv.config import Config

    conf = Config.load(str(repo / "asv.conf.json"))  # asv itself accepts it
    assert conf.project == "toymodels" and conf.branches == ["main"] and conf.repo == "."
    assert conf.matrix["env_nobuild"]["KERAS_BACKEND"] == ["tensorflow", "jax"]
    assert "jax" in conf.matrix["req"]  # the framework a backend needs, pinned to the version tested here
    assert "{wheel_file}" in conf.install_command[0]
    # what asv and fitbench write into the repository is ignored, and the command says it touched .gitignore
    assert (repo / ".gitignore").read_text().splitlines() == [".asv/", "alert-report/", "bisect-report/",
                                                              "history-report/", "calibrate-asv.log"]
    assert "wrote " + str(repo / ".gitignore") + " (added .asv/" in result.stdout

    bench = (repo / "benchmarks" / "bench_model.py").read_text()
    assert subprocess.run([sys.executable, "-m", "ruff", "check", "-q", "-"], input=bench, text=True).returncode == 0
    # the suite only declares: importing it loads no framework, and its classes are the library's
    probe = ("import sys, benchmarks.bench_model as b; from fitbench import asvsuite; "
             "assert issubclass(b.StepTime, asvsuite.StepTime) and b.StepTime.params == [[64, 256]]; "
             "assert b.FitLoop.params == [[False, True], [64, 256]] and b.Determinism.loss == 'mse'; "
             # where a worse StepTime grew: its configurations at the alert's batch, the largest
             "assert issubclass(b.StepPhases, asvsuite.StepPhases) and b.StepPhases.params[1] == [256]; "
             "assert b.StepTime.model == b.Determinism.model == 'toymodels.models:build'; "
             # --data named relative to the repository, wherever the suite is run from
             f"assert b.FitLoop.data == b.Determinism.data == {str((repo / 'data' / 'xy.npz').resolve())!r}; "
             "assert not {'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules), sorted(sys.modules)")
    check = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("case, args, message", [
    ("exists", ["--model", MODEL, "--no-check"], "already exist in"),
    ("no_git", ["--model", MODEL, "--no-check"], "is not the top of a git repository"),
    ("no_package", ["--model", MODEL, "--no-check"], "has no pyproject.toml or setup.py"),
    ("no_module", ["--model", "nosuchpkg.models:build"], "no module named 'nosuchpkg.models'"),
    ("saved_file", ["--model", "model.keras"], "a saved file does not change with your commits"),
    ("bad_backend", ["--model", MODEL, "--backend", "mxnet", "--no-check"], "unknown backend 'mxnet'"),
    ("bad_batch", ["--model", MODEL, "--batch-sizes", "0", "--no-check"], "batch size must be a positive integer"),
    ("data_outside", ["--model", MODEL, "--data", "../outside.npz", "--no-check"], "inside the repository"),
])
def test_asv_init_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, case, args, message):
    repo = toy_repo(tmp_path)
    if case == "exists":
        (repo / "asv.conf.json").write_text("{}\n")
    if case == "no_git":
        subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)
    if case == "no_package":
        (repo / "pyproject.toml").unlink()
    if case == "data_outside":
        import numpy as np

        np.savez(tmp_path / "outside.npz", x=np.zeros((2, 3)), y=np.zeros((2, 1)))
    if case == "saved_file":
        import zipfile

        with zipfile.ZipFile(repo / "model.keras", "w") as z:
            z.writestr("config.json", "{}")
    before = sorted(p.name for p in repo.iterdir())
    result = fitbench("asv-init", *args, cwd=repo)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "checking" not in result.stdout  # a refusal for a repository reason comes before the model is tried
    assert sorted(p.name for p in repo.iterdir()) == before
    if case == "exists":
        assert (repo / "asv.conf.json").read_text() == "{}\n"  # --force is needed to overwrite


@pytest.mark.processes
def test_asv_init_tries_the_factory_first_and_names_what_is_missing(tmp_path):
    repo = toy_repo(tmp_path)
    result = fitbench("asv-init", "--model", "toymodels.models:nope", cwd=repo)
    assert result.returncode == 2 and "has no function 'nope'" in result.stderr, result.stderr
    assert not (repo / "asv.conf.json").exists()


@pytest.mark.alert
def test_asv_on_a_user_repository_flags_the_commit_that_made_the_model_slower(tmp_path):
    repo = toy_repo(tmp_path)
    result = fitbench("asv-init", "--model", MODEL, cwd=repo)  # with the check: builds and trains one step
    assert result.returncode == 0, result.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "asv suite (fitbench asv-init)")
    suite = git(repo, "rev-parse", "HEAD")
    models = repo / "toymodels" / "models.py"
    # 4x wider hidden layers, about 10x the step: CI runs this beside another test (two workers on two cores),
    # where two unpaired groups of processes see a between-process spread of 40 % and more
    models.write_text(models.read_text().replace("WIDTH = 256", "WIDTH = 1024"))
    git(repo, "commit", "-qam", "wider hidden layers")
    slow = git(repo, "rev-parse", "HEAD")

    # what the user runs: asv over the two commits, each process interleaved across them (6 per commit: one
    # more than the fewest with which the alert's exact rank-sum test can reach alpha=0.01 for one timed cell), then
    # the report. StepTime at batch 256 and the determinism tracks; the generated FitLoop, which drives the
    # same harness, is left out (CI's time: each benchmark is a process per round)
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes"], cwd=repo, check=True, capture_output=True)
    env = {**__import__("os").environ, "FITBENCH_PROCESSES": "6"}
    run = subprocess.run([*asv, "run", "--interleave-rounds", "--record-samples", "--show-stderr", "--bench",
                          r"StepTime.*\(256\)|Determinism|Traces", f"{suite}^..{slow}"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    publish = subprocess.run([*asv, "publish"], cwd=repo, capture_output=True, text=True)
    assert publish.returncode == 0, publish.stderr
    html = repo / ".asv" / "html"
    regressions = json.loads((html / "regressions.json").read_text())["regressions"]
    assert [r[0] for r in regressions] == ["bench_model.StepTime.time_step(256)"]  # asv's own view agrees
    assert (html / "index.html").is_file()

    # the pull request of the slow commit: a regression, with its statistics
    ab = fitbench("alert", suite, slow, "--stored", "--out", str(tmp_path / "ab"), cwd=repo)
    report = json.loads((tmp_path / "ab" / "alert.json").read_text())
    assert ab.returncode == 1, ab.stdout + ab.stderr
    schema.validate(report)
    by_name = {c["benchmark"]: c for c in report["comparisons"]}
    step = by_name["bench_model.StepTime.time_step"]
    assert step["change"] == "worse" and step["processes_base"] == step["processes_head"] == 6
    assert step["ci_low"] > 1.0 and step["p_adjusted"] <= 0.01
    assert by_name["bench_model.Determinism.track_run_to_run_identical"]["after"] == 1  # still deterministic
    traces = by_name["bench_model.Traces.track_step_traces"]  # wider layers: the step is still traced as before
    assert (traces["before"], traces["after"], traces["change"]) == (2, 2, "equivalent")
