"""Warm templates (fitbench.processes.forked): each call a process of its own, forked from a process that
imported once; errors, crashes and timeouts as run_isolated gives them; a template that cannot start falls
back to fresh interpreters. Plain Python jobs (tests/forked_jobs.py): no framework, a second each."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

from fitbench.processes import forked
from fitbench.processes.forked import WarmProcesses
from fitbench.processes.isolation import IsolatedError

pytestmark = pytest.mark.skipif(not forked.FORK_SUPPORTED, reason="forking templates are Linux-only")

TESTS = str(Path(__file__).parent)


def job(name: str, module: str = "forked_jobs"):
    sys.path.insert(0, TESTS)
    try:
        return getattr(importlib.import_module(module), name)
    finally:
        sys.path.remove(TESTS)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}


def test_every_call_is_a_child_of_one_template_that_imported_once():
    with WarmProcesses() as warm:
        first = warm.call(job("whoami"), {"x": 1}, env(), ("json",))
        second = warm.call(job("whoami"), {"x": 2}, env(), ("json",))
        (template,) = warm._templates.values()
        template_pid = template.proc.pid
    assert (first["x"], second["x"]) == (1, 2)
    assert first["pid"] != second["pid"] != os.getpid()  # each call its own process
    assert first["ppid"] == second["ppid"] == template_pid  # both forked from the template
    assert first["imported_in"] == second["imported_in"] == template_pid  # imported there, not in each child
    assert template.proc.returncode is not None  # closed with the block


def test_another_environment_gets_another_template():
    with WarmProcesses() as warm:
        a = warm.call(job("whoami"), {"x": 1}, env(), ())
        b = warm.call(job("whoami"), {"x": 1}, {**env(), "FITBENCH_TEST_MARK": "1"}, ())
        assert len(warm._templates) == 2
    assert a["ppid"] != b["ppid"]


def test_an_error_in_the_child_is_one_line_and_the_template_goes_on():
    with WarmProcesses() as warm:
        with pytest.raises(IsolatedError) as caught:
            warm.call(job("fail"), {}, env(), ())
        assert str(caught.value) == "ValueError: planted failure in the child"
        assert "Traceback" in caught.value.stderr  # the child's traceback, kept for whoever wants it
        assert warm.call(job("whoami"), {"x": 3}, env(), ())["x"] == 3


def test_a_child_that_dies_without_a_result_says_its_status_and_last_line():
    with WarmProcesses() as warm:
        with pytest.raises(IsolatedError, match=r"exited with status 9: about to leave without a result"):
            warm.call(job("exit_hard"), {"code": 9}, env(), ())


def test_a_child_past_its_timeout_is_killed_and_the_next_call_still_runs():
    with WarmProcesses() as warm:
        with pytest.raises(IsolatedError, match=r"did not finish within 1 s"):
            warm.call(job("sleep_for"), {"seconds": 60}, env(), (), timeout_s=1)
        assert warm.call(job("whoami"), {"x": 4}, env(), ())["x"] == 4


def test_a_template_that_cannot_import_falls_back_to_fresh_interpreters_and_says_so_once():
    notes: list[str] = []
    with WarmProcesses(note=notes.append) as warm:
        results = [warm.call(job("whoami"), {"x": i}, env(), ("no_such_module_anywhere",)) for i in range(2)]
    assert [r["x"] for r in results] == [0, 1]
    assert all(r["imported_in"] == r["pid"] for r in results)  # a fresh interpreter imported it itself
    assert len(notes) == 1 and "ModuleNotFoundError" in notes[0] and "fresh interpreters" in notes[0]


def test_disabled_it_starts_fresh_interpreters():
    with WarmProcesses(enabled=False) as warm:
        result = warm.call(job("whoami"), {"x": 5}, env(), ())
        assert not warm._templates
    assert result["imported_in"] == result["pid"] and result["ppid"] == os.getpid()



def test_jobs_of_two_modules_in_one_environment_share_its_template():
    # a backend's peak probe and its cells: one import of the framework, not one per module
    with WarmProcesses() as warm:
        a = warm.call(job("whoami"), {"x": 1}, env(), ("json",))
        b = warm.call(job("whoami", "forked_jobs_elsewhere"), {}, env(), ("json",))
        assert len(warm._templates) == 1
    assert b["ppid"] == a["ppid"] and b["module"] == "forked_jobs_elsewhere"


def test_a_gpu_s_cells_and_probes_never_fork(monkeypatch):
    # Keras' import asks the framework for its devices (torch.cuda.is_available on torch), which can start the
    # GPU driver in the template, and a started CUDA driver does not survive a fork
    from fitbench.measure import engine
    from fitbench.stacks import Stack

    started: list[str] = []
    monkeypatch.setattr(engine, "run_isolated", lambda func, kwargs, env, timeout_s: started.append("fresh"))

    class Warm:
        def call(self, *args: object) -> None:
            started.append("forked")

    for device in ("gpu", "cpu"):
        engine._call(Warm(), print, {}, {}, Stack("torch"), 10.0, device)  # type: ignore[arg-type]
    assert started == ["fresh", "forked"]
