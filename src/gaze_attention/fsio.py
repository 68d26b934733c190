"""Every file the project writes goes through here: atomic, never through a link, short temp names.

A file is written to a fresh temporary file in the target's folder (created with
`O_CREAT | O_EXCL | O_NOFOLLOW`, so neither a planted file nor a planted link is ever opened),
fsynced, then renamed onto the target with `os.replace`. The rename replaces a link found at
the final name instead of following it. Temporary names are short and bounded whatever the
target's length, so a legal 255-byte name never fails on its temp file. Files get the mode
`open()` gives a new file (0666 less the umask), and errors name the user's path, never the
temporary one. Standard library only: importing it is cheap and pulls in no torch.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "LinkRefusedError",
    "atomic_path",
    "check_writable",
    "dumps_json",
    "json_safe",
    "open_append",
    "open_no_link",
    "temp_path",
    "write_bytes",
    "write_json",
    "write_text",
]

# Bytes of the target's name kept in its temp name: long enough to tell temp files apart in a
# listing, short enough that ".<kept>.<12 hex>.tmp" stays far below NAME_MAX (255).
_KEEP = 48
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
FILE_MODE = 0o666  # what open() creates; the umask takes its bits off


class LinkRefusedError(OSError):
    """A symbolic link sits where the project would open a file it owns: refused, not followed."""


def _short(name: str) -> str:
    """At most _KEEP bytes of `name` in UTF-8, cut on a character boundary."""
    raw = name.encode("utf-8", "surrogateescape")[:_KEEP]
    return raw.decode("utf-8", "ignore")


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside `path`, at most 1 + 48 + 1 + 12 + 4 bytes long."""
    path = Path(path)
    return path.with_name(f".{_short(path.name)}.{secrets.token_hex(6)}.tmp")


def _renamed(exc: OSError, path: Path) -> OSError:
    """The same error, naming the user's `path` instead of a temp file."""
    out = OSError(exc.errno, exc.strerror or str(exc), str(path))
    out.__cause__ = exc
    return out


def _create_exclusive(path: Path) -> tuple[Path, int]:
    for _ in range(100):
        tmp = temp_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_BINARY, FILE_MODE)
        except FileExistsError:  # a name collision, or something planted: draw another
            continue
        return tmp, fd
    raise OSError(errno.EEXIST, "could not create a temporary file", str(path))


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; best effort (some file systems refuse to open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    os.replace(tmp, path)  # replaces a link at `path`, never writes into its target
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, parents: bool = True, shown_as: str | os.PathLike | None = None
                ) -> Iterator[Path]:
    """A fresh empty temp file for writers that take a path (PIL, safetensors, PyAV, matplotlib).

    On a clean exit the temp file is fsynced, given the normal file mode and renamed onto
    `path`; on an exception it is deleted. Errors name `shown_as` (default: `path`).
    """
    path = Path(path)
    shown = Path(shown_as) if shown_as is not None else path
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_exclusive(path)
        os.close(fd)
    except OSError as exc:
        raise _renamed(exc, shown) from exc
    try:
        yield tmp
        # Writers that replace the file (unlink + create) may leave a stricter mode behind.
        umask = os.umask(0)
        os.umask(umask)
        fd = os.open(tmp, os.O_RDONLY | _O_NOFOLLOW)
        try:
            os.fsync(fd)
            os.fchmod(fd, FILE_MODE & ~umask)
        finally:
            os.close(fd)
        _commit(tmp, path)
    except OSError as exc:
        raise _renamed(exc, shown) from exc
    finally:
        with contextlib.suppress(OSError):
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview, *, parents: bool = True,
                shown_as: str | os.PathLike | None = None) -> Path:
    """Atomically replace `path` with `data` (see the module docstring). Returns `path`."""
    path = Path(path)
    shown = Path(shown_as) if shown_as is not None else path
    tmp = None
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_exclusive(path)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, path)
        tmp = None
    except OSError as exc:
        raise _renamed(exc, shown) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return path


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8", newline: str | None = None,
               parents: bool = True) -> Path:
    """Atomically replace `path` with `text`; newline="\\r\\n" etc. translates "\\n" like open()."""
    if newline not in (None, "", "\n"):
        text = text.replace("\n", newline)
    return write_bytes(path, text.encode(encoding), parents=parents)


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def dumps_json(obj: Any, *, indent: int | None = 1) -> str:
    """Strict JSON text: non-finite numbers become null, never the invalid bare `NaN`."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, parents: bool = True) -> Path:
    """Atomically write `obj` as strict JSON (NaN and infinities as null) with a final newline."""
    return write_text(path, dumps_json(obj, indent=indent) + "\n", parents=parents)


def open_no_link(path: str | os.PathLike, flags: int, mode: int = FILE_MODE) -> int:
    """os.open that refuses a symbolic link at the final component (LinkRefusedError, naming it)."""
    path = Path(path)
    try:
        return os.open(path, flags | _O_NOFOLLOW, mode)
    except OSError:
        if path.is_symlink():
            target = os.readlink(path)
            raise LinkRefusedError(
                errno.ELOOP, f"is a symbolic link (to {target}), refused: remove it", str(path)
            ) from None
        raise


def open_append(path: str | os.PathLike, *, encoding: str = "utf-8", newline: str | None = None) -> IO[str]:
    """A text file opened for appending (created if missing), never through a link at `path`.

    For logs and CSV rows that grow line by line (not atomic by nature): a link found there is
    refused with LinkRefusedError naming `path`, and its target is not opened.
    """
    fd = open_no_link(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_BINARY)
    return os.fdopen(fd, "a", encoding=encoding, newline=newline)


def check_writable(path: str | os.PathLike, flag: str) -> str | None:
    """Why `flag PATH` cannot be written (checked before any work), or None if it can.

    The folder must exist or be creatable and let us create files (tried with a throw-away
    temp file, which catches read-only file systems and root-squashed mounts alike); PATH must
    not be a folder.
    """
    path = Path(path)
    if len(os.fsencode(path.name)) > 255:
        return f"{flag} {path}: the name is longer than 255 bytes"
    if path.is_dir() and not path.is_symlink():
        return f"{flag} {path}: is a folder (give a file name)"
    folder = path.parent
    while not folder.exists():
        if folder.is_symlink():  # a dangling link: mkdir would fail
            return f"{flag} {path}: its folder {folder} is a broken link"
        folder = folder.parent
    if not folder.is_dir():
        return f"{flag} {path}: {folder} is not a folder"
    try:
        tmp, fd = _create_exclusive(folder / path.name)
        os.close(fd)
        tmp.unlink()
    except OSError as exc:
        from_errno = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                      errno.EROFS: "the file system is read-only", errno.ENOSPC: "the disk is full",
                      errno.EDQUOT: "the disk quota is used up"}.get(exc.errno or -1, exc.strerror)
        return f"{flag} {path}: cannot write in {folder} ({from_errno})"
    return None
