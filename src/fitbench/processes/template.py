"""A warm template process: `python -m fitbench.processes.template PARENT_PID MODULE ...` (see
fitbench.processes.forked).

It imports the modules (the framework and Keras: the seconds every fresh process pays before its first
step), answers `{"ready": true}`, then for every `{"job": JOB.json, "output": FILE}` line on stdin forks a
child that runs the job exactly as fitbench.processes.worker does in a fresh interpreter (its prints and
traceback into FILE), answers `{"pid": PID}` at once and `{"exit": STATUS}` when the child is gone.
`{"stop": true}` or the end of stdin ends it. Nothing in here may start a thread or run a framework op: a fork
copies only the calling thread, and a framework's runtime (its thread pools, a GPU context) starts only in the
children, each its own.
"""

from __future__ import annotations

import importlib
import json
import os
import sys


def _child(job_path: str, output_path: str, answers_fd: int) -> None:
    """In the forked child: never returns (os._exit: no atexit handler or buffer of the template runs twice)."""
    code = 70
    try:
        os.close(answers_fd)  # the template's answers are not the child's to hold open
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the requests on stdin are the template's
        out = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        from fitbench.processes import worker

        code = worker.main(job_path)  # dies with the template (worker: die_with_parent of the job's parent_pid)
    except BaseException:  # noqa: BLE001 - whatever happens, this process must end here
        try:
            import traceback

            traceback.print_exc()
        finally:
            code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str]) -> int:
    from fitbench.processes.isolation import die_with_parent

    die_with_parent(int(argv[1]))
    answers = os.fdopen(os.dup(1), "w")  # the protocol keeps the original stdout ...
    os.dup2(2, 1)  # ... and whatever an import prints goes to stderr

    def answer(**fields: object) -> None:
        answers.write(json.dumps(fields) + "\n")
        answers.flush()

    try:
        for name in argv[2:]:
            importlib.import_module(name)
    except Exception as exc:  # the parent falls back to fresh processes and says why
        from fitbench.processes.worker import error_line

        answer(ready=False, error=error_line(exc))
        return 1
    answer(ready=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("stop"):
            break
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request["job"], request["output"], answers.fileno())
        answer(pid=pid)
        _, status = os.waitpid(pid, 0)
        answer(exit=os.waitstatus_to_exitcode(status))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
