"""Run one fitbench function in a fresh Python process and get its JSON-able result back.

Keras picks its backend at import and TF op determinism cannot be turned off once on, so every cell
that touches a framework runs here, in a child started with the environment it needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterator

from fitbench.backends.common import merge_env
from fitbench.processes.runtime import determinism_env, hide_gpus_env, thread_env
from fitbench.stacks import LEGACY_ENV, Stack


class IsolatedError(RuntimeError):
    """The child process failed; the message is its last error line, `stderr` what the child printed (its
    traceback), for whoever wants to keep it."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


def parent_env() -> dict[str, str]:
    """This process's environment as the base of a child's: TF's C++ start-up chatter off, and no Keras 2
    switch inherited from the user's shell (a child is Keras 2 only when its stack says so)."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop(LEGACY_ENV, None)
    return env


def process_env(stack: Stack | None = None, device: str = "cpu", *, threads: int | None = None,
                op_determinism: bool | str | None = False, device_count: int = 1) -> dict[str, str]:
    """The environment of a framework child, the one place it is put together: the backend Keras picks at
    import, the Keras major version, a 'cpu' cell's hidden GPUs, the thread pools (None: the framework's
    defaults) and the backend's determinism switch where it is an environment variable (True: its default
    switch, a name: that one of fitbench.determinism.switch) and a devices axis' simulated devices."""
    from fitbench import backends
    from fitbench.measure.distributed import device_env

    stack = stack or Stack()
    return merge_env(parent_env(), backends.get(stack.name).child_env(), hide_gpus_env(device),
                     thread_env(stack.backend, threads), determinism_env(stack.backend, op_determinism),
                     device_env(stack.backend, device, device_count))


def child_env(extra: dict[str, str] | None = None, backend: str = "tensorflow") -> dict[str, str]:
    """A Keras 3 child of `backend` with `extra` on top (scripts and old callers; fitbench builds its
    children's environments with process_env)."""
    return merge_env(process_env(Stack(backend), device="gpu"), extra or {})


