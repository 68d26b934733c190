"""What counts as a user-facing failure, and how it is told (see `gaze_attention.cli.main`).

Every error the user can act on (bad input, a file, a checkpoint, a setting) subclasses
`GazeAttentionError`; `cli.main` prints it as one `error:` line naming the file or flag and
exits with its `exit_code` (2, or 3 when training stopped on non-finite numbers). OSError,
ValueError and PyAV's errors are the user's too. Anything else is a bug and keeps its
traceback. A leaf module: it imports nothing of the package, every module may import it.
"""

from __future__ import annotations

import errno


class GazeAttentionError(Exception):
    """A failure the user can act on: told as one line, exit status `exit_code`."""

    exit_code = 2


class UsageError(GazeAttentionError, ValueError):
    """A command-line argument that cannot work (named in the message)."""


# errno -> what the user can do about it
_WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file is larger than allowed (a file-size limit, `ulimit -f`, or the file system's)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "it is a folder",
    errno.EEXIST: "it already exists",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "input/output error (a failing disk or network file system)",
}


def describe_os_error(exc: OSError) -> str:
    """One line naming the file(s) and why, e.g. `cannot write out/x.npy: the disk is full`."""
    why = _WHY.get(exc.errno or -1) or exc.strerror or str(exc)
    if exc.filename is None:
        text = str(exc)
        return f"{text} ({why})" if exc.errno is not None and why not in text else text
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{where}: {why}"


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's input or environment, not a bug of ours."""
    types: list[type[BaseException]] = [
        GazeAttentionError,
        OSError,
        ValueError,  # config values, flags, parse errors (UnicodeDecodeError, JSONDecodeError too)
    ]
    try:
        import av

        types.append(av.error.FFmpegError)  # an unreadable or missing video
    except ImportError:
        pass
    return tuple(types)


def exit_code(exc: BaseException) -> int:
    return int(getattr(exc, "exit_code", 2)) if isinstance(exc, GazeAttentionError) else 2


_WORKER_MARK = "Original Traceback (most recent call last):"


def unwrap_worker_message(text: str) -> str:
    """A DataLoader worker's exception arrives as `Caught X in DataLoader worker process N.`
    plus the worker's whole traceback: keep its last line, the error itself."""
    if _WORKER_MARK not in text:
        return text
    lines = [ln.strip() for ln in text.split(_WORKER_MARK, 1)[1].strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else text
    kind, sep, message = last.partition(": ")
    return message if sep and kind.replace(".", "").isidentifier() else last


def describe(exc: BaseException) -> str:
    """The message of an expected failure (OSError: which file and why), on one line."""
    if isinstance(exc, OSError) and (exc.filename is not None or exc.errno is not None):
        return describe_os_error(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    text = unwrap_worker_message(str(exc)) or type(exc).__name__
    return " ".join(text.split("\n")) if "\n" in text.strip() else text.strip()
