"""The CLI as a user runs it: exit codes, one-line errors, JSON documents."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from conftest import SMALL, load, run_cli
from fitbench.schema import validate

RUN_FIELDS = {"backend", "device", "api", "jit_requested", "jit_effective", "batch_size", "step_time_median_s",
              "samples_per_s", "gflops_per_s", "status"}
PAIR_FIELDS = {"a", "b", "identical", "first_divergent_epoch", "max_ulp"}


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fitbench: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["run", "--batch-sizes", "0"], "batch size"),
    (["run", "--batch-sizes", "-8"], "batch size"),
    (["run", "--batch-sizes", "eight"], "--batch-sizes"),
    (["run", "--api", "sequencial"], "unknown api 'sequencial'"),
    (["run", "--backend", "mxnet"], "unknown backend 'mxnet'"),
    (["run", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["run", "--widths", "256,,256"], "--widths"),
    (["run", "--widths", "0"], "--widths"),
    (["run", "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "--determinism", "on", "--switch", "torch=warn-only"],
     "--switch names torch, which --backend does not run"),
    (["determinism", "--epochs", "0"], "--epochs must be a positive integer"),
    (["determinism", "--epochs", "-1"], "--epochs must be a positive integer"),
    (["determinism", "--api", "functional,keras2"], "unknown api 'keras2'"),
    (["determinism", "--nudge", "subclassed", "--api", "functional"], "--nudge subclassed"),
    (["determinism", "--runs", "1"], "--runs must be at least 2"),
    (["replay", "--epochs", "0"], "--epochs must be a positive integer"),
    (["seed", "--epochs", "0"], "--epochs must be a positive integer"),  # the old name still parses
    (["bench"], "invalid choice: 'bench'"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(args, fragment):
    assert_one_line_error(run_cli(*args), fragment)


@pytest.mark.parametrize("args, fragment", [
    (["run", "--batch-sizes", ""], "--batch-sizes"),  # empty used to mean "the profile's", a full run
    (["run", "--batch-sizes", "4,,8"], "--batch-sizes"),
    (["run", "--api", ""], "--api must name apis"),
    (["determinism", "--api", "functional,"], "--api must name apis"),
    (["run", "--backend", ""], "--backend must name backends"),
    (["explain", "--backend", "jax,,torch"], "--backend must name backends"),
    (["run", "--seed", "99999999999999999999"], "--seed must be between 0 and 4294967295"),
    (["replay", "--seed", "-1"], "--seed must be between 0"),
    (["run", "--cell-timeout", "99999999999999"], "--cell-timeout must be at most 604800"),
    (["run", "--json", ""], "--json needs a path"),
    (["gate", "a.json", "b.json", "--json", " "], "--json needs a path"),
    (["run", "--plot", ""], "--plot needs a path"),
    (["alert", "--out", ""], "--out needs a path"),
])
def test_empty_and_out_of_range_values_are_refused_where_they_are_parsed(args, fragment, capsys):
    """In-process (no interpreter started per case): exit 2 and one line, before anything runs."""
    from fitbench.cli import main

    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own refusals
        status = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("fitbench: error:") and fragment in err[0], err[0]


@pytest.mark.parametrize("args", [["alert", "HEAD~1", "HEAD", "--out"], ["versions", "keras==3.13.0,3.13.1",
                                                                        "--build-only", "--env-dir"]])
def test_a_file_where_a_folder_is_written_is_refused(args, tmp_path, capsys):
    from fitbench.cli import main

    in_the_way = tmp_path / "report"
    in_the_way.write_text("mine")
    assert main([*args, str(in_the_way)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a file is in the way" in err[0], err
    assert in_the_way.read_text() == "mine"


@pytest.mark.parametrize("command", ["run", "determinism", "replay"])
def test_unwritable_output_path_is_refused_before_any_work(tmp_path, command):
    missing = tmp_path / "no-such-dir" / "out.json"
    assert_one_line_error(run_cli(command, "--json", str(missing)), "does not exist")
    assert_one_line_error(run_cli(command, "--json", str(tmp_path)), "is a directory")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.processes
def test_run_writes_every_cell_with_the_contract_fields_and_skips_gpu_without_one(tmp_path):
    out = tmp_path / "run.json"
    result = run_cli("run", *SMALL, "--api", "functional", "--batch-sizes", "4", "--device", "both",
                     "--variant", "plain", "--json", str(out))
    assert result.returncode == 0, result.stderr
    doc = load(out)
    validate(doc)  # the shipped schema, on a real document with ok and skipped cells
    assert doc["complete"] is True and doc["command"] == "run" and doc["profile"]["name"] == "quick"
    # each cell forked from the warm template of its environment (Linux), and still a process of its own
    assert doc["cell_processes"] == ("forked" if sys.platform.startswith("linux") else "fresh")
    records = doc["records"]
    # 1 api x 2 jit x 2 devices, fit and seed-epoch kinds
    assert len(records) == 8
    for r in records:
        assert RUN_FIELDS <= r.keys(), RUN_FIELDS - r.keys()
        assert r["variant"] == "plain" and {"raw_step_time_s", "efficiency", "pct_of_peak"} <= r.keys()
    cpu = [r for r in records if r["device"] == "cpu"]
    assert all(r["status"] == "ok" for r in cpu)
    for r in cpu:
        assert r["backend"] == "tensorflow" and r["versions"]["keras"].startswith("3.")
        assert r["steps_timed"] == len(r["step_times_s"]) == 20 and r["step_time_median_s"] > 0
        assert r["samples_per_s"] == pytest.approx(r["batch_size"] / r["step_time_median_s"])
        assert r["gflops_per_s"] == pytest.approx(r["flops_per_step"] / r["step_time_median_s"] / 1e9)
        assert r["first_step_s"] > 0 and r["peak_rss_bytes"] > 0
        assert r["step_traces"] == 2  # one tf.function, traced twice on its first call, over every fit call
        assert r["first_step_load_1min"] >= 0
        assert r["jit_effective"] == r["jit_requested"]  # no op determinism here: Keras keeps XLA on
    gpu = [r for r in records if r["device"] == "gpu"]
    if not any(r["status"] == "ok" for r in gpu):  # a machine without a GPU
        assert all(r["status"] == "skipped" and "no GPU" in r["reason"] for r in gpu)
        assert all(r["step_time_median_s"] is None and r["raw_step_time_s"] is None for r in gpu)
        assert [p["status"] for p in doc["peaks"] if p["device"] == "gpu"] == ["skipped"]
    assert "XLA speed-up" in result.stdout and "on/off" in result.stdout
    # stdout is not a terminal (a CI log): progress comes as one line per cell and probe on stderr
    steps = re.findall(r"^fitbench: \d+:\d{2}\.\d \[(\d+)/(\d+)\] ", result.stderr, re.M)
    assert steps and steps[0][0] == "1" and steps[-1][0] == steps[-1][1], result.stderr
    # and each answer as it comes: the peak probe's, a measured cell's, a skipped GPU cell's reason
    assert re.search(r"\] tensorflow cpu peak probe: peak [\d,]+ GFLOP/s$", result.stderr, re.M), result.stderr
    assert re.search(r"\] .*: [\d,]+ samples/s, raw/fit \d\.\d\d$", result.stderr, re.M), result.stderr
    assert re.search(r"\] .*: skipped: .*no GPU", result.stderr, re.M), result.stderr


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state, ppid, ..., starttime at index 19), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of the processes whose parent is `pid`: the start time tells a process from a later
    one that reuses its pid (a busy machine wraps pid_max in seconds)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[1]) == pid:
            found.add((int(entry.name), fields[19]))
    return found


def _running(process: tuple[int, str]) -> bool:
    fields = _stat(process[0])
    return fields is not None and fields[19] == process[1] and fields[0] != "Z"


@pytest.mark.processes
def test_a_run_stopped_by_sigterm_keeps_its_cells_and_leaves_no_worker(tmp_path):
    """SIGTERM, what a CI timeout sends, stops a run as Ctrl-C does (the same KeyboardInterrupt path): exit 130,
    one line, the finished cells kept as a whole JSON document, and the worker of the running cell gone (it
    used to be re-parented to init and run on, its result lost), nor the warm template it was forked from."""
    out = tmp_path / "run.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "fitbench", "run", *SMALL, "--api", "functional",
                             "--batch-sizes", "2,4,8", "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    workers: set[tuple[int, str]] = set()
    deadline = time.time() + 300
    def descendants() -> set[tuple[int, str]]:  # the warm template and the cell it forked, or a fresh worker
        found = _children(proc.pid)
        return found | {c for pid, _ in found for c in _children(pid)}

    while time.time() < deadline and not (out.exists() and load(out)["records"]):
        workers |= descendants()
        time.sleep(0.2)
    time.sleep(1.0)  # the next cell's worker has started
    workers |= descendants()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    doc = load(out)  # still a whole JSON document
    assert doc["complete"] is False and 1 <= len(doc["records"]) < 8
    assert "interrupted" in stdout and "Traceback" not in stderr
    assert workers and not [w for w in workers if _running(w)], workers


@pytest.mark.processes
def test_determinism_finds_all_pairs_bit_identical_and_reports_effective_jit(tmp_path):
    out = tmp_path / "det.json"
    result = run_cli("determinism", *SMALL, "--epochs", "2", "--jit", "on", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load(out)
    validate(doc)
    with pytest.raises(jsonschema.ValidationError):  # and the schema can fail: a field of the wrong type
        validate({**doc, "pairs": [{**doc["pairs"][0], "max_ulp": "zero"}, *doc["pairs"][1:]]})
    assert doc["all_identical"] is True
    assert len(doc["pairs"]) == 6  # 3 API pairs + 3 run-to-run pairs
    for p in doc["pairs"]:
        assert PAIR_FIELDS <= p.keys()
        assert p["identical"] and p["first_divergent_epoch"] is None and p["max_ulp"] == 0
        assert p["identical_per_epoch"] == [True, True, True]
    # op determinism is on, so Keras turned XLA off: the result must say so and not claim jit on
    assert doc["jit_requested"] is True and doc["jit_effective"] is False and "jit off" in doc["jit_note"]
    for run in doc["runs"]:
        assert run["op_determinism"] is True and run["threads"] == {"intra_op": 2, "inter_op": 1}
        assert {v["jit_effective"] for v in run["apis"].values()} == {False}
    assert "jit_compile=True was requested" in result.stdout


@pytest.mark.processes
def test_determinism_names_the_pair_and_epoch_when_one_weight_moves_one_ulp(tmp_path):
    out = tmp_path / "det.json"
    result = run_cli("determinism", *SMALL, "--epochs", "2", "--api", "sequential,functional",
                     "--nudge", "functional", "--json", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    doc = load(out)
    bad = [p for p in doc["pairs"] if not p["identical"]]
    assert [(p["a"], p["b"]) for p in bad] == [("sequential@run1", "functional@run1")]
    assert bad[0]["first_divergent_epoch"] == 0 and bad[0]["max_ulp_weights"] >= 1
    assert all(p["identical"] for p in doc["pairs"] if p["scope"] == "run_to_run")
    assert "not bit-identical: sequential@run1 vs functional@run1, first divergent epoch 0" in result.stdout
    # and the command that localises it (step, layer, phase)
    explain = "fitbench explain --pair nudge --api functional --backend tensorflow --epochs 1 --widths 16,16"
    assert explain in result.stdout


@pytest.mark.slow
def test_determinism_on_the_full_seed_model_with_synthetic_batches(tmp_path):
    out = tmp_path / "det.json"
    result = run_cli("determinism", "--epochs", "2", "--samples", "64", "--batch-size", "16", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load(out)
    assert doc["settings"]["spec"]["widths"] == [256, 256, 256]
    assert all(p["identical"] for p in doc["pairs"]) and len(doc["pairs"]) == 6


@pytest.mark.slow
def test_replay_shows_keras3_protection_and_the_legacy_silent_divergence(tmp_path):
    out = tmp_path / "replay.json"
    result = run_cli("replay", "--epochs", "30", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = load(out)
    assert doc["command"] == "replay" and doc["schema_version"] == 2
    validate(doc)
    assert "Unknown variable" in doc["keras3_shared_outcome"]
    assert doc["fresh"]["keras"] == "keras3" and doc["fresh"]["identical"] is True
    assert doc["fresh"]["cosine_functional"] == doc["fresh"]["cosine_sequential"]
    # tf-keras is in the test extra: the shared legacy optimizer diverges, fresh legacy ones do not
    assert doc["shared"]["keras"] == "tf_keras_legacy" and doc["shared"]["identical"] is False
    assert doc["shared"]["cosine_functional"] != doc["shared"]["cosine_sequential"]
    assert doc["legacy_fresh"]["identical"] is True
    for key in ("shared", "fresh"):
        assert {"cosine_functional", "cosine_sequential", "identical"} <= doc[key].keys()
    assert all(r["initial_weights_identical"] for r in doc["runs"] if r["status"] == "ok")


def _child_log_env(tmp_path, fake_driver: bool) -> tuple[dict[str, str], Path]:
    """PYTHONPATH with a sitecustomize that logs every Python process started (to count framework
    children), and, if asked, a stand-in nvidia-smi on PATH so the machine looks like it has a driver."""
    import os

    site, log = tmp_path / "site", tmp_path / "processes.log"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import sys\nwith open({str(log)!r}, 'a') as f:\n    f.write(' '.join(sys.orig_argv) + '\\n')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    if fake_driver:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    return env, log


@pytest.mark.processes
@pytest.mark.parametrize("fake_driver", [False, True])
def test_gpu_cells_without_a_gpu_skip_after_one_question_per_backend(tmp_path, fake_driver):
    env, log = _child_log_env(tmp_path, fake_driver)
    out = tmp_path / "gpu.json"
    result = run_cli("run", "--device", "gpu", "--backend", "tensorflow,jax,torch", "--batch-sizes", "32",
                     "--api", "functional", "--json", str(out), env=env)
    assert result.returncode == 0, result.stderr
    workers = [line for line in log.read_text().splitlines() if "fitbench.processes.worker" in line]
    # no driver: nothing is started; a driver but no GPU: one child per backend asks, none per cell
    assert len(workers) == (3 if fake_driver else 0), workers
    doc = load(out)
    records = doc["records"]
    assert len(records) == 3 * 2 * 2 + 3 * 2  # backends x jit x variants fit cells + seed cells
    expected = "no GPU visible to" if fake_driver else "no GPU visible: no NVIDIA driver on this machine"
    from fitbench.measure.record import RunRecord

    for r in records:
        assert r["status"] == "skipped" and expected in r["reason"] and r["device"] == "gpu"
        assert set(r) == set(RunRecord.__dataclass_fields__)  # every field of the record, even unmeasured
    # the GPU peak probe is recorded as skipped for each backend, without a process of its own
    assert [(p["backend"], p["status"]) for p in doc["peaks"]] == [
        ("tensorflow", "skipped"), ("jax", "skipped"), ("torch", "skipped")]


def test_the_old_seed_command_still_replays_and_says_it_was_renamed(monkeypatch, capsys):
    from fitbench import cli
    from fitbench.determinism import replay

    calls = []

    def fake_replay(epochs: int, seed: int) -> dict:
        calls.append((epochs, seed))
        runs = [replay.ReplayRun(keras=replay.KERAS3, optimizer_shared=s, status="ok", cosine_functional=0.5,
                                 cosine_sequential=0.5, identical=True) for s in (True, False)]
        return replay.summarise(runs, epochs, legacy_missing=True)

    monkeypatch.setattr(replay, "replay_question", fake_replay)
    assert cli.main(["seed", "--epochs", "3", "--seed", "7"]) == 0
    assert calls == [(3, 7)]
    assert "`fitbench seed` is now `fitbench replay`" in capsys.readouterr().err
    assert cli.main(["replay", "--epochs", "3"]) == 0
    assert "is now" not in capsys.readouterr().err


# ---------- every command's parser, walked ----------

def _options() -> dict[str, list]:
    """{flag: [(command, action)]} over every command's parser."""
    from fitbench.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if a.dest == "command"]
    found: dict[str, list] = {}
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                found.setdefault(action.option_strings[-1], []).append((name, action))
    return found


