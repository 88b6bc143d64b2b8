"""Output files: a path checked before any work starts, and JSON written whole or not at all."""

from __future__ import annotations

import atexit
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from typing import Any

from fitbench.errors import UsageError
from fitbench.processes.isolation import pid_alive


def check_output_path(path: str) -> str:
    """Refuse, before any work starts, a path that cannot be written."""
    target = os.path.abspath(path)
    parent = os.path.dirname(target)
    if os.path.isdir(target):
        raise UsageError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(target) and not os.access(target, os.W_OK)):
        raise UsageError(f"cannot write {path}: permission denied")
    claim_output(target, path)
    return target


_CLAIMED: set[str] = set()


def claim_output(target: str, shown: str | None = None) -> None:
    """One writer per output path: a lock file beside it (`.NAME.fitbench-lock`, holding the writer's pid) for
    as long as this process runs. A second fitbench writing the same file is refused in one line instead of
    the last writer silently winning; a lock whose process is gone (killed) is taken over."""
    lock = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.fitbench-lock")
    if lock in _CLAIMED:
        return
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(lock) as f:
                    holder = int(f.read().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and pid_alive(holder):
                raise UsageError(f"cannot write {shown or target}: another fitbench (pid {holder}) is writing it") \
                    from None
            try:
                os.unlink(lock)  # stale: its writer is gone
            except FileNotFoundError:
                pass
            continue
        except OSError as exc:  # a folder that passed os.access but takes no new file (/proc as root, read-only)
            raise UsageError(f"cannot write {shown or target}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:  # a full disk takes the new file, not a byte in it
            try:
                os.unlink(lock)
            except OSError:
                pass
            raise UsageError(f"cannot write {shown or target}: {exc.strerror or exc} (nothing was measured yet)") \
                from None
        if not _CLAIMED:
            atexit.register(release_outputs)
        _CLAIMED.add(lock)
        return


def release_outputs() -> None:
    """Remove this process's output locks (at exit; a test that runs many commands in one process, between
    them)."""
    for lock in list(_CLAIMED):
        _CLAIMED.discard(lock)
        try:
            with open(lock) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(lock)
        except OSError:
            pass


def check_output_dir(path: str, name: str) -> str:
    """Refuse, before any work starts, a folder that cannot be made or written (a file in its place, a parent
    that is missing or not writable)."""
    target = os.path.abspath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise UsageError(f"{name} {path}: a file is in the way (a folder is written there)")
    if os.path.isdir(target):
        if not os.access(target, os.W_OK):
            raise UsageError(f"{name} {path}: permission denied")
        return target
    parent = os.path.dirname(target)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise UsageError(f"{name} {path}: {parent} is not a writable directory")
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename: never half a file."""
    target = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".fitbench-", suffix=".tmp", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # what open() would have given; mkstemp's file is private
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, doc: dict[str, Any]) -> None:
    """The whole document, or no file (`write_text_atomic`). Infinite and NaN floats are written as null
    (`finite_or_null`)."""
    write_text_atomic(path, json.dumps(finite_or_null(doc), indent=2, allow_nan=False) + "\n")


def finite_or_null(value: Any) -> Any:
    """The document with every infinite or NaN float replaced by None: JSON has no infinity, and where
    fitbench computes one (an interval with no upper end, a change no number of these processes could
    detect) the document says null and the text beside it says why."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def utc_stamp() -> str:
    """Now, UTC, ISO 8601 to the second: the `started`/`finished`/`created` of every document."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def cache_dir(kind: str) -> str:
    """$XDG_CACHE_HOME/fitbench/KIND (~/.cache/fitbench/KIND), made if it can be; else the temporary folder's."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (os.path.join(cache, "fitbench", kind), os.path.join(tempfile.gettempdir(), f"fitbench-{kind}")):
        try:
            os.makedirs(folder, exist_ok=True)
            return folder
        except OSError:
            continue
    return tempfile.gettempdir()


def keep_document(path: str, doc: dict[str, Any]) -> str:
    """Write `doc` to `path`; when that fails at the end (a full disk, a path that passed the up-front check
    but takes no file), keep it in the cache instead and say where on stderr, so that what was measured is
    never lost to the output. Returns the path it is in."""
    try:
        write_json_atomic(path, doc)
        return path
    except OSError as exc:
        name = os.path.splitext(os.path.basename(path))[0] or "document"
        fallback = os.path.join(cache_dir("documents"), f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json")
        write_json_atomic(fallback, doc)
        sys.stderr.write(f"fitbench: cannot write {path} ({exc.strerror or exc}); the document is kept in "
                         f"{fallback} instead\n")
        return fallback


def keep_markdown(path: str | os.PathLike[str], text: str) -> None:
    """Write a Markdown report; when that fails, say so in one line and go on: every command that writes one
    also prints it, and its JSON holds every number (kept by keep_document)."""
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        sys.stderr.write(f"fitbench: cannot write {path} ({exc.strerror or exc}); the report is printed below\n")
