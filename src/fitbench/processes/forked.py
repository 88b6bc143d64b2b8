"""Each cell in a process of its own, without each paying the framework's import: one warm template per
environment (fitbench.processes.template) imports TensorFlow, JAX or PyTorch and Keras once, and every call
runs in a child forked from it.

A forked child is still a process of its own: Keras' backend was chosen by the template's environment, a
determinism switch or thread setting it turns on dies with it, its framework runtime (thread pools, devices)
starts in it and nowhere else. What it shares with its siblings is the template's memory as of the import and
its hash seed; so `fitbench run` (one process per cell, the timings anecdotes) starts its cells this way, and
whatever is a claim about processes — determinism, `cost`, `versions`, the alert — starts fresh interpreters
(fitbench.processes.isolation.run_isolated). The import was most of a cell's time: docs/results.md, "Costs of
fitbench itself", has the default run both ways.

Linux only (a fork of a process holding a framework is unsafe on macOS); anywhere else, and whenever a
template cannot start, a call runs in a fresh interpreter instead, the same result for the caller.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from fitbench.processes.isolation import (
    IsolatedError,
    JsonLines,
    job_outcome,
    owned_tempdir,
    run_isolated,
    target_of,
    write_job,
)

FORK_SUPPORTED = sys.platform.startswith("linux") and hasattr(os, "fork")


class TemplateGone(RuntimeError):
    """The template did not answer as it should (it died, or answered nonsense): start fresh instead."""


class _Template:
    """One warm process of one environment; `call` forks a child of it for one job."""

    def __init__(self, env: dict[str, str], imports: tuple[str, ...]) -> None:
        # its own group: closing it takes every child; what it prints while importing is dropped (its children
        # print into their own files)
        self.proc = subprocess.Popen([sys.executable, "-m", "fitbench.processes.template", str(os.getpid()), *imports],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        self.answers = JsonLines(self.proc.stdout.fileno())
        self.ready: bool | None = None
        self.why = ""
        self.noted = False  # the fall-back to fresh interpreters said once

    def _line(self, deadline: float | None) -> dict[str, Any]:
        try:
            return self.answers.next(deadline)
        except EOFError:
            raise TemplateGone(f"the template exited ({self.proc.poll()})") from None
        except ValueError:
            raise TemplateGone("the template answered something that is not JSON") from None

    def wait_ready(self, timeout_s: float | None) -> bool:
        if self.ready is None:
            try:
                answer = self._line(None if timeout_s is None else time.monotonic() + timeout_s)
                self.ready, self.why = bool(answer.get("ready")), answer.get("error", "")
            except (TimeoutError, TemplateGone) as exc:
                self.ready, self.why = False, str(exc) or "it did not start in time"
        return self.ready

    def call(self, target: str, kwargs: dict[str, Any], timeout_s: float | None) -> Any:
        """The job in a forked child: its result, IsolatedError as run_isolated raises it, or TemplateGone."""
        assert self.proc.stdin is not None
        with owned_tempdir("fitbench-") as tmp:
            # the child's parent is the template: it dies with it
            job_path, result_path = write_job(tmp, target, kwargs, self.proc.pid)
            output_path = os.path.join(tmp, "output.txt")
            try:
                self.proc.stdin.write(json.dumps({"job": job_path, "output": output_path}) + "\n")
                self.proc.stdin.flush()
                started = time.monotonic()
                pid = int(self._line(started + 60.0)["pid"])
            except (OSError, TimeoutError, KeyError, TypeError, ValueError) as exc:
                raise TemplateGone(f"no child was forked ({type(exc).__name__})") from None
            try:
                status = self._line(None if timeout_s is None else started + timeout_s).get("exit")
            except TimeoutError:
                _kill(pid)
                try:
                    self._line(time.monotonic() + 30.0)  # the template reaps it and says so
                except (TimeoutError, TemplateGone):
                    self.ready, self.why = False, "it did not reap a child it was told to stop"
                raise IsolatedError(f"{target} did not finish within {timeout_s:.0f} s") from None
            except BaseException:  # Ctrl-C, SIGTERM: the child goes before we do (the template with close())
                _kill(pid)
                raise
            return job_outcome(target, result_path, status, _read(output_path))

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()  # the end of its requests: it exits
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # and whatever of its group is left
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class WarmProcesses:
    """Templates by environment, for the length of a `with` block (closed, with every child, on the way out).
    `call` returns what run_isolated would: a fresh interpreter when forking is off, unsupported, or the
    environment's template could not start (said once through `note`)."""

    def __init__(self, enabled: bool = True, note: Callable[[str], None] = lambda line: None) -> None:
        self.enabled = enabled and FORK_SUPPORTED
        self.note = note
        self._templates: dict[tuple[Any, ...], _Template] = {}

    def __enter__(self) -> "WarmProcesses":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for template in self._templates.values():
            template.close()
        self._templates.clear()

    def call(self, func: Callable[..., Any], kwargs: dict[str, Any], env: dict[str, str],
             imports: tuple[str, ...], timeout_s: float | None = None) -> Any:
        if not self.enabled:
            return run_isolated(func, kwargs, env=env, timeout_s=timeout_s)
        target = target_of(func)
        key = (tuple(sorted(env.items())), imports)  # a probe and the cells of one environment share one
        template = self._templates.get(key)
        if template is None:  # the first caller's module is imported there too; another's, in its children
            template = _Template(env, (*imports, target.split(":")[0]))
            self._templates[key] = template
        if template.wait_ready(timeout_s):
            try:
                return template.call(target, kwargs, timeout_s)
            except TemplateGone as exc:
                template.ready, template.why = False, str(exc)
        if not template.noted:
            template.noted = True
            self.note(f"cells of this environment start fresh interpreters: its warm template failed "
                      f"({template.why or 'no reason given'})")
        return run_isolated(func, kwargs, env=env, timeout_s=timeout_s)
