"""What counts as a user-facing failure, and how it is told (see `gaze_attention.cli.main`).

Expected failures (bad input, I/O, checkpoints, configuration) end a command with a message
naming the file or flag and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno

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
    from gaze_attention.data.begaze import GazeFormatError
    from gaze_attention.data.egtea import AnnotationError
    from gaze_attention.data.prepare import PrepareError
    from gaze_attention.engine.checkpoint import CheckpointError
    from gaze_attention.engine.runlock import RunFolderError
    from gaze_attention.models import CheckpointMismatchError

    types: list[type[BaseException]] = [
        OSError,
        ValueError,  # config values, flags, parse errors (UnicodeDecodeError, JSONDecodeError too)
        AnnotationError,
        GazeFormatError,
        PrepareError,
        CheckpointError,
        CheckpointMismatchError,
        RunFolderError,
    ]
    try:
        import av

        types.append(av.error.FFmpegError)  # an unreadable or missing video
    except ImportError:
        pass
    return tuple(types)


def describe(exc: BaseException) -> str:
    """The message of an expected failure (OSError: which file and why)."""
    if isinstance(exc, OSError) and (exc.filename is not None or exc.errno is not None):
        return describe_os_error(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    text = str(exc)
    return text or type(exc).__name__
