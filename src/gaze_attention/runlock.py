"""One training process per run folder, and no silent reuse of a finished run's folder.

`claim_run_folder` is called by rank 0 before anything is written to RUN_DIR:

- a lock file RUN_DIR/run.lock (pid, host, start time, command line) is held for the whole
  run. A second process that wants the folder is refused with a message naming the holder.
  The lock is an advisory `flock` on that file, so the kernel drops it when its process dies
  in any way (SIGKILL included): a lock file left by a crash is recognised as stale, reported
  and taken over. Where `fcntl` is missing the pid in the file decides (alive on this host:
  held);
- a folder that already holds files is refused unless the run resumes (`--resume`) or the
  caller asks to overwrite (`--overwrite`), which deletes only what a run writes there
  (checkpoints/, tb/, metrics.csv, validation.csv, config.yaml) and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from gaze_attention.errors import GazeAttentionError
from gaze_attention.fsio import LinkRefusedError, dumps_json, open_no_link

LOCK_FILE = "run.lock"
# What a training run writes into its folder: the only entries --overwrite deletes.
RUN_OUTPUTS = ("checkpoints", "tb", "metrics.csv", "validation.csv", "config.yaml")

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class RunFolderError(GazeAttentionError, RuntimeError):
    """The run folder is in use by another process, or holds a run that would be destroyed."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _describe(info: dict[str, Any]) -> str:
    started = info.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        if isinstance(started, int | float)
        else "?"
    )
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when}"


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class RunLock:
    """A held run-folder lock; `release()` (or leaving the `with` block) gives it up."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd
        self._held = True

    def release(self) -> None:
        if not self._held:  # a second call must not remove a lock another process took since
            return
        self._held = False
        try:
            # Unlink while still holding the lock: a waiter that opened the old file then finds
            # its inode gone from the path and retries (see `_acquire`).
            self.path.unlink(missing_ok=True)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_lock(path: Path, flags: int) -> int:
    """Open the lock file, never through a link: a planted link would make us write its target."""
    try:
        return open_no_link(path, flags, 0o644)
    except LinkRefusedError as exc:
        raise RunFolderError(
            f"{path}: the lock file is a symbolic link (to {os.readlink(path)}); refusing to open it. "
            "Remove the link (its target is left alone) or choose another --out"
        ) from exc


def _acquire(run_dir: Path) -> RunLock:
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": sys.argv}
    for _ in range(20):
        if fcntl is None:
            return _acquire_by_pid(path, me)
        fd = _open_lock(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            other = _read_info(path)
            raise RunFolderError(
                f"{run_dir} is in use by another training run ({_describe(other)}; lock file {path}). "
                "Wait for it to finish, stop it, or choose another --out"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and unlinked) between our open and our flock
            os.close(fd)
            continue
        stale = _read_info(path)
        if stale:
            warnings.warn(
                f"{path}: taking over the lock of a run that is no longer running ({_describe(stale)})",
                stacklevel=3,
            )
        os.ftruncate(fd, 0)
        os.write(fd, (dumps_json(me, indent=None) + "\n").encode("utf-8"))
        os.fsync(fd)
        return RunLock(path, fd)
    raise RunFolderError(f"{path}: could not take the lock (it keeps changing hands)")


def _acquire_by_pid(path: Path, me: dict[str, Any]) -> RunLock:
    """Lock without flock: exclusive creation, a live pid on this host means held."""
    for _ in range(3):
        try:
            fd = _open_lock(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            if path.is_symlink():
                _open_lock(path, os.O_RDONLY)  # raises the link's message
            other = _read_info(path)
            pid = other.get("pid")
            if other.get("host") != me["host"] or (isinstance(pid, int) and _pid_alive(pid)):
                raise RunFolderError(
                    f"{path.parent} is in use by another training run ({_describe(other)}; lock file {path}). "
                    "Wait for it to finish, stop it, or delete the lock file if that process is gone"
                ) from None
            warnings.warn(
                f"{path}: taking over the lock of a run that is no longer running ({_describe(other)})",
                stacklevel=3,
            )
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps_json(me, indent=None) + "\n")
        return RunLock(path, None)
    raise RunFolderError(f"{path}: could not take the lock")


def _clear_outputs(run_dir: Path) -> list[str]:
    """Delete what an earlier run wrote (RUN_OUTPUTS only); returns the names deleted."""
    removed = []
    for name in RUN_OUTPUTS:
        p = run_dir / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        else:
            continue
        removed.append(name)
    return removed


def claim_run_folder(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool = False) -> RunLock:
    """Lock RUN_DIR for this process and check that starting here destroys nothing.

    Raises RunFolderError when another live process holds the folder, or when the folder holds
    files and neither `resume` nor `overwrite` is set. With `overwrite` the outputs of the
    earlier run are deleted (after the lock is taken, so a live run is never touched).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"--out {run_dir} exists and is not a folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _acquire(run_dir)
    try:
        if not resume:
            others = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)
            if others and not overwrite:
                shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
                raise RunFolderError(
                    f"--out {run_dir} is not empty ({shown}): continue that run with --resume {run_dir}, "
                    "replace it with --overwrite, or choose another --out"
                )
            if others:
                _clear_outputs(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


__all__ = ["LOCK_FILE", "RUN_OUTPUTS", "RunFolderError", "RunLock", "claim_run_folder"]
