"""The fault tier, by hand: each command stopped or starved the ways CI and people do it, and what the user gets.

    python scripts/fault_matrix.py --out docs/results/fault-matrix-DATE.json [--only run,determinism]

For every (command, fault) it starts the command in a folder of its own, waits until the command has started a
child (a cell's worker, asv, a nested fitbench), then applies the fault: SIGINT (Ctrl-C), SIGTERM (a CI
timeout), SIGHUP (a closed terminal), SIGKILL of fitbench alone (an OOM killer), or a full disk (the output on
a 64 KiB tmpfs that is filled once the command runs; needs root). It records the exit status, the last line on
stderr, whether a traceback was printed, whether the output it names is whole JSON, how many finished cells it
kept, and which processes of the command were still alive 10 s later (found by a tag in their environment,
which every child inherits) and which fitbench temporary folders were left (after the next command, which
sweeps what a killed fitbench left). `--summary` prints the Markdown table of docs/faults.md from the JSON.

Not in CI (minutes of framework processes); the one signal case CI keeps is tests/test_cli.py's SIGTERM run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SMALL = ["--widths", "16,16"]
# Each command, small, with the output it writes ({out} is the output path, {dir} the command's folder).
COMMANDS = {
    "run": ["run", *SMALL, "--api", "functional,sequential", "--batch-sizes", "2,4,8", "--jit", "off",
            "--backend", "tensorflow,jax", "--no-floor", "--json", "{out}"],
    "determinism": ["determinism", *SMALL, "--epochs", "30", "--samples", "64", "--json", "{out}"],
    "explain": ["explain", "--pair", "nudge", "--api", "functional", "--epochs", "3", "--widths", "16,16",
                "--json", "{out}"],
    "replay": ["replay", "--epochs", "50", "--json", "{out}"],
}
FAULTS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGKILL", "full-disk")
ROOT = Path(__file__).resolve().parents[1]


def toy_alert(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """`fitbench alert` on the tests' toy asv suite (a 20 ms step, a 30 % slower head): asv and its benchmark
    processes are what a fault has to stop."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_alert_stages import commit, toy_repo  # the same toy the alert tier uses

    repo = toy_repo(workdir / "toy")
    base, slow = commit(repo, "base"), commit(repo, "30 % slower", scale=1.3)
    state = workdir / "toy-state"
    state.mkdir()
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=repo, check=True, capture_output=True)
    return (["alert", base, slow, "--repo", str(repo), "--bench", "StepTime", "--processes", "8", "--stages", "1",
             "--out", "{dir}/alert-report"], {"TOY_STATE": str(state)})


def _tagged(tag: str) -> list[int]:
    """Processes whose environment carries the tag: the command and every child it started."""
    found = []
    for env_path in glob.glob("/proc/[0-9]*/environ"):
        try:
            if tag.encode() in Path(env_path).read_bytes():
                found.append(int(env_path.split("/")[2]))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def _temp_dirs(tmp: Path) -> set[str]:
    return set(glob.glob(os.path.join(tmp, "fitbench-*")))


def _as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _whole_json(path: Path) -> tuple[bool | None, int | None]:
    if not path.exists():
        return None, None
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        return False, None
    kept = doc.get("records") if isinstance(doc.get("records"), list) else None
    return True, len([r for r in kept if r.get("status") == "ok"]) if kept is not None else None