def test_every_option_of_every_command_says_what_it_does_and_its_default():
    import argparse

    for flag, uses in _options().items():
        for command, action in uses:
            assert action.help, f"fitbench {command} {flag} has no help"
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._StoreTrueAction):
                continue
            if action.default not in (None, False):
                assert "default" in action.help, f"fitbench {command} {flag}: the help does not say its default"


def test_a_flag_shared_by_commands_is_parsed_and_checked_the_same_way():
    # the same name means the same kind of value everywhere: a positive integer is refused at 0 by every
    # command that takes it, a float is a float, a switch is a switch
    # Known, documented exception: `determinism --threads N` is the training processes' intra-op threads (a
    # number; inter-op stays 1), `run`/`versions --threads N|default` every framework pool
    known = {("--threads", "determinism")}
    for flag, uses in _options().items():
        kinds = {(type(action).__name__, getattr(action.type, "__qualname__", repr(action.type)))
                 for command, action in uses if (flag, command) not in known}
        assert len(kinds) == 1, f"{flag} is parsed differently across {[c for c, _ in uses]}: {kinds}"


def test_the_top_level_help_lists_every_command_and_a_typo_is_not_offered_an_old_alias():
    from fitbench.commands import COMMANDS

    result = run_cli("--help")
    for module in COMMANDS:
        assert f"fitbench {module.NAME} " in result.stdout
    typo = run_cli("determinsm")
    assert typo.returncode == 2 and "seed" not in typo.stderr and "'versions'" in typo.stderr