def die_with_parent(parent_pid: int | None) -> None:
    """Called first thing in a worker: have Linux kill it when its parent dies (SIGKILL included), so a worker
    never runs on to no one, its result lost; if the parent is already gone, exit. Set in the worker rather than
    in a preexec_fn, which is unsafe in a parent with threads (rich's progress bar has one). Elsewhere nothing:
    SIGTERM and Ctrl-C already kill the child on the way out of subprocess.run."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG = 1, SIGKILL = 9
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before the line above
        os._exit(1)


# Exec'd in front of a tool's command: the tool gets SIGTERM when fitbench dies, even by SIGKILL (the death
# signal survives exec), instead of running on to no one; a preexec_fn would do it unsafely in a threaded parent.
_DIE_WITH_PARENT_EXEC = ("import ctypes, os, sys; ctypes.CDLL(None).prctl(1, 15); "
                         "os.getppid() == int(sys.argv[1]) or os._exit(1); os.execvp(sys.argv[2], sys.argv[2:])")


def run_process_group(cmd: list[str], grace_s: float = 5.0, on_line: Callable[[str], None] | None = None,
                      **popen_kwargs: Any) -> int:
    """Run a tool that starts processes of its own (asv, pip, a nested fitbench) in a process group of its own
    and return its exit status. Ctrl-C, SIGTERM or an error here stop the whole group: SIGTERM, `grace_s` to
    finish, then SIGKILL, every process reaped before this returns; on Linux the tool also dies with fitbench.
    `on_line`: each line the tool prints is also handed to it (and still written to `stdout`, a file)."""
    if sys.platform.startswith("linux"):
        cmd = [sys.executable, "-c", _DIE_WITH_PARENT_EXEC, str(os.getpid()), *cmd]
    sink = popen_kwargs.pop("stdout", None) if on_line else None
    if on_line:
        popen_kwargs.update(stdout=subprocess.PIPE, text=True, errors="replace")
    proc = subprocess.Popen(cmd, start_new_session=True, **popen_kwargs)
    try:
        if on_line and proc.stdout is not None:
            for line in proc.stdout:
                if sink is not None:
                    sink.write(line)
                    sink.flush()
                on_line(line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace_s)
                os.killpg(proc.pid, signal.SIGKILL)  # what the tool's own children left running
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                pass
            break
        proc.wait()
        raise


@contextlib.contextmanager
def heartbeat(progress: Callable[[str], None] | None, what: str, every_s: float = 15.0) -> Iterator[None]:
    """While the body runs, `progress(what + elapsed)` every `every_s` seconds from a daemon thread: a step
    that prints nothing for long (asv building an environment) still shows a line in a terminal or a CI log,
    which a user reads as "stuck" after half a minute."""
    if progress is None:
        yield
        return
    import threading

    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(every_s):
            progress(f"{what}: {time.monotonic() - started:.0f} s so far")

    thread = threading.Thread(target=beat, name="fitbench-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


OWNER_FILE = ".fitbench-owner"


@contextlib.contextmanager
def owned_tempdir(prefix: str = "fitbench-") -> Iterator[str]:
    """A temporary folder that names its owner's pid, so that one left behind by a killed fitbench (whose
    cleanup never ran) is recognised and removed by the next command (sweep_stale_tempdirs)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        with open(os.path.join(path, OWNER_FILE), "w") as f:
            f.write(str(os.getpid()))
        yield path


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (someone else's counts: signalling it is merely not allowed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMP_NAME = re.compile(r"^fitbench-(?:det-|explain-|versions-)?[a-z0-9_]{8}$")  # what tempfile makes


def sweep_stale_tempdirs(max_age_without_owner_s: float = 86400) -> list[str]:
    """Remove fitbench's temporary folders whose owner is gone: named as tempfile names fitbench's folders,
    and either holding an owner file whose pid is dead, or (older fitbench, no owner file) holding a worker's
    job.json and untouched for a day. A folder of the user's that only starts with "fitbench-" is never
    touched. Returns what it removed."""
    root = tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(root) if _TEMP_NAME.match(n)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(root, name)
        try:
            if not os.path.isdir(path) or os.path.islink(path):
                continue
            owner = os.path.join(path, OWNER_FILE)
            if os.path.exists(owner):
                with open(owner) as f:
                    stale = not pid_alive(int(f.read().strip() or 0))
            else:
                stale = (os.path.exists(os.path.join(path, "job.json"))
                         and time.time() - os.path.getmtime(path) > max_age_without_owner_s)
            if stale:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except (OSError, ValueError):
            continue
    return removed


def target_of(func: Callable[..., Any]) -> str:
    """"module:function" for a module-level function: what the child imports (it shares no memory with us)."""
    module, name = func.__module__, func.__qualname__
    if "." in name or "<" in name or module == "__main__":
        raise ValueError(f"{module}.{name} is not a module-level function a fresh process can import")
    return f"{module}:{name}"


def write_job(folder: str, target: str, kwargs: dict[str, Any], parent_pid: int) -> tuple[str, str]:
    """A worker's job file in `folder` (fitbench.processes.worker reads it; the worker dies with
    `parent_pid`): returns (job path, the path its result will be written to)."""
    job_path, result_path = os.path.join(folder, "job.json"), os.path.join(folder, "result.json")
    with open(job_path, "w") as f:
        json.dump({"target": target, "kwargs": kwargs, "result_path": result_path, "parent_pid": parent_pid}, f)
    return job_path, result_path


def job_outcome(target: str, result_path: str, status: int | None, output: str) -> Any:
    """What a finished worker left: its result, or IsolatedError with its one-line error (and `output`, what it
    printed), or, when it wrote nothing, its exit status and last line."""
    if os.path.exists(result_path):
        with open(result_path) as f:
            outcome = json.load(f)
        if "error" in outcome:
            raise IsolatedError(outcome["error"], output)
        return outcome["result"]
    tail = [line for line in output.strip().splitlines() if line.strip()]
    raise IsolatedError(f"{target} exited with status {status}: {tail[-1] if tail else 'no output'}")


class JsonLines:
    """A child's answers, one JSON object per line, read from a pipe's descriptor with a deadline. Buffered
    here, with os.read: select() knows nothing of a file object's buffer, so a second answer could sit unseen
    behind the first."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, b""

    def next(self, deadline: float | None) -> dict[str, Any]:
        """The next answer; TimeoutError when none came by `deadline` (time.monotonic(); None: wait), EOFError
        when the child closed its end, ValueError when the line is not JSON."""
        while b"\n" not in self.pending:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)


def run_isolated(func: Callable[..., Any], kwargs: dict[str, Any], env: dict[str, str] | None = None,
                 timeout_s: float | None = None) -> Any:
    """Call `func(**kwargs)` in a new interpreter (it imports func's module afresh, with `env`); return its
    JSON-able result or raise IsolatedError. Keyword arguments and the result cross as JSON."""
    target = target_of(func)
    with owned_tempdir("fitbench-") as tmp:
        job_path, result_path = write_job(tmp, target, kwargs, os.getpid())
        proc = subprocess.Popen([sys.executable, "-m", "fitbench.processes.worker", job_path],
                                env=env if env is not None else child_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, stderr = proc.communicate(timeout=timeout_s)
        except BaseException as exc:  # a timeout, Ctrl-C, SIGTERM: the child goes, and is reaped, before we do
            proc.kill()
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise IsolatedError(f"{target} did not finish within {timeout_s:.0f} s") from None
            raise
        return job_outcome(target, result_path, proc.returncode, stderr)
