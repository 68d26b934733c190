"""The run-folder lock across the ranks of a torchrun job (the lock itself: `gaze_attention.runlock`)."""

from __future__ import annotations

import os
from typing import Any

from gaze_attention.runlock import (  # noqa: F401  (re-exported: the engine's spelling)
    LOCK_FILE,
    RUN_OUTPUTS,
    RunFolderError,
    RunLock,
    claim_run_folder,
)


def claim_for_ranks(
    run_dir: str | os.PathLike, info: Any, *, resume: bool, overwrite: bool = False
) -> RunLock | None:
    """`claim_run_folder` on rank 0 (the only writer); every rank raises if it was refused.

    info: the job's `DistInfo`. Returns the lock on rank 0, None elsewhere.
    """
    from gaze_attention.engine.distributed import any_flag

    lock, error = None, None
    if info.is_main:
        try:
            lock = claim_run_folder(run_dir, resume=resume, overwrite=overwrite)
        except RunFolderError as exc:
            error = exc
    (refused,) = any_flag(info, error is not None)
    if refused:
        raise error or RunFolderError(f"rank 0 could not take the run folder {run_dir}")
    return lock


__all__ = ["LOCK_FILE", "RUN_OUTPUTS", "RunFolderError", "RunLock", "claim_for_ranks", "claim_run_folder"]
