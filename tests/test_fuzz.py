"""Every command's argument grammar, fuzzed (hypothesis): whatever a user types, fitbench answers with its help
(exit 0), with one line and exit 2 leaving nothing written, or accepts it and starts its work — never a
traceback, never exit 1 (a CI job reads 1 as "found"), never fitbench's own internal error.

"Starts its work" is the first process fitbench would start (a cell, git, asv, pip): every one goes through
subprocess.Popen, which is replaced here by an exception that ends the example, so no input runs anything.
Examples are derandomized (the same inputs on every CI run); FITBENCH_FUZZ_EXAMPLES=5000 FITBENCH_FUZZ_RANDOM=1
explores further by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import tempfile
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fitbench import cli
from fitbench.report.io import release_outputs

EXAMPLES = int(os.environ.get("FITBENCH_FUZZ_EXAMPLES", "400"))
RANDOM = bool(os.environ.get("FITBENCH_FUZZ_RANDOM"))

# Values a hurried or adversarial user types: empty and blank, separators alone, signs, huge and non-finite
# numbers, real names in the wrong place, paths that cannot be written, very long text, non-ASCII.
TRICKY = ["", " ", ",", ",,", "0", "-1", "1", "2", "7", "0.5", "-0.5", "1.5", "10", "1e400", "nan", "inf", "-inf",
          "99999999999999999999", "4294967296", "a,,b", "1,,2", "32,", ",32", "tensorflow", "jax,torch", "tf-keras",
          "tensorflow,nosuch", "functional", "sequential,subclassed", "cpu", "gpu", "on", "both", "default",
          "x" * 300, "out.json", "sub/out.json", "/proc/version", "/nonexistent/dir/out.json", ".", "..",
          "mymodels:build", "nosuchmodule:f", "keras==3.15.*", "keras==", "installed", "HEAD", "HEAD~1",
          "nosuchrev", "StepTime", "(", "[a-", "é", "-x", "--", "0-1", "1-0", "256,256"]
VALUES = st.one_of(st.sampled_from(TRICKY),
                   st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12))


class Started(BaseException):
    """The input was accepted: fitbench went on to start a process. BaseException, so no handler of
    fitbench's catches it."""


def _commands() -> dict[str, list[argparse.Action]]:
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: [a for a in p._actions if a.dest != "help"] for name, p in sub.choices.items()}


COMMANDS = _commands()


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    actions = COMMANDS[name]
    argv = [name]
    for action in actions:
        if not action.option_strings:  # a positional: usually given, sometimes not
            if draw(st.integers(0, 5)):
                argv.append(draw(VALUES))
    options = [a for a in actions if a.option_strings]
    for action in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        argv.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs == 0:
            continue
        if action.choices and draw(st.booleans()):
            argv.append(str(draw(st.sampled_from(list(action.choices)))))
        else:
            argv.append(draw(VALUES))
    return argv


@pytest.fixture(scope="module")
def workdir():
    # An empty folder that is not a git repository, with the caches beside it: nothing lands in the user's home.
    with tempfile.TemporaryDirectory() as folder:
        old = os.getcwd()
        os.makedirs(os.path.join(folder, "cwd"))
        os.chdir(os.path.join(folder, "cwd"))
        env = {"XDG_CACHE_HOME": os.path.join(folder, "cache"), "FITBENCH_ENV_CACHE": os.path.join(folder, "envs")}
        with mock.patch.dict(os.environ, env):
            try:
                yield os.path.join(folder, "cwd")
            finally:
                os.chdir(old)


def _popen(*args: object, **kwargs: object) -> None:
    raise Started()


def _files(folder: str) -> set[str]:
    return {os.path.relpath(os.path.join(root, f), folder) for root, dirs, files in os.walk(folder)
            for f in files + dirs}


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=command_lines())
def test_any_command_line_is_help_one_line_and_exit_2_or_accepted(workdir, argv):
    before = _files(workdir)
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(subprocess.Popen, "__init__", _popen), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as exc:  # argparse: --help/--version (0) or a refused value (2)
            status = exc.code
        except Started:
            status = "started"
    release_outputs()  # what the end of a real process does: its output locks go
    text = err.getvalue()
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    assert status in (0, 2, "started"), (argv, status, text)
    if status == 2:
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fitbench: error: "), (argv, text)
        assert _files(workdir) == before, (argv, "a refused command wrote", _files(workdir) - before)
    for path in _files(workdir) - before:  # an accepted command may have claimed its output: not ours to keep
        full = os.path.join(workdir, path)
        if os.path.isfile(full):
            os.remove(full)


def test_the_grammar_covers_every_command_and_option():
    # The fuzz draws from the parsers themselves: a new command or option is fuzzed without a change here.
    assert {"run", "determinism", "explain", "replay", "versions", "alert", "bisect", "history", "calibrate",
            "gate", "asv-init"} <= set(COMMANDS)
    assert all(any(a.option_strings for a in actions) for actions in COMMANDS.values())