def test_two_writers_of_one_path_the_second_is_refused(tmp_path):
    """Two `fitbench run --json same.json` at once used to both exit 0, the last writer silently winning."""
    from fitbench.report.io import check_output_path

    out = tmp_path / "same.json"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from fitbench.report.io import "
                               "check_output_path; check_output_path(sys.argv[1]); print('held', flush=True); "
                               "time.sleep(30)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=rf"another fitbench \(pid {holder.pid}\) is writing it"):
            check_output_path(str(out))
    finally:
        holder.kill()
        holder.wait()
    assert check_output_path(str(out)) == str(out)  # its writer is gone: the stale lock is taken over


def test_a_bad_value_names_its_flag_once():
    result = run_cli("determinism", "--epochs", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "fitbench: error: --epochs must be a positive integer, got 0"
    result = run_cli("run", "--device", "tpu")  # argparse's own message keeps its "argument" prefix
    assert result.returncode == 2 and result.stderr.startswith("fitbench: error: argument --device: invalid choice")


def test_every_command_takes_its_exit_statuses_from_the_one_table():
    # a number that means one thing whichever command returns it: 3 is "undecided" everywhere, a failed
    # measurement is an error (2) as a failed benchmark is in an alert
    import re

    from fitbench import exits
    from fitbench.commands import common
    from fitbench.determinism import cost, explain
    from fitbench.regress import alertdoc, history

    assert (common.EXIT_OK, common.EXIT_FOUND, common.EXIT_USAGE, common.EXIT_FAILED, common.EXIT_UNDECIDED) == (
        exits.OK, exits.FOUND, exits.ERROR, exits.ERROR, exits.UNDECIDED)
    assert (alertdoc.EXIT_REGRESSION, alertdoc.EXIT_ERROR, alertdoc.EXIT_UNDECIDED) == (1, 2, 3)
    assert (cost.EXIT_OVER, cost.EXIT_UNDECIDED, explain.EXIT_DIVERGED, history.EXIT_UNDECIDED) == (1, 3, 1, 3)
    root = Path(__file__).resolve().parents[1] / "src" / "fitbench"
    literal = re.compile(r"\b(return|sys\.exit\(|SystemExit\()\s*[123]\b")
    commands = [*root.joinpath("commands").glob("*.py"), root / "cli.py"]  # what a command returns is a status
    offenders = [str(p.relative_to(root)) for p in commands if literal.search(p.read_text())]
    assert not offenders, f"exit statuses written as numbers: {offenders}"
