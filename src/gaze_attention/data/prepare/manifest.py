"""The output folder's shared files: the lock, the settings file, the manifest (appended, then rewritten).

Nothing here writes through a link: the manifest is appended with O_NOFOLLOW after any link
at its name has been removed, and rewritten through `shards.write_atomic`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from gaze_attention import fsio
from gaze_attention.data.egtea import read_manifests
from gaze_attention.data.prepare.clip import outputs
from gaze_attention.data.prepare.options import SETTINGS_FILE, PrepareError
from gaze_attention.data.shards import Shard, folder_lock, manifest_name

LOCKS = ".locks"  # OUT/.locks/shard-I-of-N/run.lock for a shard run; OUT/run.lock for a whole run


class OutputLock:
    """OUT held by this run: a second run of the same set (or the same shard) is refused at once.

    A whole run holds OUT/run.lock; shard I/N holds OUT/.locks/shard-I-of-N/run.lock, so the N
    shards of one set still run together. A whole run also refuses while any shard runs, and
    a shard while a whole run does. The locks are `gaze_attention.runlock`'s (flock, dropped by the
    kernel when the holder dies; the holder's pid and host are named in the refusal).
    """

    def __init__(self, out: Path, shard: Shard | None) -> None:
        from gaze_attention.runlock import RunFolderError, claim_run_folder

        self._error = RunFolderError
        self._claim = claim_run_folder
        self.out = out
        self.shard = shard
        self._lock = None
        own = out if shard is None else out / LOCKS / f"shard-{shard.index}-of-{shard.count}"
        # Under the folder lock: checks of the other kind of lock never race each other.
        with folder_lock(out):
            self._lock = self._take(own)
            try:
                others = [out] if shard is not None else sorted((out / LOCKS).glob("shard-*-of-*"))
                for other in others:
                    self._take(other).release()  # held by a running run: refused
                    if other != out:  # a killed shard's lock folder, now free
                        _rmdirs(other, out / LOCKS)
            except BaseException:
                self.release()
                raise

    def _take(self, folder: Path):
        try:
            return self._claim(folder, resume=True)
        except self._error as e:
            from gaze_attention.runlock import LOCK_FILE, _describe, _read_info

            path = folder / LOCK_FILE
            holder = _describe(_read_info(path)) if path.is_file() and not path.is_symlink() else str(e)
            raise PrepareError(
                f"{self.out} is being prepared by another run ({holder}; lock file {path}): wait for it "
                "to finish, stop it, or choose another output folder"
            ) from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            if self.shard is not None:  # the empty lock folders of a shard run
                _rmdirs(self.out / LOCKS / f"shard-{self.shard.index}-of-{self.shard.count}", self.out / LOCKS)

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# The folders a run writes into, besides the manifest and settings files.
OUTPUT_FOLDERS = ("images_rgb", "images_flow", "gaze", "annotations", ".tmp")


def _rmdirs(*folders: Path) -> None:
    """Remove these folders in order while they are empty (another run may be using them)."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


def unlink_planted_links(out: Path, shard: Shard | None, warn) -> None:
    """Remove links at the names a run writes (manifest, settings, its folders); never followed."""
    for name in (manifest_name(shard), SETTINGS_FILE, *OUTPUT_FOLDERS):
        path = out / name
        if path.is_symlink():
            warn(f"{path} was a symbolic link (to {os.readlink(path)}); removed it, its target is left alone")
            path.unlink()


def check_settings(out: Path, settings: dict, sharded: bool = False) -> None:
    """Refuse to mix clips prepared with different settings in one folder.

    Under a lock and written atomically: shards starting together on one folder all see the
    settings of whichever came first, and a shard with other settings is refused even before
    any clip is recorded."""
    path = out / SETTINGS_FILE
    with folder_lock(out):
        manifests = [out / "manifest.jsonl", *out.glob("manifest.shard-*-of-*.jsonl")]
        started = any(m.is_file() and m.stat().st_size > 0 for m in manifests)
        if path.is_file() and not path.is_symlink() and (started or sharded):
            old = json.loads(path.read_text())
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if diff:
                what = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())
                raise PrepareError(f"{out} was prepared with other settings ({what}); use a new output folder")
        fsio.write_text(path, fsio.dumps_json(settings) + "\n", parents=False)


def load_done(out: Path, flow: str) -> dict[str, dict]:
    """Recorded clips whose files are all on disk (the others are redone)."""
    # A line cut short by a killed run is skipped by read_manifest: that clip is redone.
    return {
        name: rec
        for name, rec in read_manifests(out).items()
        if all(p.exists() for p in outputs(out, name, flow))
    }


def open_for_append(path: Path) -> IO[str]:
    """The manifest opened for appending, never through a link (ELOOP if one was planted since)."""
    return fsio.open_append(path)


def write_manifest(out: Path, records: list[dict], flow: str, name: str = "manifest.jsonl") -> None:
    """Rewrite the manifest compactly with the records whose files are on disk."""
    kept = [r for r in records if all(p.exists() for p in outputs(out, r["clip"], flow))]
    fsio.write_text(out / name, "".join(fsio.dumps_json(r, indent=None) + "\n" for r in kept), parents=False)