def _mount_tiny(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def trial(command: str, fault: str, workdir: Path, first_child_s: float, extra_env: dict[str, str]) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"{command}-{fault}-", dir=workdir))
    out_dir = folder / "tiny" if fault == "full-disk" else folder
    if fault == "full-disk" and not _mount_tiny(out_dir):
        return {"command": command, "fault": fault, "skipped": "cannot mount a tmpfs (not root?)"}
    out = out_dir / "out.json"
    tag = f"FITBENCH_FAULT_TAG={uuid.uuid4().hex}"
    tmp = folder / "tmp"  # the command's own temporary folder: what it leaves there is its own
    tmp.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "XDG_CACHE_HOME": str(folder / "cache"), "TMPDIR": str(tmp),
           tag.split("=")[0]: tag.split("=")[1], **extra_env}
    argv = [a.replace("{out}", str(out)).replace("{dir}", str(out_dir)) for a in COMMANDS[command]]
    if command == "alert":
        out = out_dir / "alert-report" / "alert.json"
    temps_before = _temp_dirs(tmp)
    started = time.monotonic()
    # its own session, so that our Ctrl-C never reaches it by accident; SIGINT and SIGHUP at their defaults, as
    # a terminal starts a command (under nohup, or as a background job of a script, a command inherits them
    # ignored, and keeps them ignored: that is what nohup is for)
    proc = subprocess.Popen([sys.executable, "-m", "fitbench", *argv], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)
    # wait until a child of the command runs, and for `first_child_s` more (a cell well under way)
    while time.monotonic() - started < 300 and proc.poll() is None:
        if [p for p in _tagged(tag.split("=")[1]) if p != proc.pid]:
            break
        time.sleep(0.2)
    time.sleep(first_child_s)
    applied_after = round(time.monotonic() - started, 1)
    if fault == "full-disk":
        try:  # leave the disk full for the command's last write (the close fails, full)
            with open(out_dir / "filler", "wb") as f:
                f.write(b"\0" * 64 * 1024)
        except OSError:
            pass
        stdout, stderr = proc.communicate(timeout=1800)
    elif fault == "SIGKILL":
        proc.kill()
        stdout, stderr = proc.communicate()
    else:
        proc.send_signal(getattr(signal, fault))
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    time.sleep(10)
    alive = _tagged(tag.split("=")[1])
    for pid in alive:  # do not let one trial's orphans disturb the next
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    whole, kept = _whole_json(out)
    mine = folder / "cache" / "fitbench"
    kept_elsewhere = sorted(str(p.relative_to(folder)) for p in mine.rglob("*.json")) if mine.exists() else []
    if fault == "full-disk":  # where the run said it kept its cells instead
        for line in stderr.splitlines():
            if "kept in" in line:
                kept_elsewhere.append(line.strip())
    # the next command sweeps what a killed fitbench left behind (any command that gets past its parser)
    subprocess.run([sys.executable, "-m", "fitbench", "gate", "--base", "a.json", "b.json", "--head", "c.json",
                    "d.json"], capture_output=True, env=env, cwd=folder)
    temps_left = sorted(_temp_dirs(tmp) - temps_before)
    if fault == "full-disk":
        subprocess.run(["umount", str(out_dir)], capture_output=True)
    lines = [line for line in stderr.splitlines() if line.strip()]
    result = {"command": command, "fault": fault, "fault_after_s": applied_after, "exit_status": proc.returncode,
              "last_stderr_line": lines[-1][:300] if lines else "", "traceback": "Traceback" in stderr,
              "output_whole_json": whole, "cells_kept_in_output": kept, "kept_elsewhere": kept_elsewhere,
              "processes_left": len(alive), "temp_dirs_left": temps_left,
              "stdout_tail": stdout.strip().splitlines()[-1][:200] if stdout.strip() else "",
              "interrupted_line": next((x.strip() for x in (stdout + stderr).splitlines()
                                        if "interrupted" in x), None)}
    shutil.rmtree(folder, ignore_errors=True)
    return result


def summary(results: list[dict]) -> str:
    rows = ["| command | fault | at s | exit | what the user reads (the interrupted line, else stderr's last) "
            "| output | cells kept | processes left | temp folders left | traceback |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r.get("skipped"):
            rows.append(f"| {r['command']} | {r['fault']} | | – | skipped: {r['skipped']} | | | | | |")
            continue
        output = {None: "none", True: "whole JSON", False: "**broken**"}[r["output_whole_json"]]
        kept = r["cells_kept_in_output"]
        said = r.get("interrupted_line") or r["last_stderr_line"] or "–"
        rows.append(f"| {r['command']} | {r['fault']} | {r['fault_after_s']:.0f} | {r['exit_status']} | {said} | "
                    f"{output} | {'–' if kept is None else kept} | {r['processes_left']} | "
                    f"{len(r['temp_dirs_left'])} | {'**yes**' if r['traceback'] else 'no'} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON lines, one per trial (appended)")
    parser.add_argument("--only", default=",".join([*COMMANDS, "alert"]), help="commands, comma-separated")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--after", type=float, default=3.0, help="seconds after the first child to apply the fault")
    parser.add_argument("--summary", action="store_true", help="print the Markdown table of --out and stop")
    args = parser.parse_args()
    if args.summary:
        print(summary([json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="fault-matrix-"))
    extra_env: dict[str, str] = {}
    if "alert" in args.only.split(","):
        COMMANDS["alert"], extra_env = toy_alert(workdir)
    for command in args.only.split(","):
        for fault in args.faults.split(","):
            result = trial(command, fault, workdir, args.after, extra_env)
            print(json.dumps(result), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(result) + "\n")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
