"""`fitbench versions` and the Keras 2 row: columns parsed, environments cached (offline, from a local wheel),
uninstallable versions skipped with pip's line, decisions on synthetic processes (A/A and A/B), and end
to end in real processes."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import SMALL, load, run_cli
from fitbench import schema
from fitbench.errors import UsageError
from fitbench.processes.options import backends
from fitbench.regress.decide import FASTER, SLOWER
from fitbench.stacks import parse_stack, stack_name
from fitbench.versions.compare import CellRow, VersionsSettings, _decide
from fitbench.versions.envs import MARKER, READY, SKIPPED, ensure_env
from fitbench.versions.spec import INSTALLED, Column, parse_columns

# ---------- the columns ----------


def test_columns_a_bare_version_repeats_the_package_before_it():
    columns = parse_columns(["keras==3.13.*,3.15.*", "~=3.14.0"])
    assert [c.requirements for c in columns] == [("keras==3.13.*",), ("keras==3.15.*",), ("keras~=3.14.0",)]
    assert [c.label for c in columns] == ["keras==3.13.*", "keras==3.15.*", "keras~=3.14.0"]


def test_columns_several_packages_in_one_column_and_the_installed_baseline():
    columns = parse_columns(["installed,tensorflow==2.20.*+tf-keras==2.20.*"])
    assert columns[0] == Column(INSTALLED) and columns[0].installed
    assert columns[1].requirements == ("tensorflow==2.20.*", "tf-keras==2.20.*")
    assert columns[0].key("py") != columns[1].key("py") and columns[1].key("py") == columns[1].key("py")
    assert columns[1].key("py3.11") != columns[1].key("py3.12")  # another Python, another environment


@pytest.mark.parametrize("texts, message", [
    (["3.13"], "'3.13' is a version with no package before it; write e.g. keras==3.13"),
    (["keras"], "'keras' names no version; write e.g. keras==3.15.*"),
    (["keras==3.13.*"], "give at least two versions to compare"),
    (["keras==3.13.*,,3.15.*"], "give at least two comma-separated versions"),
    (["keras==3.14.*,3.14.*"], "a column is asked twice (keras==3.14.*)"),
    (["keras==3.1 4,3.15"], "is not a requirement pip understands"),
    (["keras @ https://example.invalid/k.whl,installed"], "not a URL or an environment marker"),
    (["keras==3.14; python_version>'3',installed"], "not a URL or an environment marker"),
    (["fitbench==0.1,installed"], "fitbench itself is the one measuring"),
    (["keras==3.14+keras==3.15,installed"], "names a package twice"),
])
def test_bad_columns_are_one_usage_error(texts, message):
    with pytest.raises(UsageError, match=None) as err:
        parse_columns(texts)
    assert message in str(err.value)


def test_bad_versions_input_is_one_line_and_exit_2_before_anything_is_built(tmp_path):
    cache = tmp_path / "envs"
    for args, line in [
        (["3.13"], "fitbench: error: versions: '3.13' is a version with no package before it; write e.g. "
                   "keras==3.13"),
        (["keras==3.13.*,3.15.*", "--backend", "mxnet"],
         "fitbench: error: unknown backend 'mxnet'; choose from tensorflow, jax, torch, tf-keras"),
        (["keras==3.13.*,3.15.*", "--processes", "1"],
         "fitbench: error: --processes must be at least 2 (a comparison needs a spread), got 1"),
        (["keras==3.13.*,3.15.*", "--alpha", "1.5"], "fitbench: error: --alpha must be between 0 and 1, got 1.5"),
        (["--from-asv", "HEAD", "--repo", str(Path(__file__).parents[1])],
         f"fitbench: error: {Path(__file__).parents[1]}/asv.conf.json's matrix has one version of every "
         "requirement: nothing to compare (give a `req` entry two or more versions)"),
        (["keras==3.13.*,3.15.*", "--backend", "tf-keras", "--model", "conv"],
         "fitbench: error: the tf-keras row runs seed, factory, file models, not the zoo's conv (Keras 3 code)"),
        (["keras==3.13.*,3.15.*", "--from-asv", "HEAD"],
         "fitbench: error: --from-asv reads the versions from asv.conf.json's matrix: give no VERSIONS with it"),
        (["--from-asv", "HEAD", "--repo", str(cache)], f"fitbench: error: --repo {cache}: no asv.conf.json there"),
    ]:
        result = run_cli("versions", *args, "--env-dir", str(cache))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [line]
    assert not cache.exists()


# ---------- environments, offline ----------


def _wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of one module, `name`, whose VERSION is `version`."""
    dist = f"{name}-{version}"
    files = {f"{name}.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n"}

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = [f"{path},sha256={digest(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{dist}.dist-info/RECORD"] = "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_in_zip, text in files.items():
            zf.writestr(name_in_zip, text)
    return path


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only a folder of two local wheels: no network, and a version it cannot find."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "fbprobe", "1.0")
    _wheel(wheels, "fbprobe", "2.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    return wheels


def test_an_environment_installs_only_its_version_and_sees_everything_else_here(tmp_path, local_index):
    cache = tmp_path / "envs"
    column = parse_columns(["fbprobe==1.*,2.0"])[0]
    env = ensure_env(column, cache)
    assert env.status == READY and not env.cached and Path(env.path, MARKER).exists()
    # its own package, and fitbench and numpy from this environment (nothing reinstalled)
    probe = subprocess.run([env.python, "-c", "import fbprobe, fitbench, numpy, sys; print(fbprobe.VERSION)"],
                           capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stdout.strip() == "1.0", probe.stderr
    assert env.versions.get("numpy")  # the versions recorded are the ones the column runs
    again = ensure_env(column, cache)
    assert again.cached and again.python == env.python


def test_a_half_built_environment_is_built_again(tmp_path, local_index):
    cache = tmp_path / "envs"
    column = parse_columns(["fbprobe==2.0,installed"])[0]
    env = ensure_env(column, cache)
    Path(env.path, MARKER).unlink()  # as if the build had been interrupted before its last step
    rebuilt = ensure_env(column, cache)
    assert rebuilt.status == READY and not rebuilt.cached and Path(rebuilt.path, MARKER).exists()


def test_an_uninstallable_version_is_a_skipped_column_with_pips_line_and_leaves_nothing(tmp_path, local_index):
    cache = tmp_path / "envs"
    env = ensure_env(parse_columns(["fbprobe==3.*,installed"])[0], cache)
    assert env.status == SKIPPED and env.python is None
    assert env.reason == "pip: ERROR: No matching distribution found for fbprobe==3.*"
    assert not any(cache.iterdir())  # not cached: the index may have it tomorrow


def test_the_installed_column_builds_nothing(tmp_path):
    env = ensure_env(Column(INSTALLED), tmp_path / "envs")
    assert env.status == READY and env.python == sys.executable and env.path is None
    assert not (tmp_path / "envs").exists()


# ---------- decisions on synthetic processes ----------


def _row(cell: str, backend: str, values: dict[str, list[float]], batch: int = 32) -> CellRow:
    return CellRow(cell=cell, backend=backend, api="functional", jit_requested=True, variant="plain", device="cpu",
                   batch_size=batch, kind="fit", step_time_s=values, samples_per_s={}, jit_effective={}, errors={})


def _processes(rng: random.Random, n: int, level: float, cv: float) -> list[float]:
    return [level * rng.lognormvariate(0, cv) for _ in range(n)]


def test_aa_no_change_is_never_called_faster_or_slower():
    """A/A: the same distribution in both columns, 200 comparisons of 8 + 8 processes at a 10 % spread."""
    rng = random.Random(1)
    rows = [_row(f"cell {i}", "tensorflow", {"a": _processes(rng, 8, 0.01, 0.10), "b": _processes(rng, 8, 0.01, 0.10)})
            for i in range(200)]
    _decide(rows, ["a", "b"], VersionsSettings())
    verdicts = [c.verdict for r in rows for c in r.comparisons]
    assert len(verdicts) == 200 and not {FASTER, SLOWER} & set(verdicts)


def test_ab_a_release_30_percent_slower_is_called_slower_with_an_interval_below_1():
    rng = random.Random(2)
    rows = [_row("cell", "tensorflow", {"a": _processes(rng, 8, 0.010, 0.05), "b": _processes(rng, 8, 0.013, 0.05)})]
    _decide(rows, ["a", "b"], VersionsSettings())
    (comparison,) = rows[0].comparisons
    assert comparison.verdict == SLOWER and comparison.reference == "a"
    assert comparison.ci_high < 1 and 0.65 < comparison.speed_ratio < 0.85
    assert comparison.processes == [8, 8]


def test_keras_3_is_compared_with_tf_keras_in_each_column():
    rng = random.Random(3)
    keras3 = _row("tensorflow functional jit=on plain cpu batch 32", "tensorflow",
                  {"a": _processes(rng, 8, 0.02, 0.03), "b": _processes(rng, 8, 0.02, 0.03)})
    keras2 = _row("tf-keras functional jit=on plain cpu batch 32", "tf-keras",
                  {"a": _processes(rng, 8, 0.01, 0.03), "b": _processes(rng, 8, 0.01, 0.03)})
    _decide([keras3, keras2], ["a", "b"], VersionsSettings())
    versus_2 = [c for c in keras3.comparisons if c.reference.startswith("tf-keras")]
    assert [c.column for c in versus_2] == ["a", "b"]
    assert all(c.verdict == SLOWER and 0.4 < c.speed_ratio < 0.6 for c in versus_2)  # Keras 3 at half the speed
    assert [c.verdict for c in keras2.comparisons if c.column == "b"] != [FASTER]


def test_too_few_processes_give_no_interval_and_no_verdict_but_the_numbers():
    rows = [_row("cell", "jax", {"a": [0.010, 0.011, 0.0105], "b": [0.012, 0.013, 0.0125]})]
    _decide(rows, ["a", "b"], VersionsSettings())
    (comparison,) = rows[0].comparisons
    assert comparison.ci_low is None and comparison.verdict == "inconclusive"


# ---------- the Keras 2 row: names ----------


def test_tf_keras_is_a_stack_and_old_records_are_keras_3():
    assert parse_stack("tf-keras").backend == "tensorflow" and parse_stack("tf_keras").keras_major == 2
    assert backends("tensorflow,tf-keras,jax,tf-keras")[0] == ["tensorflow", "tf-keras", "jax"]
    assert stack_name({"backend": "tensorflow"}) == "tensorflow"  # a record written before keras_major
    assert stack_name({"backend": "tensorflow", "keras_major": 2}) == "tf-keras"
    with pytest.raises(UsageError, match="choose from tensorflow, jax, torch, tf-keras"):
        parse_stack("keras2x")


def test_the_keras_2_row_with_a_model_other_than_the_seed_or_in_explain_is_exit_2():
    result = run_cli("run", "--backend", "tf-keras", "--model", "conv")
    assert result.returncode == 2
    assert result.stderr.strip() == ("fitbench: error: the tf-keras row runs seed, factory, file models, not the "
                                     "zoo's conv (Keras 3 code)")
    result = run_cli("determinism", "--backend", "tf-keras", "--model", "json:dumps")
    assert result.returncode == 2
    assert result.stderr.strip() == ("fitbench: error: the tf-keras row (Keras 2) of this command runs the seed "
                                     "network only, not --model json:dumps (fitbench run takes it there)")
    result = run_cli("explain", "--backend", "tf-keras")
    assert result.returncode == 2 and "explain takes one Keras 3 backend" in result.stderr


# ---------- in real processes ----------


@pytest.mark.processes
def test_the_keras_2_row_runs_beside_keras_3_and_says_which_keras_ran(tmp_path):
    out = tmp_path / "run.json"
    result = run_cli("run", *SMALL, "--backend", "tensorflow,tf-keras", "--api", "functional", "--batch-sizes", "4",
                     "--jit", "both", "--variant", "plain", "--no-seed-workload", "--no-floor", "--json", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = load(out)
    schema.validate(doc)
    by_major = {(r["keras_major"], r["jit"]): r for r in doc["records"]}
    assert set(by_major) == {(3, False), (3, True), (2, False), (2, True)}
    assert all(r["status"] == "ok" and r["backend"] == "tensorflow" for r in doc["records"])
    for (major, jit), r in by_major.items():
        assert ("tf_keras" in r["versions"]) == (major == 2)
        assert r["versions"]["keras"].startswith("2." if major == 2 else "3.")
        assert r["jit_effective"] is jit  # tf-keras honours jit_compile as Keras 3 does here
    assert "Keras 3 vs Keras 2 (tf-keras) on TensorFlow" in result.stdout
    assert "tf-keras" in result.stdout


@pytest.mark.processes
def test_determinism_of_the_keras_2_row(tmp_path):
    out = tmp_path / "det.json"
    result = run_cli("determinism", *SMALL, "--backend", "tf-keras", "--api", "sequential,functional", "--epochs", "1",
                     "--json", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = load(out)
    schema.validate(doc)
    assert doc["keras_major"] == 2 and doc["all_identical"] is True
    assert all(run["versions"]["tf_keras"] and run["op_determinism"] for run in doc["runs"])
    assert "determinism of seed on tf-keras" in result.stdout


@pytest.mark.processes
def test_versions_end_to_end_with_a_skipped_column(tmp_path, local_index):
    """Three columns: this environment, a built one (a local wheel beside the same Keras: an A/A in real
    processes) and one pip cannot install. Two interleaved rounds: the numbers, no verdict claimed."""
    out = tmp_path / "versions.json"
    result = run_cli("versions", "installed,fbprobe==1.0,fbprobe==9.9", *SMALL, "--batch-sizes", "4",
                     "--processes", "2", "--env-dir", str(tmp_path / "envs"), "--json", str(out),
                     env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(local_index)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = load(out)
    schema.validate(doc)
    status = {c["env"]["label"]: c["env"]["status"] for c in doc["columns"]}
    assert status == {"installed": "ready", "fbprobe==1.0": "ready", "fbprobe==9.9": "skipped"}
    skipped = next(c["env"] for c in doc["columns"] if c["env"]["status"] == "skipped")
    assert skipped["reason"] == "pip: ERROR: No matching distribution found for fbprobe==9.9"
    assert [c["rounds_run"] for c in doc["columns"]] == [2, 2, 0]
    (row,) = doc["cells"]
    assert row["cell"] == "tensorflow functional jit=on plain cpu batch 4"
    assert all(len(row["step_time_s"][label]) == 2 for label in ("installed", "fbprobe==1.0"))
    (comparison,) = row["comparisons"]
    assert comparison["reference"] == "installed" and comparison["verdict"] not in (FASTER, SLOWER)
    assert "skipped: pip: ERROR: No matching distribution found for fbprobe==9.9" in result.stdout
    assert json.dumps(doc)  # plain JSON: no NaN or Infinity where an interval is missing
    # said before anything was built: 2 a side can decide nothing, so the numbers come without a verdict
    assert "fitbench: note: --processes 2: with 2 a side the exact test can decide nothing" in result.stderr


# ---------- --from-asv on stored results ----------

def _stored_matrix(tmp_path: Path, stored_version: str, today_version: str, processes: int, per_process: int):
    """A repository whose asv.conf.json has two keras versions in its matrix, with results written by asv's
    own Results class for each environment: `processes` processes of `per_process` samples, stored with the
    benchmark version `stored_version`, while today's benchmarks.json says `today_version`."""
    from asv.benchmarks import Benchmarks
    from asv.environment import get_environments
    from asv.results import Results
    from asv.runner import BenchmarkResult

    from fitbench.regress import asvdata

    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "asv.conf.json").write_text(json.dumps({
        "version": 1, "project": "p", "repo": ".", "branches": ["main"], "environment_type": "virtualenv",
        "pythons": ["3.11"], "matrix": {"req": {"keras": ["3.14.1", "3.15.1"]},
                                        "env_nobuild": {"KERAS_BACKEND": ["tensorflow"]}},
        "benchmark_dir": "benchmarks", "env_dir": ".asv/env", "results_dir": ".asv/results", "html_dir": ".asv/html"}))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "suite"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    conf = asvdata.asv_config(str(repo))
    machine_dir = Path(conf.results_dir) / "testmachine"
    machine_dir.mkdir(parents=True)
    (machine_dir / "machine.json").write_text(json.dumps({"machine": "testmachine", "version": 1}))
    bench = {"name": "bench_fit.StepTime.time_step", "params": [["256"]], "param_names": ["batch_size"],
             "unit": "seconds", "type": "time", "number": 1, "repeat": per_process}
    Benchmarks(conf, [{**bench, "version": today_version}]).save()
    rng = random.Random(13)
    for env, scale in zip(get_environments(conf, None), (1.0, 1.3)):
        samples = [0.01 * scale * rng.uniform(0.99, 1.01) for _ in range(processes) for _ in range(per_process)]
        result = Results({"machine": "testmachine", "python": "3.11"}, env._requirements, commit, 0, "3.11",
                         env.name, env.env_vars)
        result.add_result({**bench, "version": stored_version},
                          BenchmarkResult(result=[sorted(samples)[len(samples) // 2]], samples=[samples], number=[1],
                                          errcode=0, stderr="", profile=None), record_samples=True)
        result.save(conf.results_dir)
    return repo, commit


def test_from_asv_cuts_stored_processes_by_the_layout_they_were_stored_with(tmp_path):
    from fitbench.versions.compare import compare_asv_environments

    # stored 6 processes of 10 samples; today's profile says 5: still 6 processes per column, not 12
    repo, commit = _stored_matrix(tmp_path, "StepTime 2; samples-per-process=10", "StepTime 2; samples-per-process=5",
                                  processes=6, per_process=10)
    doc = compare_asv_environments(str(repo), commit, "StepTime", VersionsSettings(), machine="testmachine")
    [cell] = doc["cells"]
    assert {label: len(v) for label, v in cell["step_time_s"].items()} == {"keras==3.14.1": 6, "keras==3.15.1": 6}
    [comparison] = cell["comparisons"]
    assert comparison["verdict"] == SLOWER and comparison["processes"] == [6, 6]
    schema.validate(doc)


def test_from_asv_refuses_results_stored_without_their_layout(tmp_path):
    from fitbench.versions.compare import compare_asv_environments

    repo, commit = _stored_matrix(tmp_path, "0f3c" * 16, "StepTime 2; samples-per-process=5", processes=6,
                                  per_process=5)
    with pytest.raises(UsageError, match="does not record how many samples each process gave"):
        compare_asv_environments(str(repo), commit, "StepTime", VersionsSettings(), machine="testmachine")


def test_build_only_fails_when_a_column_could_not_be_built(monkeypatch, capsys):
    """`versions notapackage==1,2 --build-only` used to exit 0 with nothing built: now an error (2), a line per
    column."""
    from fitbench.cli import main
    from fitbench.versions import envs

    def not_on_the_index(column, root=None):
        return envs.VersionEnv(label=column.label, requirements=[], status="skipped",
                               reason="pip: No matching distribution found")

    monkeypatch.setattr(envs, "ensure_env", not_on_the_index)
    assert main(["versions", "notapackage==1,2", "--build-only"]) == 2
    err = capsys.readouterr().err
    assert "notapackage==1: not built (skipped: pip: No matching distribution found)" in err


def test_a_budget_that_can_decide_nothing_is_a_note_for_versions_and_a_refusal_for_a_bisection(capsys):
    from fitbench.commands.versions import check_budget
    from fitbench.regress.decide import DecisionSettings

    check_budget(3, DecisionSettings(alpha=0.05), 2, refuse=False)  # versions: the numbers, no verdict
    assert capsys.readouterr().err == ("fitbench: note: --processes 3: with 3 a side the exact test can decide "
                                       "nothing at these levels (2 cell(s), 1 stage(s)), not even equivalence: it "
                                       "needs at least 4: the numbers side by side, no verdict\n")
    with pytest.raises(UsageError, match="--processes 3: with 3 a side the exact test can decide nothing"):
        check_budget(3, DecisionSettings(alpha=0.05), 2, refuse=True)
    check_budget(6, DecisionSettings(alpha=0.05), 2, refuse=True)  # 6 a side decides: nothing said
    assert capsys.readouterr().err == ""
