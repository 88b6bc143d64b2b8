"""The process seam: importing any fitbench module loads no framework (each cell and each training runs in a
child started by fitbench.processes.isolation, with its backend chosen before Keras is imported)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

PROBE = """
import importlib, pkgutil, sys
import fitbench
names = [m.name for m in pkgutil.walk_packages(fitbench.__path__, "fitbench.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
loaded = sorted({"keras", "tensorflow", "jax", "torch", "tf_keras"} & set(sys.modules))
print(len(names), loaded)
assert not loaded, loaded
"""


def test_importing_every_module_loads_no_framework():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    count = int(result.stdout.split()[0])
    assert count > 40  # every module was walked, the new ones included


def test_no_module_imports_one_that_imports_it_back():
    """No import cycles, top-level or inside functions: each is a definition in the wrong module (read from
    the sources, so a lazy import counts too)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src"
    modules = {}
    for path in (root / "fitbench").rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fitbench"):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    edges[name].add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name in modules)
    edges = {m: {t for t in targets if t in modules and t != m} for m, targets in edges.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(edges[current])
        return False

    cycles = sorted((a, b) for a, targets in edges.items() for b in targets if a < b and reaches(b, a))
    assert not cycles, cycles


def test_a_childs_environment_is_put_together_in_one_place(monkeypatch):
    """process_env owns a framework child's environment: the backend, Keras 2 only when the stack says so
    (never inherited from the shell), a cpu cell's hidden GPUs, and XLA_FLAGS that keep the user's flags, the
    thread setting and the determinism switch together (each used to overwrite the other)."""
    from fitbench.backends.jax import DETERMINISTIC_OPS as JAX_DETERMINISM_FLAG
    from fitbench.processes.isolation import process_env
    from fitbench.stacks import LEGACY_ENV, Stack

    monkeypatch.setenv(LEGACY_ENV, "1")
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # a gpu child keeps the user's own choice of GPUs
    env = process_env(Stack("jax"), "cpu", threads=1, op_determinism=True)
    assert env["KERAS_BACKEND"] == "jax" and LEGACY_ENV not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "-1" and env["OMP_NUM_THREADS"] == "1"
    flags = env["XLA_FLAGS"].split()
    assert flags[0] == "--xla_dump_to=/tmp/x" and JAX_DETERMINISM_FLAG in flags
    assert "--xla_cpu_multi_thread_eigen=false" in flags
    keras2 = process_env(Stack("tensorflow", 2), "gpu")
    assert keras2[LEGACY_ENV] == "1" and "CUDA_VISIBLE_DEVICES" not in keras2
    assert process_env(Stack("torch"), op_determinism=True)["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_no_module_but_the_launcher_writes_a_childs_framework_variables():
    """KERAS_BACKEND and Keras 2's switch are written by fitbench.processes.isolation (and declared by each backend of
    fitbench.backends, and fitbench.stacks) only; the asv suite, which runs inside asv's own processes, sets what
    its process needs itself."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "fitbench"
    allowed = {"isolation.py", "stacks.py", "asvsuite.py", "regress/asvinit.py", "regress/asvdata.py",
               *(f"backends/{name}.py" for name in ("tensorflow", "jax", "torch", "tf_keras"))}
    writers = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        text = path.read_text()
        if relative not in allowed and ('"TF_USE_LEGACY_KERAS"' in text or '"KERAS_BACKEND"' in text):
            writers.append(relative)
    assert not writers, writers


def test_a_childs_error_line_keeps_the_cause():
    """A model's own exception reached the user as "UnknownError: Graph execution error" with its text lost."""
    from fitbench.processes.worker import error_line

    class UnknownError(Exception):
        pass

    wrapped = UnknownError("Graph execution error:\n\nDetected at node 'x' defined at ...\n"
                           "  File \"mymodel.py\", line 3, in call\nRuntimeError: planted failure in call\n"
                           "\t [[{{node PyFunc}}]]")
    assert error_line(wrapped) == "UnknownError: RuntimeError: planted failure in call"
    assert error_line(ValueError("bad shape (3, 4)\nmore detail")) == "ValueError: bad shape (3, 4)"
    assert error_line(KeyError()) == "KeyError"
    try:
        try:
            raise OSError("disk gone")
        except OSError as inner:
            raise RuntimeError("could not save") from inner
    except RuntimeError as exc:
        assert error_line(exc) == "RuntimeError: could not save (caused by OSError: disk gone)"


def test_temporary_folders_left_by_a_killed_fitbench_are_swept(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    from fitbench.processes.isolation import OWNER_FILE, owned_tempdir, sweep_stale_tempdirs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / "fitbench-det-x7k2_9qa"
    dead.mkdir()
    (dead / OWNER_FILE).write_text(gone.stdout.strip())  # its owner has exited
    users = tmp_path / "fitbench-my-notes"  # not a name tempfile gives fitbench's folders: never touched
    users.mkdir()
    (users / OWNER_FILE).write_text(gone.stdout.strip())
    with owned_tempdir("fitbench-") as mine:
        assert sweep_stale_tempdirs() == [str(dead)]
        assert os.path.isdir(mine)  # this process's own is kept
    assert not os.path.exists(mine) and users.is_dir()


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our own child: reap it, or it stays a zombie that kill(pid, 0) still finds
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def _pid_from(path, seconds: float = 10.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def test_a_stopped_tool_takes_its_own_children_with_it(tmp_path):
    # asv, pip and a nested fitbench start processes of their own: Ctrl-C (or SIGTERM, which fitbench turns into
    # it) must leave none of them running
    import signal
    import threading

    from fitbench.processes.isolation import run_process_group

    grandchild = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {grandchild}; wait"
    # Ctrl-C's own handler, whatever this process inherited (a background job of a script ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_process_group(["bash", "-c", script])
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert _wait_gone(_pid_from(grandchild))


def test_a_tool_dies_with_a_fitbench_killed_outright(tmp_path):
    from fitbench.processes.isolation import run_process_group

    tool_pid = tmp_path / "tool.pid"
    tool = f"import os, time; open({str(tool_pid)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", "import sys; "
                               "from fitbench.processes.isolation import run_process_group; "
                               f"run_process_group([sys.executable, '-c', {tool!r}])"])
    pid = _pid_from(tool_pid)
    parent.kill()  # SIGKILL: no handler of fitbench's runs
    parent.wait()
    assert _wait_gone(pid)
    assert run_process_group([sys.executable, "-c", "raise SystemExit(4)"]) == 4


def test_a_document_that_cannot_be_written_at_the_end_is_kept_and_said_where(tmp_path, monkeypatch, capsys):
    # a full disk after an hour of measuring: the document goes to the cache, never lost, never a traceback
    from fitbench.report import io

    real = io.write_json_atomic
    target = str(tmp_path / "full" / "det.json")

    def full_disk(path: str, doc: dict) -> None:
        if path == target:
            raise OSError(28, "No space left on device")
        real(path, doc)

    monkeypatch.setattr(io, "write_json_atomic", full_disk)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kept = io.keep_document(target, {"command": "determinism", "pairs": [1, 2]})
    assert kept.startswith(str(tmp_path / "cache" / "fitbench" / "documents" / "det-"))
    assert __import__("json").loads(open(kept).read()) == {"command": "determinism", "pairs": [1, 2]}
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"fitbench: cannot write {target} (No space left on device); the document is kept in {kept} instead"


def test_an_output_on_a_disk_already_full_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    # the claim of --json (a lock beside it) on a full disk: the file is created, its first byte is not
    import errno
    import os as os_module

    from fitbench.errors import UsageError
    from fitbench.report import io

    class Full:
        def __init__(self, fd: int, mode: str) -> None:
            os_module.close(fd)

        def __enter__(self) -> "Full":
            return self

        def __exit__(self, *exc: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def write(self, text: str) -> int:
            return len(text)

    monkeypatch.setattr(io.os, "fdopen", Full)
    with pytest.raises(UsageError, match=r"cannot write .*run\.json: No space left on device \(nothing was "
                                         r"measured yet\)"):
        io.check_output_path(str(tmp_path / "run.json"))
    assert os_module.listdir(tmp_path) == []  # no lock left behind, nothing written
