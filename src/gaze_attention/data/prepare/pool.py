"""The worker processes of a run: started on first use, gone when the `prepare` process dies."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import cv2


def _die_with_parent(parent: int) -> None:
    """End this worker when the `prepare` process that started it dies, even by SIGKILL.

    Linux: the kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG). Elsewhere, and as
    a fallback, a daemon thread polls the parent pid. Without this, killed runs left their
    workers (and multiprocessing's resource tracker, which waits for them) running.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def worker_init(parent: int | None = None) -> None:
    if parent is not None:
        _die_with_parent(parent)
    # One OpenCV thread per worker process: the processes already fill the cores.
    cv2.setNumThreads(1)


class LazyPool:
    """A process pool started on first use (starting one costs seconds: each worker imports
    the package), shared by the gaze-file and clip stages."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._ex: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        if self._ex is None:
            self._ex = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=worker_init,
                initargs=(os.getpid(),),
            )
        return self._ex

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(cancel_futures=True)
            self._ex = None


